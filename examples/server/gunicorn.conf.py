"""gunicorn settings for the svve example server (uvicorn workers).

    SVVE_INDEX_DIR=/srv/index uv run --group serve \\
        gunicorn -c examples/server/gunicorn.conf.py app:app

SVVE_PRELOAD=1 opens the index in the master before it forks the workers
(``--preload``); the default opens it in each worker. README.md compares them.
"""

import os

bind = os.environ.get("SVVE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SVVE_WORKERS", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
chdir = os.path.dirname(os.path.abspath(__file__))  # so that "app:app" imports app.py
graceful_timeout = 10

preload_app = os.environ.get("SVVE_PRELOAD", "0") == "1"
if preload_app:
    # Read by app.py when the master imports it: open the index before fork.
    os.environ["SVVE_OPEN_AT_IMPORT"] = "1"
