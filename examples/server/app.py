"""A multi-worker HTTP search service over one memory-mapped svve index, or
over a live svve collection.

Index mode: every worker process opens the same index file; the file is
mapped read-only, so the workers share one copy of it in the page cache.
Collection mode: every worker opens the collection read-only and follows its
commits; one writer process owns ``Collection.open(dir)`` and the workers
forward write requests to it over a local unix socket. See README.md beside
this file for the commands, the reload procedure and the deployment rules.

Run from the repository root::

    SVVE_INDEX_DIR=/srv/index uv run --group serve \\
        uvicorn app:app --app-dir examples/server --host 127.0.0.1 --port 8000 --workers 2

    # collection mode: gunicorn.conf.py starts the writer process
    SVVE_COLLECTION=/srv/collection uv run --group serve \\
        gunicorn -c examples/server/gunicorn.conf.py app:app

    # the writer alone (for uvicorn, or your own supervisor)
    python examples/server/app.py writer

This file holds the HTTP side: request bodies, limits and the FastAPI app.
Beside it (imported by name: uvicorn's --app-dir, gunicorn's chdir and
``python app.py`` put this directory on sys.path):

    settings.py   Settings, read from the environment (every variable listed)
    errors.py     RequestError, a refusal with its HTTP status
    holders.py    what a worker serves and how it follows changes: IndexHolder,
                  CollectionHolder, the index file watch, the collection Refresher
    writer.py     collection mode's writer process (WriterServer, run_writer)
                  and the workers' WriterClient
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import hmac
import logging
import os
import sys
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, model_validator

from svve_core import SearchParams
from svve_core.exceptions import IndexFormatError, IndexNotFoundError, InvalidInputError, SVVEError

# isort: split
# This directory's modules, imported by name (see app.py's docstring).
from errors import RequestError
from holders import CollectionHolder, Holder, IndexHolder, Refresher, open_holder, watch_index
from settings import Settings, env_flag
from writer import WriterClient, run_writer

log = logging.getLogger("uvicorn.error")  # shows up in uvicorn's and gunicorn's log


# --- request bodies ------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = 10
    # Mean recall@k to reach (svve_core.SearchParams.target_recall); None
    # keeps the default (or params["target_recall"]).
    recall: Optional[float] = None
    params: Optional[Dict[str, Any]] = None
    # Only rows this filter matches (svve_core filter syntax: {"tenant": 7},
    # {"price": {"$lt": 20}}, {"$or": [...]}, {"id": {"$in": [...]}}).
    filter: Optional[Dict[str, Any]] = None


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


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Commit after this write: durable, and visible to every worker within a
    # refresh interval. False queues it until POST /collection/commit (or the
    # next committing write).
    commit: StrictBool = True


class AddRequest(_Write):
    """Rows to add: ``vectors`` (list of rows) or ``vectors_b64`` (as in
    /search/batch); ``ids`` optional (assigned by the collection when absent)."""

    vectors: Optional[List[List[float]]] = None
    vectors_b64: Optional[str] = None
    ids: Optional[List[StrictInt]] = None
    # Name -> one value per row (as svve_core.Collection.add takes them).
    attributes: Optional[Dict[str, List[Any]]] = None

    @model_validator(mode="after")
    def _one_matrix(self) -> AddRequest:
        if (self.vectors is None) == (self.vectors_b64 is None):
            raise ValueError("give exactly one of vectors, vectors_b64")
        return self


class UpsertRequest(AddRequest):
    """Rows to insert or replace, with their ``ids``."""

    ids: List[StrictInt]  # type: ignore[assignment]


class DeleteRequest(_Write):
    ids: List[StrictInt]


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


def _matrix(
    vectors: Optional[List[List[float]]], vectors_b64: Optional[str], dim: int, what: str
) -> np.ndarray:
    """Rows from JSON lists or base64; shape and values are checked by svve_core."""
    if vectors_b64 is not None:
        flat = _decode_b64(vectors_b64, f"{what}_b64")
        if flat.size % dim:
            raise RequestError(f"{what}_b64 holds {flat.size} floats, not rows of {dim}")
        return flat.reshape(-1, dim)
    rows = _floats(vectors, what)
    if rows.ndim == 1 and rows.size == 0:
        rows = rows.reshape(0, dim)
    return rows


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


def create_app(holder: Optional[Holder] = None) -> FastAPI:
    """The service. ``holder``: an index or collection opened already (before
    fork under gunicorn --preload); otherwise each worker opens it at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if holder is None:
            settings = Settings.from_env()
            state = await asyncio.to_thread(open_holder, settings)
        else:
            settings, state = holder.settings, holder
            # Forked from a master that opened the index earlier: catch up
            # with a file replaced (or a generation committed) since, before
            # serving anything.
            await asyncio.to_thread(state.check)
        app.state.settings, app.state.holder = settings, state
        log.info("pid %d: serving %s", os.getpid(), state.describe())
        watcher, refresher, pool = None, None, None
        app.state.writer, app.state.write_pool = None, None
        if isinstance(state, CollectionHolder):
            if settings.refresh_interval > 0:
                refresher = Refresher(state, settings.refresh_interval)
                refresher.start()
            if settings.writer_socket:
                app.state.writer = WriterClient(
                    settings.writer_socket, settings.writer_key, settings.write_timeout
                )
            # Writes wait on the writer (a compaction, other workers' writes):
            # threads of their own, so that they never hold up searches.
            pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="svve-write")
            app.state.write_pool = pool
        elif settings.watch_interval > 0:
            watcher = asyncio.create_task(watch_index(state, settings.watch_interval))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if refresher is not None:
                await asyncio.to_thread(refresher.stop)
            if pool is not None:
                pool.shutdown(wait=False)

    app = FastAPI(title="svve search", lifespan=lifespan)
    if holder is not None:
        app.state.settings = holder.settings
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestError)
    async def _bad_request(request: Request, e: RequestError) -> JSONResponse:
        body = {"detail": str(e)} if e.error is None else {"detail": str(e), "error": e.error}
        return JSONResponse(body, status_code=e.status)

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
        state: Holder = request.app.state.holder
        return state.describe()

    @app.post("/search")
    async def search(body: SearchRequest, request: Request) -> JSONResponse:
        state: Holder = request.app.state.holder
        params = _params(body, request.app.state.settings)
        if body.vector_b64 is not None:
            query = _decode_b64(body.vector_b64, "vector_b64")
        else:
            query = _floats(body.vector, "vector")
        # The GIL is released inside search: run it on a thread, not the loop.
        ids, scores = await state.engine.asearch(query, body.k, params, filter=body.filter)
        return JSONResponse({"ids": ids.tolist(), "scores": scores.tolist()})

    @app.post("/search/batch")
    async def search_batch(body: BatchRequest, request: Request) -> JSONResponse:
        state: Holder = request.app.state.holder
        settings: Settings = request.app.state.settings
        params = _params(body, settings)
        queries = _matrix(body.vectors, body.vectors_b64, state.engine.dim, "vectors")
        if queries.ndim == 2 and queries.shape[0] > settings.max_batch:
            raise RequestError(f"at most {settings.max_batch} queries per batch")
        ids, scores = await state.engine.asearch_batch(queries, body.k, params, filter=body.filter)
        return JSONResponse({"ids": ids.tolist(), "scores": scores.tolist()})

    @app.post("/admin/reload")
    async def admin_reload(request: Request, body: Optional[ReloadRequest] = None) -> Any:
        state: Holder = request.app.state.holder
        token = state.settings.admin_token
        if token is None:
            raise RequestError("not found (set SVVE_ADMIN_TOKEN to enable reloads)", 404)
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise RequestError("missing or wrong bearer token", 401)
        if not isinstance(state, IndexHolder):
            raise RequestError("not found (collection mode: workers refresh by themselves)", 404)
        name = body.path if body is not None else None
        # Reaches this worker only; other workers follow the file watch.
        return await asyncio.to_thread(state.reload, name)

    # -- collection mode: writes, forwarded to the writer process --------------

    def _writer(request: Request, write: bool) -> Tuple[CollectionHolder, WriterClient]:
        state = request.app.state.holder
        if not isinstance(state, CollectionHolder):
            raise RequestError("not found (index mode: set SVVE_COLLECTION for collections)", 404)
        token = state.settings.admin_token
        if write and token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise RequestError("missing or wrong bearer token", 401)
        writer: Optional[WriterClient] = request.app.state.writer
        if writer is None:
            raise RequestError(
                "this server has no collection writer (set SVVE_WRITER_SOCKET)",
                503,
                "WriterUnavailable",
            )
        return state, writer

    async def _forward(request: Request, op: str, **args: Any) -> JSONResponse:
        state, writer = _writer(request, write=op != "info")

        def call() -> Dict[str, Any]:
            reply = writer.call(op, **args)
            if op != "info" and reply["generation"] > state.engine.generation:
                state.check()  # this worker reads its own committed writes at once
            return reply

        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(request.app.state.write_pool, call)
        return JSONResponse(reply)

    @app.post("/collection/add")
    async def collection_add(body: AddRequest, request: Request) -> JSONResponse:
        state, _ = _writer(request, write=True)
        rows = _matrix(body.vectors, body.vectors_b64, state.engine.dim, "vectors")
        return await _forward(
            request,
            "add",
            vectors=rows,
            ids=body.ids,
            attributes=body.attributes,
            commit=body.commit,
        )

    @app.post("/collection/upsert")
    async def collection_upsert(body: UpsertRequest, request: Request) -> JSONResponse:
        state, _ = _writer(request, write=True)
        rows = _matrix(body.vectors, body.vectors_b64, state.engine.dim, "vectors")
        return await _forward(
            request,
            "upsert",
            vectors=rows,
            ids=body.ids,
            attributes=body.attributes,
            commit=body.commit,
        )

    @app.post("/collection/delete")
    async def collection_delete(body: DeleteRequest, request: Request) -> JSONResponse:
        return await _forward(request, "delete", ids=body.ids, commit=body.commit)

    @app.post("/collection/commit")
    async def collection_commit(request: Request) -> JSONResponse:
        return await _forward(request, "commit")

    @app.post("/collection/compact")
    async def collection_compact(request: Request) -> JSONResponse:
        return await _forward(request, "compact")

    @app.get("/collection/info")
    async def collection_info(request: Request) -> JSONResponse:
        return await _forward(request, "info")

    return app


def _app_from_env() -> FastAPI:
    if env_flag(os.environ, "SVVE_OPEN_AT_IMPORT", False):
        holder = open_holder(Settings.from_env())
        # Exercise the engine (and the library's thread pool) before any fork.
        holder.engine.search_batch(np.ones((2, holder.engine.dim), np.float32), 1)
        return create_app(holder)
    return create_app()


if __name__ == "__main__":
    if sys.argv[1:] != ["writer"]:
        sys.exit("usage: python app.py writer   (the collection's writer process)")
    sys.exit(run_writer())
else:
    app = _app_from_env()
