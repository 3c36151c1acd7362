"""``build_sharded``: one set of partitions trained once, rows assigned to
the shard holding their partition, every shard an ordinary index file built
on its share of the partitions (in parallel Ray tasks when Ray is running),
the router calibrated, and the manifest written last."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from svve_core import _svve_core
from svve_core.distributed import layout
from svve_core.engine import _checked, _float_matrix, build_index
from svve_core.exceptions import InvalidDTypeError, InvalidParameterError, InvalidShapeError
from svve_core.schemas import IndexConfig, Metric

PathLike = Union[str, "os.PathLike[str]"]

# Sample queries (rows of the data, answered leave-one-out) for the routing
# calibration, and the neighbours per query it covers.
ROUTE_QUERIES = 300
ROUTE_K = 10


def build_sharded(
    path: PathLike,
    vectors: Any,
    ids: Optional[np.ndarray] = None,
    metric: Metric = "cosine",
    shards: int = 4,
    config: Optional[IndexConfig] = None,
    attributes: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Build a sharded index in the directory ``path`` (created if missing).

    ``vectors``: an (n, dim) float32 array, or a list of ``.npy`` paths whose
    rows are concatenated (each memory-mapped, never all in memory at once
    beyond what the shards need). ``ids`` (n,) int64 default to ``arange(n)``.
    ``attributes`` as for ``build_index``. ``config`` as for ``build_index``
    (``partitions`` counts the global partitions; at least ``8 shards``).

    With Ray initialised (``ray.init()``), the shard files are built in
    parallel Ray tasks; otherwise one after the other. Returns a dict:
    ``n``, ``dim``, ``metric``, ``partitions`` and per shard its ``file``,
    ``rows`` and ``partitions``.
    """
    config = _checked(config, IndexConfig, "config")
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise InvalidParameterError(f"shards must be a positive int, got {shards!r}")
    shards = int(shards)
    data = _load_vectors(vectors)
    n, dim = data.shape
    ids = _ids_of(ids, n)
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / layout.MANIFEST).exists():
        # Never rewrite files that serving actors may have mapped.
        raise InvalidParameterError(f"{directory}: a sharded index exists here already")

    centroids = _train(data, metric, config, shards)
    assigned = _svve_core.assign_partitions(data, metric, centroids).astype(np.int64)
    rows_per_partition = np.bincount(assigned, minlength=len(centroids))
    groups = layout.group_partitions(centroids, rows_per_partition, shards)
    owner = np.empty(len(centroids), dtype=np.int64)
    for s, group in enumerate(groups):
        owner[group] = s
    shard_of_row = owner[assigned]

    layout.write_centroids(directory, centroids)
    jobs = []
    for s, group in enumerate(groups):
        rows = np.flatnonzero(shard_of_row == s)
        jobs.append(
            (
                str(directory / layout.shard_file(s)),
                np.ascontiguousarray(data[rows]),
                np.ascontiguousarray(ids[rows]),
                metric,
                config,
                _attributes_of(attributes, rows),
                np.ascontiguousarray(centroids[group]),
            )
        )
    _run_builds(jobs)

    coverage = _route_coverage(data, metric, centroids, assigned, owner, config.seed)
    manifest = layout.ShardedManifest(
        metric=metric,
        dim=dim,
        n=n,
        partitions=len(centroids),
        shards=[
            layout.ShardEntry(
                file=layout.shard_file(s), rows=int((shard_of_row == s).sum()), partitions=g
            )
            for s, g in enumerate(groups)
        ],
        coverage=coverage,
        coverage_queries=min(ROUTE_QUERIES, n),
    )
    layout.write_atomic(directory / layout.MANIFEST, layout.manifest_bytes(manifest))
    return layout.describe(manifest)


def _load_vectors(vectors: Any) -> np.ndarray:
    if isinstance(vectors, (list, tuple)) and all(
        isinstance(p, (str, os.PathLike)) for p in vectors
    ):
        if not vectors:
            raise InvalidParameterError("vectors: an empty list of .npy paths")
        parts = [np.load(p, mmap_mode="r", allow_pickle=False) for p in vectors]
        for p, a in zip(vectors, parts):
            if a.dtype != np.float32 or a.ndim != 2 or a.shape[1] != parts[0].shape[1]:
                raise InvalidDTypeError(
                    f"{p}: must hold an (n, {parts[0].shape[1]}) float32 matrix, "
                    f"got {a.shape} {a.dtype}"
                )
        return np.ascontiguousarray(np.concatenate(parts))
    return _float_matrix(vectors, "vectors")


def _ids_of(ids: Optional[np.ndarray], n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n, dtype=np.int64)
    if not isinstance(ids, np.ndarray) or ids.dtype != np.int64:
        raise InvalidDTypeError("ids must be a numpy.ndarray of int64")
    if ids.shape != (n,):
        raise InvalidShapeError(f"ids must have shape ({n},), got {ids.shape}")
    if len(np.unique(ids)) != n:
        raise InvalidParameterError("ids must be unique")
    return ids


def _train(data: np.ndarray, metric: str, config: IndexConfig, shards: int) -> np.ndarray:
    """The global partitions, as one build of all rows would train them; at
    least ``8 shards`` of them (so every shard holds several)."""
    centroids = _svve_core.train_partitions(data, metric, config.model_dump_json())
    want = min(len(data), 8 * shards)
    if len(centroids) < want:
        more = config.model_copy(update={"partitions": want})
        centroids = _svve_core.train_partitions(data, metric, more.model_dump_json())
    return np.ascontiguousarray(centroids, dtype=np.float32)


def _attributes_of(
    attributes: Optional[Mapping[str, Any]], rows: np.ndarray
) -> Optional[Dict[str, Any]]:
    if attributes is None:
        return None
    out: Dict[str, Any] = {}
    for name, values in attributes.items():
        if isinstance(values, np.ndarray) or hasattr(values, "__array__"):
            arr = np.asarray(values)
            out[name] = arr[rows] if arr.dtype != object else [arr[i] for i in rows]
        else:
            out[name] = [values[i] for i in rows]
    return out


def _build_one(job: Sequence[Any]) -> None:
    path, vectors, ids, metric, config, attributes, centroids = job
    build_index(
        path, vectors, ids, metric=metric, config=config, attributes=attributes,
        progress=lambda done, total: None, centroids=centroids,
    )  # fmt: skip


def _run_builds(jobs: List[Sequence[Any]]) -> None:
    """Every shard's build: Ray tasks when Ray is up, else in turn here."""
    try:
        import ray
    except ImportError:
        ray = None
    if ray is not None and ray.is_initialized() and len(jobs) > 1:
        task = ray.remote(_build_one)
        ray.get([task.remote(job) for job in jobs])
    else:
        for job in jobs:
            _build_one(job)


def _route_coverage(
    data: np.ndarray,
    metric: str,
    centroids: np.ndarray,
    assigned: np.ndarray,
    owner: np.ndarray,
    seed: int,
) -> List[float]:
    """The router's calibration: sample rows as queries, their exact top-10
    among the other rows (in the space the partitions live in: unit rows for
    cosine), and the coverage curve over the nearest P partitions."""
    n = len(data)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=min(ROUTE_QUERIES, n), replace=False))
    unit = metric == "cosine"
    queries = data[picks].astype(np.float64)
    if unit:
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    k = min(ROUTE_K, n - 1)
    if k < 1:
        return [1.0] * len(centroids)
    best = np.full((len(picks), k), -np.inf)
    best_rows = np.zeros((len(picks), k), dtype=np.int64)
    for start in range(0, n, 65_536):
        block = data[start : start + 65_536].astype(np.float64)
        if unit:
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        if metric == "l2":
            s = -((queries**2).sum(1)[:, None] - 2 * queries @ block.T + (block**2).sum(1)[None, :])
        else:
            s = queries @ block.T
        own = (picks >= start) & (picks < start + len(block))
        s[np.flatnonzero(own), picks[own] - start] = -np.inf  # leave one out
        both = np.concatenate([best, s], axis=1)
        rows = np.concatenate(
            [best_rows, np.broadcast_to(np.arange(start, start + len(block)), s.shape)], axis=1
        )
        top = np.argpartition(-both, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(both, top, axis=1)
        best_rows = np.take_along_axis(rows, top, axis=1)
    return layout.route_coverage(queries.astype(np.float32), best_rows, assigned, centroids, owner)
