"""Live collections: ``Collection`` adds, upserts and deletes rows without a
rebuild, durably, and shares every committed generation with any number of
reader processes.

A collection is a directory of write-once segment files (ordinary svve
indexes, memory-mapped), deletion files, a write-ahead log and one manifest
per generation (``docs/arch/blueprint.md``, section 10). One writer at a
time (``Collection.open(path)``); readers (``readonly=True``) search the
generation they last ``refresh()``-ed to.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from svve_core import _svve_core
from svve_core.engine import (
    Filter,
    Ids,
    PathLike,
    Result,
    Scores,
    _check_k,
    _checked,
    _in_thread,
    _query_of,
    _rows_of,
)
from svve_core.exceptions import (
    CollectionClosedError,
    InvalidDTypeError,
    InvalidParameterError,
    InvalidShapeError,
)
from svve_core.filters import encode_attributes, filter_text
from svve_core.schemas import (
    Calibration,
    CollectionConfig,
    CollectionInfo,
    Metric,
    SearchParams,
    SegmentInfo,
)

IdsLike = Union[np.ndarray, Sequence[int]]


def _ids(ids: Any, what: str = "ids") -> np.ndarray:
    """``ids`` as a contiguous int64 array (from int64 arrays, other integer
    arrays whose values fit, or a sequence of Python ints)."""
    if isinstance(ids, np.ndarray):
        if ids.dtype.kind not in "iu":
            raise InvalidDTypeError(f"{what} must be integers (int64), got dtype {ids.dtype}")
        if ids.dtype == np.uint64 and ids.size and ids.max() > np.iinfo(np.int64).max:
            raise InvalidParameterError(f"{what} must fit in int64, got {int(ids.max())}")
        arr = ids.astype(np.int64, copy=False)
    else:
        try:
            items = list(ids)
        except TypeError:
            raise InvalidDTypeError(
                f"{what} must be an int64 array or a sequence of ints, got {type(ids).__name__}"
            ) from None
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in items):
            raise InvalidDTypeError(f"{what} must be integers")
        try:
            arr = np.array(items, dtype=np.int64)
        except OverflowError:
            raise InvalidParameterError(f"{what} must fit in int64") from None
    if arr.ndim != 1:
        raise InvalidShapeError(f"{what} must be 1-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


class Collection:
    """A live collection of vectors, opened as its writer or read-only.

    Thread-safe: searches run in parallel and never wait for writes (they read
    an immutable snapshot); writes from several threads are serialised.
    """

    __slots__ = ("_default", "_dim", "_handle", "_path")

    def __init__(self, core: Any) -> None:
        self._handle: Any = core
        self._dim: int = core.dim
        self._path: str = os.fspath(core.path)
        self._default = SearchParams().native()

    @property
    def _core(self) -> Any:
        core = self._handle
        if core is None:
            raise CollectionClosedError(f"{self._path}: this collection handle was closed")
        return core

    @classmethod
    def create(
        cls,
        path: PathLike,
        dim: int,
        metric: Metric = "cosine",
        config: Optional[CollectionConfig] = None,
    ) -> Collection:
        """Create an empty collection in directory ``path`` (created if missing;
        ``CollectionExistsError`` if it holds one) and open it for writing.
        ``config`` sets when fresh rows become a segment, how segments merge, and
        how segments are built."""
        config = _checked(config, CollectionConfig, "config")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InvalidParameterError(f"dim must be a positive int, got {dim!r}")
        if metric not in ("cosine", "ip", "l2"):
            raise InvalidParameterError(f"metric must be cosine, ip or l2, got {metric!r}")
        core = _svve_core._Collection.create(
            os.fspath(path), int(dim), metric, config.model_dump_json()
        )
        return cls(core)

    @classmethod
    def open(cls, path: PathLike, readonly: bool = False, verify: bool = True) -> Collection:
        """Open the collection in ``path``: as its one writer (another writer gets
        ``CollectionLockedError``), or ``readonly`` (any number, in any process)."""
        return cls(_svve_core._Collection.open(os.fspath(path), bool(readonly), bool(verify)))

    # -- writes -------------------------------------------------------------

    def _vectors(self, vectors: Any) -> np.ndarray:
        return _rows_of(vectors, "vectors", self._dim, "the collection")

    def add(
        self,
        vectors: np.ndarray,
        ids: Optional[IdsLike] = None,
        attributes: Optional[Mapping[str, Any]] = None,
    ) -> np.ndarray:
        """Add rows (``(n, dim)`` float32); returns their int64 ids. Ids are
        assigned (above every id the collection ever held) when ``None``; an id
        the collection already holds, or one given twice, is a
        ``DuplicateIdError``. Visible to this handle at once, to readers after
        ``commit()``.

        ``attributes`` (name -> one value per row, as ``build_index`` takes
        them) make the rows filterable. The first ``add`` into an empty
        collection fixes the columns; every later ``add`` and ``upsert`` gives
        the same ones."""
        vectors = self._vectors(vectors)
        if ids is not None:
            ids = _ids(ids)
            if ids.shape[0] != vectors.shape[0]:
                raise InvalidShapeError(
                    f"ids must have shape ({vectors.shape[0]},), got {ids.shape}"
                )
        columns = encode_attributes(attributes, vectors.shape[0])
        return self._core.add(vectors, ids, columns)

    def upsert(
        self,
        vectors: np.ndarray,
        ids: IdsLike,
        attributes: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """Insert rows, replacing those whose ids the collection already holds
        (with ``attributes`` as ``add`` takes them)."""
        vectors = self._vectors(vectors)
        ids = _ids(ids)
        if ids.shape[0] != vectors.shape[0]:
            raise InvalidShapeError(f"ids must have shape ({vectors.shape[0]},), got {ids.shape}")
        self._core.upsert(vectors, ids, encode_attributes(attributes, vectors.shape[0]))

    def delete(self, ids: IdsLike) -> int:
        """Delete rows by id; returns how many existed (unknown ids are not an error)."""
        return self._core.delete(_ids(ids))

    def commit(self) -> int:
        """Make every change so far durable (fsynced) and visible to readers;
        returns the committed generation (unchanged if nothing changed)."""
        return self._core.commit()

    def compact(self) -> int:
        """Commit, then merge every segment into one (dropping deleted rows and
        re-training partitions on the merged rows). Searches keep running on
        the previous generation meanwhile. Returns the generation."""
        return self._core.compact()

    def refresh(self) -> bool:
        """Move a read-only handle to the newest committed generation; ``True``
        if it moved. (A writer always sees its own changes: ``False``.)"""
        return self._core.refresh()

    def close(self) -> None:
        """Release this handle (the writer's lock is freed once searches in
        flight return). Uncommitted changes are discarded. Later calls raise
        ``CollectionClosedError``."""
        self._handle = None

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- searches -----------------------------------------------------------

    def _native(self, params: Optional[SearchParams]) -> Any:
        if params is None:
            return self._default
        if not isinstance(params, SearchParams):
            raise InvalidParameterError("params must be a svve_core.SearchParams")
        return params.native()

    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """Top-k of one query over the live rows ``filter`` matches (all
        without one; filters as ``SearchEngine.search`` takes them): ``(ids
        int64 (m,), scores float32 (m,))``, best first, ``m = min(k, matching
        rows)``; scores as ``SearchEngine.search`` returns them."""
        query = _query_of(query, self._dim, "the collection")
        return self._core.search(query, _check_k(k), self._native(params), filter_text(filter))

    def search_stats(
        self,
        query: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Tuple[Ids, Scores, Dict[str, int]]:
        """``search`` plus a dict of the rows each stage touched (fresh rows,
        scored exactly, count as rescored)."""
        query = _query_of(query, self._dim, "the collection")
        (ids, scores), stats = self._core.search_stats(
            query, _check_k(k), self._native(params), filter_text(filter)
        )
        return ids, scores, dict(stats)

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """Top-k of each row of ``queries`` (b, dim): ``(ids (b, m), scores (b, m))``,
        one ``filter`` for all of them."""
        queries = _rows_of(queries, "queries", self._dim, "the collection")
        k = _check_k(k)
        native = self._native(params)
        text = filter_text(filter)
        if queries.shape[0] == 0:
            # One probe query checks the filter (raising where a search would)
            # and gives the width: min(k, matching rows).
            probe = np.zeros((1, self._dim), np.float32)
            probe[0, 0] = 1.0
            m = self._core.search_batch(probe, k, native, text)[0].shape[1]
            return np.empty((0, m), np.int64), np.empty((0, m), np.float32)
        return self._core.search_batch(queries, k, native, text)

    async def asearch(
        self,
        query: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """``search`` in a worker thread, so the event loop keeps running."""
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

    # -- facts --------------------------------------------------------------

    def info(self) -> CollectionInfo:
        """Rows, generation, segments and build options, as this handle sees them."""
        generation, n, segments, fresh, uncommitted, manifest, merge = self._core.stats()
        m = json.loads(manifest)
        warnings = []
        if merge is not None:
            warnings.append(
                f"the last merge after a commit failed (the commit did not; it is retried at "
                f"the next commit): {merge}"
            )
        return CollectionInfo(
            path=os.fspath(self._core.path),
            dim=self._dim,
            metric=self._core.metric,
            n=n,
            generation=generation,
            readonly=self._core.readonly,
            segments=[SegmentInfo(rows=r, deleted=d) for r, d in segments],
            fresh=fresh,
            uncommitted=uncommitted,
            config=CollectionConfig(**m["config"]),
            calibration=None if m.get("calibration") is None else Calibration(**m["calibration"]),
            attributes=dict(self._core.attribute_schema()),
            warnings=warnings,
        )

    @property
    def dim(self) -> int:
        """Dimensions per vector."""
        return self._dim

    @property
    def generation(self) -> int:
        """The last committed generation this handle sees (cheap: no I/O)."""
        return self._core.generation

    @property
    def readonly(self) -> bool:
        """Whether this handle is read-only."""
        return self._core.readonly

    def __len__(self) -> int:
        return len(self._core)

    def __repr__(self) -> str:
        core = self._handle
        if core is None:
            return f"Collection(path={self._path!r}, closed)"
        mode = "readonly" if core.readonly else "writer"
        return f"Collection(path={self._path!r}, n={len(core)}, dim={self._dim}, {mode})"
