"""``build_sharded``: one set of partitions trained once, rows assigned to
the shard holding their partition, every shard an ordinary index file built
on its share of the partitions (in parallel Ray tasks when Ray is running),
the router calibrated, and the manifest written last.

The rows are read in chunks (``sources``): from ``.npy`` files or a Ray
Dataset, a build holds one chunk, the training sample and one ``int32`` per
row at a time, and each shard's rows go to a memory-mapped file beside the
index before that shard is built, so the data may exceed memory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np

from svve_core import _svve_core
from svve_core.distributed import layout, sources
from svve_core.engine import _METRICS, _checked, build_index
from svve_core.exceptions import InvalidParameterError, SVVEError
from svve_core.schemas import IndexConfig, Metric

PathLike = Union[str, "os.PathLike[str]"]

# Sample queries (rows of the data, answered leave-one-out) for the routing
# calibration, and the neighbours per query it covers.
ROUTE_QUERIES = 300
ROUTE_K = 10
# Rows per partition sampled for training when the rows are streamed (the
# core trains on 32 per partition of what it is given: twice that leaves it
# its own choice).
SAMPLE_PER_PARTITION = 64


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

    ``vectors``: an (n, dim) float32 array, a list of ``.npy`` paths whose
    rows are concatenated (memory-mapped), or a Ray Dataset (its one column,
    or the one named ``embedding``/``vector``/``data``, one float32 vector per
    row; streamed). ``ids`` (n,) int64 default to ``arange(n)``.
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
    if metric not in _METRICS:
        raise InvalidParameterError(f"metric must be one of {_METRICS}, got {metric!r}")
    shards = int(shards)
    src = sources.source_of(vectors)
    n, dim = src.n, src.dim
    ids = sources.ids_for(ids, n)
    # Absolute: Ray workers building the shards need not share our cwd.
    directory = Path(path).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / layout.MANIFEST).exists():
        # Never rewrite files that serving actors may have mapped.
        raise InvalidParameterError(f"{directory}: a sharded index exists here already")

    centroids = _train(src, metric, config, shards)
    assigned = np.empty(n, dtype=np.int64)
    start = 0
    for chunk in src.chunks():
        try:  # validates every row as a build does (finite, not zero for cosine, ...)
            part = _svve_core.assign_partitions(chunk, metric, centroids)
        except SVVEError as e:  # its row numbers count from the chunk's start
            raise type(e)(f"vectors rows {start} to {start + len(chunk) - 1}: {e}") from None
        assigned[start : start + len(chunk)] = part
        start += len(chunk)
    groups = layout.group_partitions(
        centroids, np.bincount(assigned, minlength=len(centroids)), shards
    )
    owner = np.empty(len(centroids), dtype=np.int64)
    for s, group in enumerate(groups):
        owner[group] = s
    shard_of_row = owner[assigned]

    layout.write_centroids(directory, centroids)
    staging = directory / ".staging"
    try:
        jobs = _shard_jobs(src, directory, staging, groups, shard_of_row, ids, centroids)
        for job in jobs:
            rows = job.pop("rows")
            job.update(metric=metric, config=config, attributes=_attributes_of(attributes, rows))
        _run_builds(jobs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    routing = _route_table(src, metric, centroids, assigned, owner, config.seed)
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
        routing=routing,
        routing_queries=min(ROUTE_QUERIES, n),
    )
    layout.write_atomic(directory / layout.MANIFEST, layout.manifest_bytes(manifest))
    return layout.describe(manifest)


def _train(src: sources.Source, metric: str, config: IndexConfig, shards: int) -> np.ndarray:
    """The global partitions, at least ``8 shards`` of them (every shard
    holds several): for rows in memory, exactly as ``build_index`` of all of
    them trains; for streamed rows, on a seeded sample of them."""
    parts = max(_svve_core.partitions_for(src.n, config.partitions), min(src.n, 8 * shards))
    config = config.model_copy(update={"partitions": parts})
    if isinstance(src, sources.ArraySource):
        sample = src.array
    else:
        rng = np.random.default_rng(config.seed)
        size = min(src.n, parts * SAMPLE_PER_PARTITION)
        sample = src.take(np.sort(rng.choice(src.n, size=size, replace=False)))
    centroids = _svve_core.train_partitions(sample, metric, config.model_dump_json())
    return np.ascontiguousarray(centroids, dtype=np.float32)


def _shard_jobs(
    src: sources.Source,
    directory: Path,
    staging: Path,
    groups: List[List[int]],
    shard_of_row: np.ndarray,
    ids: np.ndarray,
    centroids: np.ndarray,
) -> List[Dict[str, Any]]:
    """Each shard's build arguments. Rows in memory are sliced; streamed rows
    are written into one memory-mapped ``.npy`` per shard under ``staging``
    (one pass), which the shard's build maps."""
    members = [np.flatnonzero(shard_of_row == s) for s in range(len(groups))]
    jobs = [
        {
            "path": str(directory / layout.shard_file(s)),
            "ids": np.ascontiguousarray(ids[rows]),
            "centroids": np.ascontiguousarray(centroids[groups[s]]),
            "rows": rows,
        }
        for s, rows in enumerate(members)
    ]
    if isinstance(src, sources.ArraySource):
        for job, rows in zip(jobs, members):
            job["vectors"] = np.ascontiguousarray(src.array[rows])
        return jobs
    staging.mkdir(exist_ok=True)
    files = [staging / f"shard-{s:03d}.npy" for s in range(len(groups))]
    maps = [
        np.lib.format.open_memmap(f, mode="w+", dtype=np.float32, shape=(len(rows), src.dim))
        for f, rows in zip(files, members)
    ]
    filled = np.zeros(len(groups), dtype=np.int64)
    start = 0
    for chunk in src.chunks():
        which = shard_of_row[start : start + len(chunk)]
        for s in np.unique(which):
            part = chunk[which == s]
            maps[s][filled[s] : filled[s] + len(part)] = part
            filled[s] += len(part)
        start += len(chunk)
    for job, m, f in zip(jobs, maps, files):
        m.flush()
        job["vectors"] = str(f)
    del maps
    return jobs


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


def _build_one(job: Dict[str, Any]) -> None:
    vectors = job["vectors"]
    if isinstance(vectors, str):  # a staged shard: mapped, not read into memory
        vectors = np.load(vectors, mmap_mode="r", allow_pickle=False)
    build_index(
        job["path"], vectors, job["ids"], metric=job["metric"], config=job["config"],
        attributes=job["attributes"], progress=lambda done, total: None,
        centroids=job["centroids"],
    )  # fmt: skip


def _run_builds(jobs: List[Dict[str, Any]]) -> None:
    """Every shard's build: Ray tasks when Ray is up, else in turn here."""
    try:
        import ray

        parallel = ray.is_initialized() and len(jobs) > 1
    except ImportError:
        parallel = False
    if parallel:
        task = ray.remote(_build_one)
        ray.get([task.remote(job) for job in jobs])
    else:
        for job in jobs:
            _build_one(job)


def _route_table(
    src: sources.Source,
    metric: str,
    centroids: np.ndarray,
    assigned: np.ndarray,
    owner: np.ndarray,
    seed: int,
) -> List[List[float]]:
    """The router's calibration: sample rows as queries, their exact top-10
    among the other rows (in the space the partitions live in: unit rows for
    cosine; one streamed pass), and ``layout.route_table`` over them."""
    n = src.n
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=min(ROUTE_QUERIES, n), replace=False))
    unit = metric == "cosine"
    queries = src.take(picks).astype(np.float64)
    if unit:
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    k = min(ROUTE_K, n - 1)
    if k < 1:
        return [[c, float(len(centroids)), -1.0, 1.0, 1.0] for c in layout.COVERS]
    best = np.full((len(picks), k), -np.inf)
    best_rows = np.zeros((len(picks), k), dtype=np.int64)
    start = 0
    for chunk in src.chunks():
        block = chunk.astype(np.float64)
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
        start += len(block)
    return layout.route_table(queries, best_rows, assigned, centroids, owner)
