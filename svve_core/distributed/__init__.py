"""Scale out on Ray: a sharded index built once (``build_sharded``) and
served by one Ray actor per shard replica (``ShardedEngine``), with a router
that sends each query only to the shards owning the partitions it would
probe, and merges their top-k into the answer one index would give.

Needs the ``ray`` extra (``pip install "svve-core[ray]"``) to serve; the
build runs without Ray (and in parallel Ray tasks when Ray is initialised).
"""

from svve_core.distributed.build import build_sharded
from svve_core.distributed.engine import ShardedEngine

__all__ = ["ShardedEngine", "build_sharded"]
