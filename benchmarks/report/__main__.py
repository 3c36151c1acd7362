"""``python -m benchmarks.report RESULTS_DIR ...``: see :mod:`benchmarks.report.markdown`."""

import sys

from benchmarks.report.markdown import main

if __name__ == "__main__":
    sys.exit(main())
