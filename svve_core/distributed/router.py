"""Which shards a query goes to, and how their answers become one.

A query goes only to the shards owning the partitions it could find its
neighbours in: among its nearest ``probes`` partitions (L2 to the global
centroids; a unit query for cosine, as the partitions hold unit rows),
those within ``(1 + ratio)`` of the nearest one's squared distance, with
the ``(probes, ratio)`` rule the build found to reach
``1 - ROUTE_SHARE (1 - target_recall)`` of its sample queries' true
neighbours over the fewest shards (``layout.route_table``); and at least
the explicit ``nprobe`` (plus ``expand_probes``) nearest. The ratio makes it
per query: one deep inside a shard's region goes to that shard alone, one
between regions to each (the single index's centroid expansion, across
shards). ``exact=True`` and filtered
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
# the calibration sample; the shards' own searches spend the rest. 0.1 lost
# 0.006 recall against one index on the clustered 1M set's held-out queries
# (its sample queries are rows, a slightly easier distribution); 0.05 did not.
ROUTE_SHARE = 0.05

Answers = List[List[Tuple[np.ndarray, np.ndarray]]]


class Router:
    def __init__(self, manifest: layout.ShardedManifest, centroids: np.ndarray) -> None:
        self.manifest = manifest
        self.shards = len(manifest.shards)
        self._owner = manifest.owner_of_partitions()
        self._centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self._c_norm2 = np.einsum("ij,ij->i", self._centroids, self._centroids)

    def rule(self, p: SearchParams) -> tuple[int, float]:
        """(probes, ratio) a query with ``p`` is routed with."""
        # Capped at the finest share the 300 x 10 sample neighbours measure
        # (1 - 1/1000); past it every shard would be asked.
        cover = min(1 - (1 - p.target_recall) * ROUTE_SHARE, layout.FINEST_COVER)
        return layout.rule_for(self.manifest.routing, cover)

    def route(self, queries: np.ndarray, p: SearchParams, filtered: bool) -> List[List[int]]:
        """The shards (sorted) each row of ``queries`` (b, dim) goes to."""
        if p.exact or filtered or self.shards == 1:
            return [list(range(self.shards)) for _ in range(len(queries))]
        q = queries.astype(np.float32)
        if self.manifest.metric == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        d2 = layout.partition_d2(q, self._centroids, self._c_norm2)
        probes, ratio = self.rule(p)
        near = layout.routed(d2, probes, ratio)
        explicit = min(p.nprobe + (p.expand_probes if p.expansion else 0), d2.shape[1])
        if explicit > 0:  # at least the partitions an explicit nprobe names
            near |= layout.routed(d2, explicit, -1.0)
        return [sorted(set(self._owner[np.flatnonzero(row)].tolist())) for row in near]

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
