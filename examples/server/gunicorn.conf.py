"""gunicorn settings for the svve example server (uvicorn workers).

    SVVE_INDEX_DIR=/srv/index uv run --group serve \\
        gunicorn -c examples/server/gunicorn.conf.py app:app

SVVE_PRELOAD chooses what happens in the master before it forks the workers:

    0      (default) nothing: each worker imports the app and opens the index
    code   ``--preload``: the master imports the app (Python, numpy, FastAPI,
           svve_core), the workers share those pages copy-on-write and each
           opens the index itself
    index  (or 1) ``--preload`` and the master also opens the index, so the
           workers inherit the open engine

README.md compares them (the index is shared by every worker in all three).
"""

import gc
import os

bind = os.environ.get("SVVE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SVVE_WORKERS", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
chdir = os.path.dirname(os.path.abspath(__file__))  # so that "app:app" imports app.py
graceful_timeout = 10

_preload = os.environ.get("SVVE_PRELOAD", "0").lower()
if _preload not in ("0", "code", "index", "1"):
    raise RuntimeError(f"SVVE_PRELOAD must be 0, code or index, got {_preload!r}")
preload_app = _preload != "0"
# Read by app.py when the master imports it.
os.environ["SVVE_OPEN_AT_IMPORT"] = "1" if _preload in ("index", "1") else "0"


def pre_fork(server, worker):
    # Move everything imported so far out of the collector's reach, so that
    # collections in the workers do not write to (and so copy) the pages they
    # share with the master.
    gc.freeze()
