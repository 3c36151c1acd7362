"""A FastAPI app over a sharded index (svve_core.distributed) on Ray.

Started the same way on one machine and on a cluster: ``ray.init()`` joins
the cluster named by ``RAY_ADDRESS`` (e.g. ``auto`` on a cluster node) and
otherwise starts a local one::

    SVVE_SHARDED=/srv/sharded uv run --group serve uvicorn examples.server.sharded:app
    RAY_ADDRESS=auto SVVE_SHARDED=/srv/sharded SVVE_REPLICAS=2 \\
        uv run --group serve uvicorn examples.server.sharded:app --host 0.0.0.0

Run ONE server process per cluster (one uvicorn worker): it owns the shard
actors (``SVVE_REPLICAS`` per shard), which do the search work on every
node; more server processes would start more actors. Build the index first
with ``svve_core.distributed.build_sharded``.

Endpoints: ``POST /search`` ``{"vector": [...], "k": 10, "recall": 0.95,
"filter": {...}}`` -> ``{"ids": [...], "scores": [...]}``; ``GET /info``;
``GET /health``. Bad input answers 400 or 422 with one line; a shard that
stays down answers 503 naming it.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, List, Optional

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import svve_core
from svve_core.distributed import ShardedEngine
from svve_core.exceptions import InvalidInputError, ShardUnavailableError


class SearchRequest(BaseModel):
    vector: List[float]
    k: int = Field(10, ge=1, le=10_000)
    recall: Optional[float] = Field(None, gt=0, le=1)
    filter: Optional[Dict[str, Any]] = None


class SearchResponse(BaseModel):
    ids: List[int]
    scores: List[float]


state: Dict[str, ShardedEngine] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    import ray

    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS joins a cluster; unset: a local one
    path = os.environ["SVVE_SHARDED"]
    replicas = int(os.environ.get("SVVE_REPLICAS", "1"))
    state["engine"] = ShardedEngine(path, replicas=replicas)
    try:
        yield
    finally:
        state.pop("engine").close()


app = FastAPI(title="svve sharded", lifespan=lifespan)


@app.post("/search", response_model=SearchResponse)
async def search(req: SearchRequest) -> SearchResponse:
    engine = state["engine"]
    params = None if req.recall is None else svve_core.SearchParams(target_recall=req.recall)
    try:
        ids, scores = await engine.asearch(
            np.asarray(req.vector, dtype=np.float32), req.k, params, req.filter
        )
    except InvalidInputError as e:
        raise HTTPException(400, str(e)) from None
    except ShardUnavailableError as e:
        raise HTTPException(503, str(e)) from None
    return SearchResponse(ids=ids.tolist(), scores=scores.tolist())


@app.get("/info")
def info() -> Dict[str, Any]:
    return state["engine"].info()


@app.get("/health")
def health() -> Dict[str, str]:
    return {"status": "ok"}
