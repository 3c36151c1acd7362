"""A sharded index on disk, and the two pure computations it rests on.

A sharded index is a directory::

    centroids.npy        the global partitions (L, dim) float32, trained once
    shard-000.svve ...   one ordinary index file per shard, built on its share
                         of the partitions (each opens alone with SearchEngine)
    sharded.json         the manifest: which partitions each shard holds, the
                         routing calibration; written last, atomically

so a reader that finds ``sharded.json`` finds every file it names complete.

- ``group_partitions`` splits the partitions into shards of about equal rows
  such that neighbouring partitions share a shard (recursive bisection along
  the principal axis of the centroids): a query's nearest partitions then
  tend to live in few shards, which is what keeps the fan-out low.
- ``route_table`` is the router's calibration: on sample queries with
  their exact top-k, for each share of the neighbours to reach, the routing
  rule (nearest P partitions within a distance ratio of the nearest) that
  touches the fewest shards (blueprint section 13).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Final, List, Literal, Optional, Sequence

import numpy as np
from pydantic import Field

from svve_core.exceptions import CorruptIndexError, IndexNotFoundError, InvalidParameterError
from svve_core.schemas import Metric, _Model

MANIFEST = "sharded.json"
CENTROIDS = "centroids.npy"
FORMAT: Final = "svve-sharded"
FORMAT_VERSION = 1


def shard_file(shard: int) -> str:
    return f"shard-{shard:03d}.svve"


class ShardEntry(_Model):
    """One shard: its file, its rows and the global partitions it holds."""

    file: str
    rows: int = Field(ge=0)
    partitions: List[int]


class ShardedManifest(_Model):
    """``sharded.json``."""

    format: Literal["svve-sharded"] = FORMAT
    version: int = FORMAT_VERSION
    metric: Metric
    dim: int = Field(ge=1)
    n: int = Field(ge=1)
    partitions: int = Field(ge=1)
    shards: List[ShardEntry]
    # [cover, probes, ratio, reached, shards] rows of ``route_table``.
    routing: List[List[float]]
    routing_queries: int = Field(ge=0)

    def owner_of_partitions(self) -> np.ndarray:
        """(L,) shard of every global partition."""
        owner = np.full(self.partitions, -1, dtype=np.int64)
        for s, entry in enumerate(self.shards):
            owner[entry.partitions] = s
        return owner


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path`` by a temporary file, fsync and rename (then the
    directory's fsync), so a reader sees the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename durable
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_centroids(directory: Path, centroids: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(centroids, dtype=np.float32), allow_pickle=False)
    write_atomic(directory / CENTROIDS, buf.getvalue())


def read(directory: Path) -> tuple[ShardedManifest, np.ndarray]:
    """The manifest and the centroids of the sharded index at ``directory``,
    checked against each other; typed errors naming the file otherwise."""
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise IndexNotFoundError(f"{directory}: no sharded index ({MANIFEST} is missing)")
    try:
        manifest = ShardedManifest.model_validate_json(mpath.read_bytes())
    except (InvalidParameterError, ValueError) as e:
        raise CorruptIndexError(f"{mpath}: not a valid sharded manifest: {e}") from None
    cpath = directory / CENTROIDS
    try:
        centroids = np.load(cpath, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CorruptIndexError(f"{cpath}: cannot read the centroids: {e}") from None
    if centroids.shape != (manifest.partitions, manifest.dim) or centroids.dtype != np.float32:
        raise CorruptIndexError(
            f"{cpath}: centroids {centroids.shape} {centroids.dtype} do not match the manifest "
            f"({manifest.partitions}, {manifest.dim}) float32"
        )
    owner = manifest.owner_of_partitions()
    held = sorted(p for s in manifest.shards for p in s.partitions)
    if held != list(range(manifest.partitions)) or (owner < 0).any():
        raise CorruptIndexError(f"{mpath}: shards must hold every partition exactly once")
    if sum(s.rows for s in manifest.shards) != manifest.n:
        raise CorruptIndexError(f"{mpath}: shard rows do not add up to n = {manifest.n}")
    return manifest, np.ascontiguousarray(centroids)


def manifest_bytes(manifest: ShardedManifest) -> bytes:
    return json.dumps(manifest.model_dump(), indent=1, allow_nan=False).encode()


def group_partitions(centroids: np.ndarray, rows: np.ndarray, shards: int) -> List[List[int]]:
    """Partitions into ``shards`` groups of about equal rows, neighbours together.

    Recursive bisection: order the partitions by their projection on the
    principal axis of their centroids and cut where the rows split in the
    ratio of the shard counts on each side. Deterministic (no sampling).
    """

    def split(idx: np.ndarray, k: int) -> List[List[int]]:
        if k == 1:
            return [sorted(idx.tolist())]
        c = centroids[idx].astype(np.float64)
        c -= c.mean(axis=0)
        # Principal axis by a few power iterations (dim can be large; L small).
        axis = np.ones(c.shape[1]) / np.sqrt(c.shape[1])
        for _ in range(30):
            nxt = c.T @ (c @ axis)
            norm = np.linalg.norm(nxt)
            if norm == 0:
                break
            axis = nxt / norm
        order = idx[np.argsort(c @ axis, kind="stable")]
        left_k = k // 2
        weight = np.cumsum(rows[order].astype(np.float64) + 1e-9)
        want = weight[-1] * left_k / k
        # Both sides keep at least as many partitions as shards they feed.
        cut = int(np.searchsorted(weight, want)) + 1
        cut = min(max(cut, left_k), len(order) - (k - left_k))
        return split(order[:cut], left_k) + split(order[cut:], k - left_k)

    if shards > len(centroids):
        raise InvalidParameterError(
            f"shards must be at most the partitions ({len(centroids)}), got {shards}"
        )
    return split(np.arange(len(centroids)), shards)


# The routing calibration's grid: a partition is routed to when it is among
# the query's nearest P and its squared distance is within (1 + ratio) of
# the nearest partition's (the single index's nprobe and centroid expansion,
# across shards). For each share of the true neighbours in COVERS, the pair
# with the fewest shards per sample query that reaches it is kept.
RATIOS = [round(0.01 * 1.3**i, 6) for i in range(30)] + [float("inf")]
MAX_PROBES = 128
COVERS = [0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 1.0]
FINEST_COVER = 0.999


def partition_d2(
    queries: np.ndarray, centroids: np.ndarray, c_norm2: Optional[np.ndarray] = None
) -> np.ndarray:
    """(q, L) squared L2 distances, never negative, in float32 (ranking
    partitions needs no more, and it halves a query's routing cost; the
    build's calibration and the router use this one function). Pass the
    centroids' squared norms when kept (the router does)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if c_norm2 is None:
        c_norm2 = np.einsum("ij,ij->i", c, c)
    d2 = np.einsum("ij,ij->i", q, q)[:, None] - 2 * (q @ c.T) + c_norm2[None, :]
    return np.maximum(d2, 0.0)


def routed(d2: np.ndarray, probes: int, ratio: float) -> np.ndarray:
    """(q, L) mask of the partitions a rule routes each query to: among its
    nearest ``probes`` and within ``(1 + ratio)`` of the nearest distance
    (``ratio < 0``: no distance limit; the manifest stays plain JSON)."""
    probes = min(probes, d2.shape[1])
    kth = np.partition(d2, probes - 1, axis=1)[:, probes - 1 : probes]
    mask = d2 <= kth
    if ratio >= 0:
        mask &= d2 <= (1 + ratio) * d2.min(axis=1, keepdims=True) + 1e-12
    return mask


def route_table(
    queries: np.ndarray,
    truth: np.ndarray,
    truth_partition: np.ndarray,
    centroids: np.ndarray,
    owner: np.ndarray,
) -> List[List[float]]:
    """Rows ``[cover, probes, ratio, reached, shards]``: for each ``cover``
    of ``COVERS``, the rule (nearest ``probes``, within ``ratio``) that
    routes the sample queries to the fewest shards on average (``shards``)
    while their true neighbours (``truth`` (q, k) row numbers, in partitions
    ``truth_partition[truth]``) lie in routed shards ``reached`` of the
    time, at least ``cover``. The last row routes everywhere."""
    d2 = partition_d2(queries, centroids)
    nq, parts = d2.shape
    best = d2.min(axis=1, keepdims=True)
    t_shard = owner[truth_partition[truth]]  # (q, k): the shard holding each neighbour
    rows = np.arange(nq)
    order = np.argsort(d2, axis=1, kind="stable")[:, : min(MAX_PROBES, parts)]
    need_in_order = np.take_along_axis(d2, order, axis=1) / np.maximum(best, 1e-30) - 1
    own_in_order = owner[order]
    shards = int(owner.max()) + 1
    options = []  # (shards per query, reached, probes, ratio)
    for ratio in RATIOS:
        ok = need_in_order <= ratio + 1e-9  # (q, P) allowed by the ratio
        # Distinct shards among the allowed ones of the first p, for every p.
        seen = np.zeros((nq, shards), dtype=bool)
        count = np.zeros(nq, dtype=np.int64)
        for p in range(order.shape[1]):
            s = own_in_order[:, p]
            new = ok[:, p] & ~seen[rows, s]
            seen[rows, s] |= ok[:, p]
            count += new
            # A neighbour is reached when its shard is routed to (that shard's
            # own search then probes its partitions near the query).
            reached = float(np.take_along_axis(seen, t_shard, axis=1).mean())
            options.append((float(count.mean()), reached, p + 1, ratio))
    table = []
    for cover in COVERS:
        fits = [o for o in options if o[1] >= cover - 1e-12]
        if cover >= 1.0 or not fits:
            table.append([cover, float(parts), -1.0, 1.0, float(shards)])
            continue
        fan, reached, probes, ratio = min(fits, key=lambda o: (o[0], o[2]))
        ratio = ratio if np.isfinite(ratio) else -1.0  # no distance limit
        table.append([cover, float(probes), ratio, round(reached, 6), round(fan, 4)])
    return table


def rule_for(table: Sequence[Sequence[float]], cover: float) -> tuple[int, float]:
    """(probes, ratio) of the first row of ``route_table`` covering ``cover``."""
    for row in table:
        if row[0] >= cover - 1e-12:
            return int(row[1]), float(row[2])
    return int(table[-1][1]), float(table[-1][2])


def describe(manifest: ShardedManifest) -> Dict[str, Any]:
    return {
        "n": manifest.n,
        "dim": manifest.dim,
        "metric": manifest.metric,
        "partitions": manifest.partitions,
        "shards": [
            {"file": s.file, "rows": s.rows, "partitions": len(s.partitions)}
            for s in manifest.shards
        ],
    }
