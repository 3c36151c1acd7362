"""gunicorn settings for the svve example server (uvicorn workers).

    SVVE_INDEX_DIR=/srv/index uv run --group serve \\
        gunicorn -c examples/server/gunicorn.conf.py app:app

    SVVE_COLLECTION=/srv/collection uv run --group serve \\
        gunicorn -c examples/server/gunicorn.conf.py app:app

SVVE_PRELOAD chooses what happens in the master before it forks the workers:

    0      (default) nothing: each worker imports the app and opens the index
    code   ``--preload``: the master imports the app (Python, numpy, FastAPI,
           svve_core), the workers share those pages copy-on-write and each
           opens the index itself
    index  (or 1) ``--preload`` and the master also opens the index, so the
           workers inherit the open engine

README.md compares them (the index is shared by every worker in all three).

Collection mode (SVVE_COLLECTION set): the master also starts the
collection's one writer (``python app.py writer``) before it forks the
workers, restarts it if it dies, and stops it after the workers at shutdown.
Workers reach it on a unix socket (SVVE_WRITER_SOCKET, default: in a private
temporary directory) with a shared key (SVVE_WRITER_KEY, default: random).
"""

import gc
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Client

bind = os.environ.get("SVVE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SVVE_WORKERS", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
# gunicorn also puts chdir on sys.path: "app:app" imports app.py, and app.py its
# sibling modules (settings.py, holders.py, writer.py, errors.py).
chdir = os.path.dirname(os.path.abspath(__file__))
graceful_timeout = 10

_preload = os.environ.get("SVVE_PRELOAD", "0").lower()
if _preload not in ("0", "code", "index", "1"):
    raise RuntimeError(f"SVVE_PRELOAD must be 0, code or index, got {_preload!r}")
preload_app = _preload != "0"
# Read by app.py when the master imports it.
os.environ["SVVE_OPEN_AT_IMPORT"] = "1" if _preload in ("index", "1") else "0"

# Collection mode. Set here, in the master's environment, before the app is
# imported (--preload) or a worker forked: every worker and the writer read
# the same values. This file is read again on SIGHUP; the values set the
# first time are kept.
_collection = os.environ.get("SVVE_COLLECTION")
if _collection:
    # Relative to where gunicorn was started (chdir moves the workers).
    os.environ["SVVE_COLLECTION"] = os.path.abspath(_collection)
    if not os.environ.get("SVVE_WRITER_KEY"):
        os.environ["SVVE_WRITER_KEY"] = secrets.token_hex(32)
    if not os.environ.get("SVVE_WRITER_SOCKET"):
        _private = tempfile.mkdtemp(prefix="svve-writer-")  # mode 0700
        os.environ["SVVE_WRITER_SOCKET"] = os.path.join(_private, "writer.sock")
        os.environ["_SVVE_WRITER_TMPDIR"] = _private  # removed by on_exit


def pre_fork(server, worker):
    # Move everything imported so far out of the collector's reach, so that
    # collections in the workers do not write to (and so copy) the pages they
    # share with the master.
    gc.freeze()


class WriterProcess:
    """The collection's writer process, owned by the gunicorn master.

    Started by ``when_ready`` (after the master opened its listening sockets,
    before it forks the first worker): the server does not start unless the
    writer took the collection's lock and listens. A thread waits on it and
    starts it again if it exits (1 s later, backing off to 30 s while it keeps
    failing); meanwhile writes get 503 and searches go on. ``on_exit`` stops it
    (SIGTERM: it commits pending changes and exits) after the workers stopped.
    """

    def __init__(self, log):
        self.log = log
        self.address = os.environ["SVVE_WRITER_SOCKET"]
        self.key = os.environ["SVVE_WRITER_KEY"].encode()
        self.argv = [sys.executable, os.path.join(chdir, "app.py"), "writer"]
        self.proc = None
        self.stopping = False
        self._lock = threading.Lock()

    def start(self, timeout=60.0):
        """Starts the writer and waits until it answers; raises if it exits."""
        # _SVVE_WRITER_PARENT: the writer stops by itself if the master dies.
        env = {**os.environ, "SVVE_OPEN_AT_IMPORT": "0", "_SVVE_WRITER_PARENT": str(os.getpid())}
        self.proc = subprocess.Popen(self.argv, cwd=chdir, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the collection writer exited with status {self.proc.returncode} "
                    "at start (its error is logged above)"
                )
            try:
                Client(self.address, family="AF_UNIX", authkey=self.key).close()
            except (OSError, EOFError):
                time.sleep(0.05)
                continue
            self.log.info("collection writer ready (pid %d) on %s", self.proc.pid, self.address)
            return
        self.proc.kill()
        raise RuntimeError(f"the collection writer did not answer within {timeout:g} s")

    def watch(self):
        threading.Thread(target=self._watch, name="svve-writer-watch", daemon=True).start()

    def _watch(self):
        delay = 1.0
        while True:
            proc = self.proc
            started = time.monotonic()
            # gunicorn's SIGCHLD handling may reap it first (waitpid(-1)): then
            # wait() returns 0, and the exit is still seen.
            status = proc.wait()
            if self.stopping:
                return
            if time.monotonic() - started > 60:
                delay = 1.0
            # Also seen when a signal reached the whole process group (Ctrl-C,
            # systemd): the master is stopping too, and on_exit stops a writer
            # started meanwhile.
            self.log.warning(
                "collection writer (pid %d) exited (status %s); restarting in %g s",
                proc.pid,
                status,
                delay,
            )
            time.sleep(delay)
            with self._lock:
                if self.stopping:
                    return
                try:
                    self.start()
                except Exception as e:  # tried again after the next delay
                    self.log.error("collection writer failed to start: %s", e)
            delay = min(delay * 2, 30.0)

    def stop(self, timeout=30.0):
        with self._lock:
            self.stopping = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.log.error("collection writer did not stop within %g s: killed", timeout)
            proc.kill()
            proc.wait()


def when_ready(server):
    if os.environ.get("SVVE_COLLECTION"):
        writer = WriterProcess(server.log)
        try:
            writer.start()
        except BaseException:
            _remove_private_dir()
            raise  # gunicorn exits with the message
        writer.watch()
        server.svve_writer = writer  # the arbiter outlives reloads of this file


def on_exit(server):
    writer = getattr(server, "svve_writer", None)
    if writer is not None:
        writer.stop()
    _remove_private_dir()


def _remove_private_dir():
    private = os.environ.get("_SVVE_WRITER_TMPDIR")
    if private:
        shutil.rmtree(private, ignore_errors=True)
