"""What a worker serves, and how it follows changes: ``IndexHolder`` (index
mode: one index file, reloaded when the file is replaced) and
``CollectionHolder`` (collection mode: a read-only view of a live collection,
refreshed to each new commit), with the loops that keep them current
(``watch_index``, ``Refresher``)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from svve_core import Collection, EngineConfig, SearchEngine
from svve_core.exceptions import IndexNotFoundError, SVVEError

# isort: split
# This directory's modules, imported by name (see app.py's docstring).
from errors import RequestError
from settings import Settings

log = logging.getLogger("uvicorn.error")  # shows up in uvicorn's and gunicorn's log


# --- index mode: the index, its file and reloads -------------------------------

Signature = Tuple[str, int, int, int, int]  # real path, device, inode, size, mtime


class IndexHolder:
    """The process's engine, which file it serves, and how it reloads.

    ``reload`` (admin endpoint) and ``check`` (file watch) may run in worker
    threads at the same time as searches: ``SearchEngine.reload`` swaps the
    index atomically, and a lock keeps two reloads from interleaving.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.index_dir is None:
            raise RuntimeError("set SVVE_INDEX_DIR to the directory holding the index files")
        self.root = Path(os.path.realpath(settings.index_dir))
        if not self.root.is_dir():
            raise RuntimeError(f"SVVE_INDEX_DIR {settings.index_dir} is not a directory")
        self._lock = threading.Lock()
        self._config = EngineConfig(verify=settings.verify)
        self.name = settings.index_name
        path, self.signature = self.locate(self.name)
        self.engine = SearchEngine(path, self._config)
        self._failed: Optional[Signature] = None
        self.reloads = 0

    def locate(self, name: str) -> Tuple[Path, Signature]:
        """The real path of index file ``name`` and its signature, or an error
        if ``name`` leaves the index directory or is not a regular file."""
        if not isinstance(name, str) or not name or "\0" in name:
            raise RequestError("path must be a non-empty file name")
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise RequestError(f"path {name!r} must be relative to the index directory, without ..")
        real = Path(os.path.realpath(self.root / rel))  # follows every symlink
        if real == self.root or os.path.commonpath([real, self.root]) != str(self.root):
            raise RequestError(f"path {name!r} resolves outside the index directory")
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise IndexNotFoundError(f"no index file {name!r} in the index directory") from None
        if not stat.S_ISREG(st.st_mode):
            raise RequestError(f"{name!r} is not a regular file")
        return real, (str(real), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def reload(self, name: Optional[str] = None) -> Dict[str, Any]:
        """Serves ``name`` (default: the current name) from now on. On error the
        old index stays in service and the error propagates."""
        name = self.name if name is None else name
        with self._lock:
            path, signature = self.locate(name)
            self.engine.reload(path)
            self.name, self.signature, self._failed = name, signature, None
            self.reloads += 1
        log.info("pid %d: reloaded %s (%s)", os.getpid(), name, path)
        return self.describe()

    def check(self) -> bool:
        """Reloads if the watched file changed (new inode, size or mtime);
        True if it did. Never raises: a broken new file is logged once and the
        old index stays in service until the file changes again."""
        if not self._lock.acquire(blocking=False):
            return False  # a reload is under way
        try:
            try:
                path, signature = self.locate(self.name)
            except (RequestError, IndexNotFoundError, OSError) as e:
                if self._failed != ("missing", 0, 0, 0, 0):
                    log.warning("pid %d: watched index file unusable: %s", os.getpid(), e)
                    self._failed = ("missing", 0, 0, 0, 0)
                return False
            if signature in (self.signature, self._failed):
                return False
            try:
                self.engine.reload(path)
            except SVVEError as e:
                log.error("pid %d: new index file refused, old one kept: %s", os.getpid(), e)
                self._failed = signature
                return False
            self.signature, self._failed = signature, None
            self.reloads += 1
        finally:
            self._lock.release()
        log.info("pid %d: index file changed, reloaded %s", os.getpid(), path)
        return True

    def describe(self) -> Dict[str, Any]:
        info = self.engine.info()
        return {
            "pid": os.getpid(),
            "name": self.name,
            "path": info.path,
            "n": info.n,
            "dim": info.dim,
            "metric": info.metric,
            "reloads": self.reloads,
        }


async def watch_index(holder: IndexHolder, interval: float) -> None:
    """Index mode's file watch: ``holder.check()`` every ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(holder.check)  # reload reads the file: off the loop


# --- collection mode: the readers ----------------------------------------------


class CollectionHolder:
    """The worker's read-only view of a live collection (``engine``: a
    ``svve_core.Collection`` opened with ``readonly=True``; it searches like a
    ``SearchEngine``).

    ``check`` moves it to the newest committed generation. It runs on the
    worker's refresh thread every ``refresh_interval`` seconds, and right
    after a write this worker forwarded has been committed. Searches never
    wait for it: they run on the generation they started on.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.collection_dir is None:
            raise RuntimeError("set SVVE_COLLECTION to the collection's directory")
        self.path = Path(os.path.realpath(settings.collection_dir))
        self.engine = Collection.open(self.path, readonly=True, verify=settings.verify)
        self.refreshes = 0
        self._lock = threading.Lock()
        self._failed: Optional[str] = None

    def check(self) -> bool:
        """Refreshes to the newest committed generation; True if it moved.
        Never raises: a generation that fails to load is logged (once) and
        the current one stays in service until the next try."""
        try:
            moved = self.engine.refresh()  # lists the directory; loads only what is new
        except Exception as e:  # a refresh must never take the worker down
            problem = f"{type(e).__name__}: {e}"
            if problem != self._failed:
                log.error(
                    "pid %d: collection refresh failed, serving the last one: %s",
                    os.getpid(),
                    problem,
                )
                self._failed = problem
            return False
        if self._failed is not None:
            log.info("pid %d: collection refresh works again", os.getpid())
            self._failed = None
        if moved:
            with self._lock:
                self.refreshes += 1
        return moved

    def describe(self) -> Dict[str, Any]:
        info = self.engine.info()
        return {
            "pid": os.getpid(),
            "mode": "collection",
            "path": os.fspath(self.path),
            "n": info.n,
            "dim": info.dim,
            "metric": info.metric,
            "generation": info.generation,
            "segments": len(info.segments),
            "fresh": info.fresh,
            "refreshes": self.refreshes,
        }


Holder = Union[IndexHolder, CollectionHolder]


def open_holder(settings: Settings) -> Holder:
    """The index (index mode) or the collection, read-only (collection mode)."""
    if settings.collection_dir is not None:
        return CollectionHolder(settings)
    return IndexHolder(settings)


class Refresher:
    """A worker's refresh thread: ``holder.check()`` every ``interval`` seconds.

    A thread of its own rather than a task that borrows the event loop's
    executor: under load that executor is busy with searches, and a refresh
    queued behind them would be late. It sleeps between checks, and a check
    with nothing new only lists the collection's directory.
    """

    def __init__(self, holder: CollectionHolder, interval: float) -> None:
        self.holder, self.interval = holder, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="svve-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.holder.check()
