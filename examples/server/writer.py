"""Collection mode's writer: the process that owns the collection, and the
client with which workers reach it.

One process owns the collection's writer (``Collection.open(dir)``, which
holds the directory's lock) and answers write requests on a unix socket;
gunicorn.conf.py starts it from the master (or run ``python app.py writer``).
Workers connect per request (``multiprocessing.connection``, authenticated
with SVVE_WRITER_KEY) and send ``(op, arguments)``; the answer is a dict, or
``{"error": exception class name, "detail": message}``. Only builtins and
numpy arrays travel, and only between processes that know the key. Both ends
of that exchange live here: ``WriterServer`` (and ``run_writer``, its
process) and ``WriterClient`` (in the workers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import stat
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any, Dict, Optional, Set

from svve_core import Collection
from svve_core import exceptions as svve_exceptions
from svve_core.exceptions import SVVEError

# isort: split
# This directory's modules, imported by name (see app.py's docstring).
from errors import RequestError
from settings import Settings

log = logging.getLogger("uvicorn.error")  # shows up in uvicorn's and gunicorn's log


# --- the writer process --------------------------------------------------------


class WriterServer:
    """The collection's one writer, serving write requests on a unix socket.

    Requests run one at a time (a lock), so a write and its commit are one
    step; each connection gets a thread. ``serve_forever`` returns after
    ``stop()`` (from another thread) or when a signal handler raises in the
    serving thread; either way the writer commits what is pending and closes.
    """

    def __init__(self, settings: Settings) -> None:
        if settings.collection_dir is None or not settings.writer_socket:
            raise RuntimeError("the writer needs SVVE_COLLECTION and SVVE_WRITER_SOCKET")
        if not settings.writer_key:
            raise RuntimeError("the writer needs SVVE_WRITER_KEY (any secret string)")
        self.address = settings.writer_socket
        self._key = settings.writer_key
        # Raises CollectionLockedError while another writer holds the directory.
        self.collection: Optional[Collection] = Collection.open(
            settings.collection_dir, verify=settings.verify
        )
        try:
            _clear_stale_socket(self.address)
            self.listener = Listener(self.address, family="AF_UNIX", authkey=self._key)
        except BaseException:
            self.collection.close()
            raise
        self._lock = threading.Lock()
        self._stopping = False
        self._threads: Set[threading.Thread] = set()

    def serve_forever(self) -> None:
        try:
            while not self._stopping:
                try:
                    conn = self.listener.accept()  # includes the key handshake
                except (OSError, EOFError, AuthenticationError) as e:
                    if self._stopping:
                        break
                    log.warning("writer: refused a connection: %s", e)
                    continue
                if self._stopping:
                    conn.close()
                    break
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.add(thread)
                thread.start()
        finally:
            self._close()

    def stop(self) -> None:
        """Ends ``serve_forever`` running in another thread."""
        self._stopping = True
        with contextlib.suppress(OSError, EOFError, AuthenticationError):
            Client(self.address, family="AF_UNIX", authkey=self._key).close()  # wakes accept()

    def _serve(self, conn: Connection) -> None:
        try:
            with conn:
                while True:
                    try:
                        op, args = conn.recv()
                    except EOFError:
                        return  # the worker is done with this connection
                    reply = self.execute(op, args)
                    conn.send(reply)
        except Exception as e:  # a broken connection ends only itself
            log.warning("writer: connection dropped: %s: %s", type(e).__name__, e)
        finally:
            self._threads.discard(threading.current_thread())

    def execute(self, op: str, args: Dict[str, Any]) -> Dict[str, Any]:
        """Runs one request; library errors come back as their class name."""
        try:
            with self._lock:
                return self._execute(op, args)
        except SVVEError as e:
            return {"error": type(e).__name__, "detail": str(e)}
        except Exception as e:  # answered; logged with its traceback
            log.exception("writer: %s failed", op)
            return {"error": "WriterError", "detail": f"{op} failed: {type(e).__name__}: {e}"}

    def _execute(self, op: str, args: Dict[str, Any]) -> Dict[str, Any]:
        col = self.collection
        if col is None:
            return {"error": "WriterUnavailable", "detail": "the writer is shutting down"}
        out: Dict[str, Any] = {}
        if op == "add":
            ids = col.add(args["vectors"], args.get("ids"), attributes=args.get("attributes"))
            out["ids"] = ids.tolist()
        elif op == "upsert":
            col.upsert(args["vectors"], args["ids"], attributes=args.get("attributes"))
            out["upserted"] = len(args["ids"])
        elif op == "delete":
            out["deleted"] = col.delete(args["ids"])
        elif op == "compact":
            col.compact()
        elif op not in ("commit", "info"):
            return {"error": "WriterError", "detail": f"unknown operation {op!r}"}
        if op == "commit" or args.get("commit"):
            col.commit()
        info = col.info()
        if op == "info":
            out.update(info.model_dump(mode="json"))
            out["writer_pid"] = os.getpid()
        out.update(generation=info.generation, n=info.n, uncommitted=info.uncommitted)
        return out

    def _close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self.listener.close()  # removes the socket file
        deadline = time.monotonic() + 30  # requests under way (a compaction may take a while)
        for thread in list(self._threads):
            with contextlib.suppress(RuntimeError):  # not started: stopped by a signal
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            col, self.collection = self.collection, None
            if col is None:
                return
            try:
                if col.info().uncommitted:
                    generation = col.commit()
                    log.info(
                        "writer: committed pending changes at exit (generation %d)", generation
                    )
            finally:
                col.close()


def _clear_stale_socket(path: str) -> None:
    """Removes a socket file left by a writer that died (nothing listens on
    it); refuses to touch anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise RuntimeError(f"SVVE_WRITER_SOCKET {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    finally:
        probe.close()
    raise RuntimeError(f"another process listens on SVVE_WRITER_SOCKET {path}")


class _Stopped(BaseException):
    """Raised in the writer's main thread by SIGTERM / SIGINT (a BaseException,
    like KeyboardInterrupt, so that no ``except Exception`` swallows it)."""


def _exit_with_parent(parent: int) -> None:
    """Stops this writer (as SIGTERM does) once the process that started it
    is gone, so that a killed gunicorn master leaves no writer holding the
    collection's lock."""
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("writer: the gunicorn master %d is gone, stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)


def run_writer() -> int:
    """``python app.py writer``: the writer process (reads the same settings
    as the app: SVVE_COLLECTION, SVVE_WRITER_SOCKET, SVVE_WRITER_KEY, SVVE_VERIFY)."""
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
    )
    try:
        settings = Settings.from_env()
        if settings.collection_dir is None:
            raise RuntimeError("the writer needs SVVE_COLLECTION")
        server = WriterServer(settings)
    except (RuntimeError, SVVEError, OSError) as e:
        log.error("writer: cannot start: %s", e)
        return 1

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _Stopped

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    parent = os.environ.get("_SVVE_WRITER_PARENT")  # set by gunicorn.conf.py
    if parent:
        threading.Thread(target=_exit_with_parent, args=(int(parent),), daemon=True).start()
    assert server.collection is not None
    info = server.collection.info()
    log.info(
        "writer: %s (n %d, generation %d), listening on %s",
        info.path,
        info.n,
        info.generation,
        server.address,
    )
    with contextlib.suppress(_Stopped):
        server.serve_forever()
    log.info("writer: stopped")
    return 0


# --- the workers' side ---------------------------------------------------------


class WriterClient:
    """How a worker reaches the writer: one connection per request."""

    def __init__(self, address: str, key: Optional[bytes], timeout: float) -> None:
        self.address, self._key, self.timeout = address, key or b"", timeout

    def call(self, op: str, **args: Any) -> Dict[str, Any]:
        try:
            conn = Client(self.address, family="AF_UNIX", authkey=self._key)
        except (OSError, EOFError) as e:  # no socket, nobody listening, writer died
            raise RequestError(
                f"the collection writer is not reachable ({type(e).__name__}: {e}); "
                "nothing was written",
                503,
                "WriterUnavailable",
            ) from None
        except AuthenticationError as e:
            raise RequestError(
                f"the collection writer refused this worker's key: {e}", 503, "WriterUnavailable"
            ) from None
        with conn:
            try:
                conn.send((op, args))
                if not conn.poll(self.timeout):
                    raise RequestError(
                        f"the collection writer did not answer within {self.timeout:g} s; "
                        "the request may still take effect",
                        504,
                        "WriterTimeout",
                    )
                reply: Dict[str, Any] = conn.recv()
            except (OSError, EOFError) as e:
                raise RequestError(
                    f"lost the connection to the collection writer ({type(e).__name__}); "
                    "the request may or may not have taken effect",
                    503,
                    "WriterUnavailable",
                ) from None
        if "error" in reply:
            name, detail = reply["error"], reply.get("detail", "")
            cls = getattr(svve_exceptions, name, None)
            if isinstance(cls, type) and issubclass(cls, SVVEError):
                raise cls(detail)  # the library's error: its usual status and body
            status = 503 if name == "WriterUnavailable" else 500
            raise RequestError(detail, status, name)
        return reply
