"""The Ray actor serving one shard: an ordinary ``SearchEngine`` over the
shard file, memory-mapped, so actors of one node share its pages."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from svve_core.engine import SearchEngine
from svve_core.schemas import EngineConfig, SearchParams


class ShardServer:
    """Plain class; ``engine.py`` wraps it with ``ray.remote``."""

    def __init__(self, path: str, config_json: str) -> None:
        self.path = path
        self.engine = SearchEngine(path, EngineConfig.model_validate_json(config_json))

    def search_batch(
        self, queries: np.ndarray, k: int, params_json: Optional[str], filter: Optional[Any]
    ) -> Tuple[np.ndarray, np.ndarray]:
        params = None if params_json is None else SearchParams.model_validate_json(params_json)
        return self.engine.search_batch(queries, k, params, filter)

    def where(self) -> Dict[str, Any]:
        import ray

        return {
            "path": self.path,
            "rows": len(self.engine),
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
        }

    def ping(self) -> int:
        return os.getpid()
