"""``python -m benchmarks.run``: the benchmark suite's command (the harness is
:mod:`benchmarks.harness.suite`; see ``benchmarks/README.md``)."""

import sys

from benchmarks.harness.suite import main

if __name__ == "__main__":
    sys.exit(main())
