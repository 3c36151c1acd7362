"""Benchmarks for svve-core: ``harness/`` (the suite against peer libraries),
``report/`` (markdown and plots from its records), ``studies/`` (one-off
studies of the pipeline); recorded results in ``results/``. See README.md."""
