"""The benchmark report: ``report.md``, PNG plots and BENCHMARKS.md from the
records of ``benchmarks.run`` (``python -m benchmarks.report``; code in
:mod:`benchmarks.report.markdown`, BENCHMARKS.md's introduction in
``preamble.md``)."""
