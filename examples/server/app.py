"""A multi-worker HTTP search service over one memory-mapped svve index.

Every worker process opens the same index file; the file is mapped read-only,
so the workers share one copy of it in the page cache. See README.md beside
this file for the commands, the reload procedure and the deployment rule.

Run from the repository root::

    SVVE_INDEX_DIR=/srv/index uv run --group serve \\
        uvicorn app:app --app-dir examples/server --host 127.0.0.1 --port 8000 --workers 2

Settings (environment variables, read when the app starts):

    SVVE_INDEX_DIR        directory holding the index files (required); the
                          server opens no index file outside it
    SVVE_INDEX            file served at start and watched, relative to the
                          directory (default current.svve; may be a symlink
                          to a file inside the directory)
    SVVE_WATCH_INTERVAL   seconds between checks of that file's inode, size and
                          mtime; a change reloads it in this worker (default 1;
                          0 switches the watch off)
    SVVE_ADMIN_TOKEN      enables POST /admin/reload (bearer token); unset: 404
    SVVE_VERIFY           1 (default): check every section's CRC32 at open
    SVVE_MAX_BODY_BYTES   request body limit (default 4 MiB), 413 above it
    SVVE_MAX_K            largest k (default 1000)
    SVVE_MAX_BATCH        most queries in one /search/batch (default 256)
    SVVE_OPEN_AT_IMPORT   1: open the index when this module is imported, i.e.
                          in the gunicorn master under --preload (before fork);
                          gunicorn.conf.py sets it from SVVE_PRELOAD
    SVVE_NUM_THREADS      (read by svve_core) batch-search threads per worker;
                          set it to cores / workers
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional, Tuple

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, model_validator

from svve_core import EngineConfig, SearchEngine, SearchParams
from svve_core.exceptions import (
    IndexFormatError,
    IndexNotFoundError,
    InvalidInputError,
    SVVEError,
)

log = logging.getLogger("uvicorn.error")  # shows up in uvicorn's and gunicorn's log


# --- settings ------------------------------------------------------------------


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise RuntimeError(f"{name} must be 0 or 1, got {value!r}")


def _number(env: Mapping[str, str], name: str, default: float, kind: type = int) -> Any:
    value = env.get(name)
    if value is None or value == "":
        return kind(default)
    try:
        number = kind(value)
    except ValueError:
        raise RuntimeError(f"{name} must be a {kind.__name__}, got {value!r}") from None
    if number < 0:
        raise RuntimeError(f"{name} must not be negative, got {value!r}")
    return number


@dataclass(frozen=True)
class Settings:
    index_dir: Path
    index_name: str = "current.svve"
    watch_interval: float = 1.0
    admin_token: Optional[str] = None
    verify: bool = True
    max_body_bytes: int = 4 << 20
    max_k: int = 1000
    max_batch: int = 256

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        index_dir = env.get("SVVE_INDEX_DIR")
        if not index_dir:
            raise RuntimeError("set SVVE_INDEX_DIR to the directory holding the index files")
        return cls(
            index_dir=Path(index_dir),
            index_name=env.get("SVVE_INDEX") or "current.svve",
            watch_interval=_number(env, "SVVE_WATCH_INTERVAL", 1.0, float),
            admin_token=env.get("SVVE_ADMIN_TOKEN") or None,
            verify=_flag(env, "SVVE_VERIFY", True),
            max_body_bytes=_number(env, "SVVE_MAX_BODY_BYTES", 4 << 20),
            max_k=_number(env, "SVVE_MAX_K", 1000),
            max_batch=_number(env, "SVVE_MAX_BATCH", 256),
        )


# --- the index, its file and reloads -------------------------------------------


class RequestError(Exception):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


Signature = Tuple[str, int, int, int, int]  # real path, device, inode, size, mtime


class IndexHolder:
    """The process's engine, which file it serves, and how it reloads.

    ``reload`` (admin endpoint) and ``check`` (file watch) may run in worker
    threads at the same time as searches: ``SearchEngine.reload`` swaps the
    index atomically, and a lock keeps two reloads from interleaving.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
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


async def _watch(holder: IndexHolder, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(holder.check)  # reload reads the file: off the loop


# --- request bodies ------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = 10
    # Mean recall@k to reach (svve_core.SearchParams.target_recall); None
    # keeps the default (or params["target_recall"]).
    recall: Optional[float] = None
    params: Optional[Dict[str, Any]] = None


class SearchRequest(_Request):
    """One query: ``vector`` (JSON floats) or ``vector_b64`` (base64 of
    little-endian float32 bytes)."""

    vector: Optional[List[float]] = None
    vector_b64: Optional[str] = None

    @model_validator(mode="after")
    def _one_vector(self) -> SearchRequest:
        if (self.vector is None) == (self.vector_b64 is None):
            raise ValueError("give exactly one of vector, vector_b64")
        return self


class BatchRequest(_Request):
    """Queries: ``vectors`` (list of rows) or ``vectors_b64`` (base64 of the
    row-major little-endian float32 matrix, rows of the index dimension)."""

    vectors: Optional[List[List[float]]] = None
    vectors_b64: Optional[str] = None

    @model_validator(mode="after")
    def _one_matrix(self) -> BatchRequest:
        if (self.vectors is None) == (self.vectors_b64 is None):
            raise ValueError("give exactly one of vectors, vectors_b64")
        return self


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Optional[str] = None  # relative to SVVE_INDEX_DIR; default: the current file


def _decode_b64(text: str, what: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"{what} is not valid base64: {e}") from None
    if len(raw) % 4:
        raise RequestError(f"{what} holds {len(raw)} bytes, not a whole number of float32")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32, copy=False)


def _floats(values: Any, what: str) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # out-of-range -> inf, which svve_core refuses
            return np.asarray(values, dtype=np.float32)
    except ValueError as e:  # ragged rows
        raise RequestError(f"{what}: {e}") from None


def _params(body: _Request, settings: Settings) -> Optional[SearchParams]:
    if body.k < 1 or body.k > settings.max_k:
        raise RequestError(f"k must be between 1 and {settings.max_k}, got {body.k}")
    # Bad knobs raise svve_core's InvalidParameterError -> 400 with its message.
    knobs = dict(body.params or {})
    if body.recall is not None:
        if "target_recall" in knobs:
            raise RequestError("give the recall once: recall or params.target_recall")
        knobs["target_recall"] = body.recall
    return SearchParams(**knobs) if knobs else None


# --- limits --------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: reads each request body up to ``limit`` bytes and
    answers 413 above it (by Content-Length, or while reading a chunked body),
    before the app sees the request."""

    def __init__(self, app: Any, limit: Optional[int] = None) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        if limit is None:
            limit = scope["app"].state.settings.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and (not value.isdigit() or int(value) > limit):
                await _too_large(send, limit)
                return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()  # waits for the disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _too_large(send: Any, limit: int) -> None:
    response = JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
    await response({"type": "http"}, None, send)


# --- the app -------------------------------------------------------------------


def create_app(holder: Optional[IndexHolder] = None) -> FastAPI:
    """The service. ``holder``: an index opened already (before fork under
    gunicorn --preload); otherwise each worker opens it at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if holder is None:
            settings = Settings.from_env()
            state = await asyncio.to_thread(IndexHolder, settings)
        else:
            settings, state = holder.settings, holder
            # Forked from a master that opened the index earlier: catch up
            # with a file replaced since, before serving anything.
            await asyncio.to_thread(state.check)
        app.state.settings, app.state.holder = settings, state
        log.info("pid %d: serving %s", os.getpid(), state.describe())
        watcher = None
        if settings.watch_interval > 0:
            watcher = asyncio.create_task(_watch(state, settings.watch_interval))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    app = FastAPI(title="svve search", lifespan=lifespan)
    if holder is not None:
        app.state.settings = holder.settings
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestError)
    async def _bad_request(request: Request, e: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(SVVEError)
    async def _library_error(request: Request, e: SVVEError) -> JSONResponse:
        if isinstance(e, InvalidInputError):
            status = 400  # the query or a parameter: the caller's fault
        elif isinstance(e, IndexNotFoundError):
            status = 404  # reload of a missing file
        elif isinstance(e, IndexFormatError):
            status = 422  # reload of a file that is not a usable index
        else:
            status = 500
        return JSONResponse({"detail": str(e), "error": type(e).__name__}, status_code=status)

    @app.get("/health")
    async def health(request: Request) -> Dict[str, Any]:
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/info")
    async def info(request: Request) -> Dict[str, Any]:
        state: IndexHolder = request.app.state.holder
        return state.describe()

    @app.post("/search")
    async def search(body: SearchRequest, request: Request) -> JSONResponse:
        state: IndexHolder = request.app.state.holder
        params = _params(body, request.app.state.settings)
        if body.vector_b64 is not None:
            query = _decode_b64(body.vector_b64, "vector_b64")
        else:
            query = _floats(body.vector, "vector")
        # The GIL is released inside search: run it on a thread, not the loop.
        ids, scores = await state.engine.asearch(query, body.k, params)
        return JSONResponse({"ids": ids.tolist(), "scores": scores.tolist()})

    @app.post("/search/batch")
    async def search_batch(body: BatchRequest, request: Request) -> JSONResponse:
        state: IndexHolder = request.app.state.holder
        settings: Settings = request.app.state.settings
        params = _params(body, settings)
        if body.vectors_b64 is not None:
            flat = _decode_b64(body.vectors_b64, "vectors_b64")
            dim = state.engine.dim
            if flat.size % dim:
                raise RequestError(f"vectors_b64 holds {flat.size} floats, not rows of {dim}")
            queries = flat.reshape(-1, dim)
        else:
            queries = _floats(body.vectors, "vectors")
            if queries.ndim == 1 and queries.size == 0:
                queries = queries.reshape(0, state.engine.dim)
        if queries.ndim == 2 and queries.shape[0] > settings.max_batch:
            raise RequestError(f"at most {settings.max_batch} queries per batch")
        ids, scores = await state.engine.asearch_batch(queries, body.k, params)
        return JSONResponse({"ids": ids.tolist(), "scores": scores.tolist()})

    @app.post("/admin/reload")
    async def admin_reload(request: Request, body: Optional[ReloadRequest] = None) -> Any:
        state: IndexHolder = request.app.state.holder
        token = state.settings.admin_token
        if token is None:
            raise RequestError("not found (set SVVE_ADMIN_TOKEN to enable reloads)", 404)
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise RequestError("missing or wrong bearer token", 401)
        name = body.path if body is not None else None
        # Reaches this worker only; other workers follow the file watch.
        return await asyncio.to_thread(state.reload, name)

    return app


def _app_from_env() -> FastAPI:
    if _flag(os.environ, "SVVE_OPEN_AT_IMPORT", False):
        holder = IndexHolder(Settings.from_env())
        # Exercise the engine (and the library's thread pool) before any fork.
        holder.engine.search_batch(np.ones((2, holder.engine.dim), np.float32), 1)
        return create_app(holder)
    return create_app()


app = _app_from_env()
