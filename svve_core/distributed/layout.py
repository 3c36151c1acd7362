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
- ``route_coverage`` measures, on sample queries with their exact top-k, which
  share of the true neighbours lies in the shards owning a query's nearest P
  partitions, for every P: the router's calibration (blueprint section 13).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Literal, Sequence

import numpy as np
from pydantic import Field

from svve_core.exceptions import CorruptIndexError, IndexNotFoundError, InvalidParameterError
from svve_core.schemas import Metric, _Model

MANIFEST = "sharded.json"
CENTROIDS = "centroids.npy"
FORMAT = "svve-sharded"
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
    # coverage[P - 1]: mean share of a sample query's true top-k held by the
    # shards owning its nearest P partitions.
    coverage: List[float]
    coverage_queries: int = Field(ge=0)

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
    return json.dumps(manifest.model_dump(), indent=1).encode()


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


def route_coverage(
    queries: np.ndarray,
    truth: np.ndarray,
    truth_partition: np.ndarray,
    centroids: np.ndarray,
    owner: np.ndarray,
) -> List[float]:
    """Mean share of each query's true neighbours held by the shards owning
    its nearest P partitions (by L2 to the centroids, as a build assigns
    rows), for P = 1..L. ``truth`` (q, k) are row numbers whose partitions
    are ``truth_partition[truth]``."""
    parts = len(centroids)
    d2 = (
        (queries.astype(np.float64) ** 2).sum(1)[:, None]
        - 2 * queries.astype(np.float64) @ centroids.T.astype(np.float64)
        + (centroids.astype(np.float64) ** 2).sum(1)[None, :]
    )
    ranking = np.argsort(d2, axis=1, kind="stable")
    total = np.zeros(parts)
    for q in range(len(queries)):
        # first_rank[s]: the P at which shard s is first reached.
        shard_seq = owner[ranking[q]]
        first_rank = np.full(owner.max() + 1, parts, dtype=np.int64)
        seen_at = np.unique(shard_seq, return_index=True)
        first_rank[seen_at[0]] = seen_at[1]
        reach = np.sort(first_rank[owner[truth_partition[truth[q]]]])
        # covered(P) = #neighbours whose shard is first reached at rank < P.
        covered = np.searchsorted(reach, np.arange(1, parts + 1), side="left")
        total += covered / truth.shape[1]
    return [round(float(x), 6) for x in total / max(len(queries), 1)]


def probes_for(coverage: Sequence[float], target: float) -> int:
    """Fewest nearest partitions whose shards hold at least ``target`` of the
    true neighbours on the sample (all of them if none does)."""
    for p, cov in enumerate(coverage, start=1):
        if cov >= target:
            return p
    return len(coverage)


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
