"""Which shards a query goes to, and how their answers become one.

A query goes only to the shards owning the partitions it would probe: its
nearest ``P`` partitions by L2 to the global centroids (unit query for
cosine, as the partitions hold unit rows), where ``P`` is the fewest that
covered ``1 - ROUTE_SHARE (1 - target_recall)`` of the true neighbours of
the build's sample queries (``layout.route_coverage``), and at least the
explicit ``nprobe`` (plus ``expand_probes``). ``exact=True`` and filtered
queries go to every shard (a filter's matches may lie anywhere).

Pure numpy, no Ray: ``ShardedEngine`` uses it, and so does the fan-out
study (``benchmarks.studies.sharded``) over shard files opened locally.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from svve_core.distributed import layout
from svve_core.engine import Result
from svve_core.schemas import SearchParams

# Routing may lose this share of the miss budget ``1 - target_recall`` on
# the calibration sample; the shards' own searches spend the rest.
ROUTE_SHARE = 0.1

Answers = List[List[Tuple[np.ndarray, np.ndarray]]]


class Router:
    def __init__(self, manifest: layout.ShardedManifest, centroids: np.ndarray) -> None:
        self.manifest = manifest
        self.shards = len(manifest.shards)
        self._owner = manifest.owner_of_partitions()
        self._centroids = centroids.astype(np.float64)
        self._c_norm2 = (self._centroids**2).sum(1)

    def probes(self, p: SearchParams) -> int:
        """Nearest partitions whose shards a query with ``p`` is sent to."""
        cover = 1 - (1 - p.target_recall) * ROUTE_SHARE
        probes = layout.probes_for(self.manifest.coverage, cover)
        explicit = p.nprobe + (p.expand_probes if p.expansion else 0)
        return min(max(probes, explicit, 1), len(self._centroids))

    def route(self, queries: np.ndarray, p: SearchParams, filtered: bool) -> List[List[int]]:
        """The shards (sorted) each row of ``queries`` (b, dim) goes to."""
        if p.exact or filtered or self.shards == 1:
            return [list(range(self.shards)) for _ in range(len(queries))]
        probes = self.probes(p)
        q = queries.astype(np.float64)
        if self.manifest.metric == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        d2 = self._c_norm2[None, :] - 2 * q @ self._centroids.T
        nearest = np.argpartition(d2, probes - 1, axis=1)[:, :probes]
        return [sorted(set(self._owner[row].tolist())) for row in nearest]

    def merge(self, found: Answers, k: int) -> Result:
        """The top ``k`` of each query's shard answers (best first; ties by
        id), as (b, k') arrays with ``k'`` the fewest any query got."""
        ascending = self.manifest.metric == "l2"
        out_ids, out_scores = [], []
        for parts in found:
            ids = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
            scores = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.float32)
            order = np.lexsort((ids, scores if ascending else -scores))[:k]
            out_ids.append(ids[order].astype(np.int64, copy=False))
            out_scores.append(scores[order].astype(np.float32, copy=False))
        if not out_ids:
            return np.empty((0, 0), np.int64), np.empty((0, 0), np.float32)
        width = min(len(i) for i in out_ids)
        return (
            np.stack([i[:width] for i in out_ids]),
            np.stack([s[:width] for s in out_scores]),
        )


def fanout(routes: Sequence[Sequence[int]]) -> float:
    """Mean shards per query."""
    return float(np.mean([len(r) for r in routes])) if routes else 0.0
