"""The public Python API: ``build_index`` and ``SearchEngine``.

Python checks types and shapes (cheap, with clear errors); Rust checks
again, releases the GIL and does all the work.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union, get_args

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from svve_core import _svve_core
from svve_core.exceptions import (
    CorruptIndexError,
    DimensionMismatchError,
    InvalidDTypeError,
    InvalidParameterError,
    InvalidShapeError,
)
from svve_core.filters import encode_attributes, filter_text
from svve_core.schemas import (
    Calibration,
    EngineConfig,
    IndexConfig,
    IndexInfo,
    IndexManifest,
    Metric,
    SearchParams,
    one_line,
)

PathLike = Union[str, "os.PathLike[str]"]
Ids = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]
# (doc_ids, scores): shape (k',) for one query, (b, k') for a batch, with
# k' = min(k, rows); typed by dtype so checkers see int64 ids, float32 scores.
Result = Tuple[Ids, Scores]
Progress = Callable[[int, int], None]
Filter = Optional[Mapping[str, Any]]

log = logging.getLogger("svve_core")
_METRICS = get_args(Metric)


def _float_array(x: Any, what: str, ndim: int, shape: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 array of rank ``ndim`` (copies only if strided)."""
    if not isinstance(x, np.ndarray):
        raise InvalidDTypeError(
            f"{what} must be a numpy.ndarray of float32, got {type(x).__name__}"
        )
    if x.dtype != np.float32:
        raise InvalidDTypeError(
            f"{what} must have dtype float32, got {x.dtype}; "
            "convert with np.asarray(x, dtype=np.float32)"
        )
    if x.ndim != ndim:
        raise InvalidShapeError(f"{what} must be {ndim}-D {shape}, got shape {x.shape}")
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _float_matrix(x: Any, what: str) -> np.ndarray:
    return _float_array(x, what, 2, "(n, dim)")


def _query_of(query: Any, dim: int, holder: str = "the index") -> np.ndarray:
    """``query`` as a float32 vector of ``dim`` values (``holder`` names what
    has that dimension in the error)."""
    query = _float_array(query, "query", 1, "(dim,)")
    if query.shape[0] != dim:
        raise DimensionMismatchError(f"query has {query.shape[0]} dimensions, {holder} has {dim}")
    return query


def _rows_of(x: Any, what: str, dim: int, holder: str = "the index") -> np.ndarray:
    """``x`` as a float32 ``(n, dim)`` matrix, ``what`` naming it in errors."""
    x = _float_matrix(x, what)
    if x.shape[1] != dim:
        raise DimensionMismatchError(f"{what} have {x.shape[1]} dimensions, {holder} has {dim}")
    return x


async def _in_thread(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` in the event loop's default executor (searches release
    the GIL, so concurrent ones run in parallel)."""
    return await asyncio.get_running_loop().run_in_executor(None, call, *args)


def _check_k(k: Any) -> int:
    if type(k) is int and k >= 1:  # the common case, without the isinstance chain (~1 us)
        return min(k, 2**62)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise InvalidParameterError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise InvalidParameterError(f"k must be at least 1, got {k}")
    return min(int(k), 2**62)


def _checked(value: Any, cls: type, what: str) -> Any:
    """``value`` if it is a ``cls`` (``None`` means the default), else an SVVE error."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise InvalidParameterError(
            f"{what} must be a svve_core.{cls.__name__}, got {type(value).__name__}"
        )
    return value


def _log_progress(done: int, total: int) -> None:
    log.info("build: %d/%d", done, total)


def build_index(
    path: PathLike,
    vectors: np.ndarray,
    ids: Optional[np.ndarray] = None,
    metric: Metric = "cosine",
    config: Optional[IndexConfig] = None,
    progress: Optional[Progress] = None,
    attributes: Optional[Mapping[str, Any]] = None,
    *,
    centroids: Optional[np.ndarray] = None,
) -> IndexInfo:
    """Build an index file at ``path`` from ``vectors`` (n, dim) float32.

    ``ids`` (n,) int64 defaults to ``arange(n)`` and must be unique.
    ``attributes`` maps a name to one value per vector (a numpy array or a
    list): integers, floats, booleans, strings, or lists of strings (tags);
    searches filter on them (``filter=``).
    The file is written atomically: readers see the old file or the new one.
    ``progress(done, total)`` is called between chunks; returning ``False``
    cancels the build with ``BuildCancelledError`` and raising cancels it with
    that exception. Without it, progress goes to the ``svve_core`` logger at INFO.
    ``centroids`` (L, dim) float32: build on these partitions instead of
    training them (each row goes to its nearest; ``config.partitions`` is
    ignored). A sharded build (``svve_core.distributed``) gives every shard
    its share of one global set.
    Do not mutate the arrays from another thread during the call.
    """
    config = _checked(config, IndexConfig, "config")
    if centroids is not None:
        centroids = _float_matrix(centroids, "centroids")
    if progress is not None and not callable(progress):
        raise InvalidParameterError(f"progress must be callable, got {type(progress).__name__}")
    if metric not in _METRICS:
        raise InvalidParameterError(f"metric must be one of {_METRICS}, got {metric!r}")
    vectors = _float_matrix(vectors, "vectors")
    if ids is not None:
        if not isinstance(ids, np.ndarray) or ids.dtype != np.int64:
            raise InvalidDTypeError("ids must be a numpy.ndarray of int64")
        if ids.shape != (vectors.shape[0],):
            raise InvalidShapeError(f"ids must have shape ({vectors.shape[0]},), got {ids.shape}")
        ids = np.ascontiguousarray(ids)
    columns = encode_attributes(attributes, vectors.shape[0])
    callback = progress if progress is not None else _log_progress
    _svve_core.build_index(
        os.fspath(path),
        vectors,
        ids,
        metric,
        config.model_dump_json(),
        callback,
        columns,
        centroids,
    )
    return SearchEngine(path, EngineConfig(verify=False)).info()


class _Loaded:
    """One opened index and what the query path needs of it. Immutable: a
    reload builds a new one and swaps the reference, so a query that has
    read ``engine._state`` runs wholly against one index version."""

    __slots__ = ("core", "default", "dim", "manifest")

    def __init__(self, path: PathLike, config: EngineConfig) -> None:
        self.core = _svve_core._Engine(
            os.fspath(path), verify=config.verify, lock_pages=config.lock_pages
        )
        try:
            self.manifest = IndexManifest.model_validate_json(self.core.manifest_json())
        except (ValidationError, InvalidParameterError) as e:
            why = one_line("manifest", e) if isinstance(e, ValidationError) else str(e)
            raise CorruptIndexError(f"{os.fspath(path)}: manifest is not valid: {why}") from e
        self.dim = self.manifest.dim
        self.default = config.params.native()

    def native(self, params: Optional[SearchParams]) -> Any:
        if params is None:
            return self.default
        if not isinstance(params, SearchParams):
            raise InvalidParameterError("params must be a svve_core.SearchParams")
        return params.native()

    def query(self, query: Any) -> np.ndarray:
        return _query_of(query, self.dim)


class SearchEngine:
    """A loaded, memory-mapped index. Thread-safe; share one per process.

    Open it once at server start. The index file is mapped read-only, so
    worker processes that open the same file share its pages. ``reload``
    swaps in a new index version while queries keep running.
    """

    __slots__ = ("_config", "_state")

    def __init__(self, path: PathLike, config: Optional[EngineConfig] = None) -> None:
        self._config = _checked(config, EngineConfig, "config")
        if self._config.threads:
            _svve_core.set_num_threads(self._config.threads)
        self._state = _Loaded(path, self._config)

    def reload(
        self, path: Optional[PathLike] = None, config: Optional[EngineConfig] = None
    ) -> None:
        """Open ``path`` (default: the current file, e.g. after it was replaced
        by a new build) and swap it in atomically.

        Queries already running finish on the old index; later ones use the
        new one; no query sees a mix. The old mapping is released when the
        last query using it returns. If opening fails, the error is raised and
        the old index stays in service. Index files are never modified in
        place: build a new file (``build_index`` renames it over the old path
        atomically), then call ``reload``.
        """
        config = self._config if config is None else _checked(config, EngineConfig, "config")
        target = path if path is not None else self._state.core.path
        state = _Loaded(target, config)
        self._config, self._state = config, state

    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """Top-k of one query: ``(ids int64 (m,), scores float32 (m,))``, best first.

        ``m = min(k, rows)``, over the rows ``filter`` matches (all without
        one). Scores are similarities for cosine/ip (descending) and squared
        L2 distances for l2 (ascending). ``filter`` is a dict in the Mongo
        style: ``{"tenant": 7}``, ``{"price": {"$gte": 10, "$lt": 20}}``,
        ``{"tags": {"$contains": "linux"}}``, ``{"$or": [...]}``,
        ``{"id": {"$in": ids}}``; a bad one raises ``InvalidFilterError``.
        """
        st = self._state
        return st.core.search(st.query(query), _check_k(k), st.native(params), filter_text(filter))

    def search_stats(
        self,
        query: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Tuple[Ids, Scores, Dict[str, int]]:
        """``search`` plus a dict of the rows each stage touched."""
        st = self._state
        (ids, scores), stats = st.core.search_stats(
            st.query(query), _check_k(k), st.native(params), filter_text(filter)
        )
        return ids, scores, dict(stats)

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """Top-k of each row of ``queries`` (b, dim): ``(ids (b, m), scores (b, m))``.

        Queries run in parallel on the library's thread pool. One ``filter``
        applies to every query (evaluated once for the batch).
        """
        st = self._state
        queries = _rows_of(queries, "queries", st.dim)
        k = _check_k(k)
        native = st.native(params)
        text = filter_text(filter)
        if queries.shape[0] == 0:
            if text is not None:
                st.core.check_filter(text)
            m = min(k, st.manifest.n)
            return np.empty((0, m), np.int64), np.empty((0, m), np.float32)
        return st.core.search_batch(queries, k, native, text)

    async def asearch(
        self,
        query: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """``search`` in a worker thread, so the event loop keeps running.

        The GIL is released in Rust, so concurrent calls run in parallel.
        """
        return await _in_thread(self.search, query, k, params, filter)

    async def asearch_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """``search_batch`` in a worker thread."""
        return await _in_thread(self.search_batch, queries, k, params, filter)

    def info(self) -> IndexInfo:
        """Size, metric, format and build parameters of the loaded index."""
        st = self._state
        m = st.manifest
        sizes = dict(st.core.section_bytes())
        cal_json = st.core.calibration_json()
        calibration = None if cal_json is None else Calibration.model_validate_json(cal_json)
        warnings = []
        if calibration is None:
            warnings.append(
                "this index has no recall calibration (a format version 1 file or a build with "
                "calibrate=False): target_recall is ignored and searches use fixed rules; "
                "rebuild it to calibrate"
            )
        return IndexInfo(
            path=os.fspath(st.core.path),
            n=m.n,
            dim=m.dim,
            metric=m.metric,
            format_version=m.format_version,
            library_version=m.library_version,
            bytes_tier1=sizes["tier1"],
            bytes_tier2=sizes["tier2"],
            bytes_ids=sizes["ids"],
            bytes_file=sizes["file"],
            spilled=sizes["spilled"],
            partitions=m.partitions,
            build=m.build,
            isa=st.core.isa,
            calibration=calibration,
            attributes=dict(st.core.attribute_schema()),
            warnings=warnings,
        )

    def calibrate(self, queries: np.ndarray, out: Optional[PathLike] = None) -> IndexInfo:
        """Recalibrate ``target_recall`` on your own queries (``(b, dim)`` float32,
        at least 50; a few hundred sampled from the service's query log is best).

        A build calibrates on rows of the index; queries unlike the indexed rows
        (short questions against long passages) may need more effort for the same
        recall. This measures every target's settings against exact search over
        ``queries`` and writes the index with that calibration, otherwise
        unchanged, to ``out`` atomically. By default ``out`` is this engine's own
        file: it is replaced (queries in flight keep the old mapping) and this
        engine reloads it. Returns the new file's ``info()``.
        """
        st = self._state
        queries = _rows_of(queries, "queries", st.dim)
        target = os.fspath(st.core.path if out is None else out)
        st.core.recalibrate(queries, target)
        if out is None or os.path.abspath(target) == os.path.abspath(st.core.path):
            self.reload(target)
            return self.info()
        return SearchEngine(target, EngineConfig(verify=False)).info()

    def arrays(self) -> Dict[str, np.ndarray]:
        """Read-only numpy views of what the index stores, without copying (the
        views keep the mapping alive): ``centroids`` (partitions, dim) float32,
        ``offsets`` (partitions + 1,) uint64 (partition ``p`` holds stored rows
        ``offsets[p]:offsets[p + 1]``), ``vectors`` (n, dim) float32 and ``ids``
        (n,) int64, both in stored (partition) order. Vectors are the scored
        ones: unit length for cosine. For studies and export."""
        return self._state.core.arrays()

    @property
    def dim(self) -> int:
        """Dimensions per vector."""
        return self._state.dim

    def __len__(self) -> int:
        return self._state.manifest.n

    def __repr__(self) -> str:
        st = self._state
        m = st.manifest
        path = os.fspath(st.core.path)
        return f"SearchEngine(path={path!r}, n={m.n}, dim={m.dim}, metric={m.metric!r})"
