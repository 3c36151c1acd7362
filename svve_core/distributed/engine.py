"""``ShardedEngine``: one Ray actor per shard replica, a router holding the
global centroids, and a merge that answers as one index would.

A query goes only to the shards ``Router`` picks (``router.py``); each
answers with the caller's parameters and the top ``k`` of the union is the
answer. Fewer than ``min(k, n)`` results from the routed shards: the others
are asked too.

Faults: actors restart (``max_restarts=-1``) and Ray retries their tasks;
an actor killed for good is replaced here and its part of the query sent
again, once. A shard that still fails raises ``ShardUnavailableError``
naming it; an answer is never returned without every shard it was routed to.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from svve_core.distributed import layout
from svve_core.distributed.actor import ShardServer
from svve_core.distributed.router import Router
from svve_core.engine import Filter, Result, _check_k, _checked, _in_thread, _query_of, _rows_of
from svve_core.exceptions import InvalidParameterError, ShardUnavailableError
from svve_core.schemas import EngineConfig, SearchParams

PathLike = Union[str, "os.PathLike[str]"]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError('svve_core.distributed needs Ray: pip install "svve-core[ray]"') from None
    return ray


class ShardedEngine:
    """Serves a sharded index (``build_sharded``) from Ray actors.

    Call it inside a Ray cluster (``ray.init()``; a local one is started if
    none is). ``replicas`` actors per shard share the load round-robin.
    ``config`` as for ``SearchEngine`` (its ``params`` are the defaults).
    """

    def __init__(
        self,
        path: PathLike,
        replicas: int = 1,
        config: Optional[EngineConfig] = None,
        timeout_s: float = 120.0,
    ) -> None:
        ray = _ray()
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise InvalidParameterError(f"replicas must be a positive int, got {replicas!r}")
        self._path = Path(path).resolve()  # actors need not share our cwd
        self._config = _checked(config, EngineConfig, "config")
        self._manifest, centroids = layout.read(self._path)
        self._router = Router(self._manifest, centroids)
        self._timeout = float(timeout_s)
        self._replicas = replicas
        self._lock = threading.Lock()
        self._closed = False
        if not ray.is_initialized():
            ray.init()
        self._server = ray.remote(ShardServer).options(
            max_restarts=-1, max_task_retries=2, num_cpus=0
        )
        shards = len(self._manifest.shards)
        self._handles: List[List[Any]] = [
            [self._start(s) for _ in range(replicas)] for s in range(shards)
        ]
        self._turn = [itertools.count() for _ in range(shards)]
        for s in range(shards):  # fail now, naming the shard, if one cannot start
            for r in range(replicas):
                self._call(s, r, "ping")

    # --- public API -------------------------------------------------------

    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """Top ``k`` (ids, scores) for one float32 query, as one index would answer."""
        q = _query_of(query, self._manifest.dim, "the sharded index")
        ids, scores = self.search_batch(q[None, :], k, params, filter)
        return ids[0], scores[0]

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """``search`` for each row of ``queries`` (b, dim): (b, k') arrays."""
        queries = _rows_of(queries, "queries", self._manifest.dim, "the sharded index")
        k = _check_k(k)
        params_json = None  # None: each shard uses its engine's defaults
        if params is not None:
            params = _checked(params, SearchParams, "params")
            params_json = params.model_dump_json()
        effective = params if params is not None else self._config.params
        routes = self._router.route(queries, effective, filter is not None)
        found = self._ask(queries, routes, k, params_json, filter)
        want = min(k, self._manifest.n)
        short = {q for q, parts in enumerate(found) if sum(len(i) for i, _ in parts) < want}
        if short:  # the routed shards held too few rows: ask the rest
            every = range(len(self._handles))
            rest = [
                [s for s in every if s not in routes[q]] if q in short else []
                for q in range(len(queries))
            ]
            more = self._ask(queries, rest, k, params_json, filter)
            found = [a + b for a, b in zip(found, more)]
        return self._router.merge(found, k)

    async def asearch(
        self,
        query: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """``search`` from async code (in the loop's executor)."""
        return await _in_thread(self.search, query, k, params, filter)  # type: ignore[no-any-return]

    async def asearch_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        params: Optional[SearchParams] = None,
        filter: Filter = None,
    ) -> Result:
        """``search_batch`` from async code."""
        return await _in_thread(self.search_batch, queries, k, params, filter)  # type: ignore[no-any-return]

    def route(self, query: np.ndarray, params: Optional[SearchParams] = None) -> List[int]:
        """The shards a query would be sent to (for operators and the fan-out study)."""
        q = _query_of(query, self._manifest.dim, "the sharded index")
        p = params if params is not None else self._config.params
        return self._router.route(q[None, :], p, False)[0]

    def info(self) -> Dict[str, Any]:
        """Shards, rows per shard, actors and where each lives (node id, pid)."""
        ray = _ray()
        out = layout.describe(self._manifest)
        out["replicas"] = self._replicas
        out["path"] = str(self._path)
        for s, entry in enumerate(out["shards"]):
            actors = []
            for handle in self._handles[s]:
                try:
                    where = ray.get(handle.where.remote(), timeout=self._timeout)
                    actors.append({"alive": True, "node": where["node"], "pid": where["pid"]})
                except Exception as e:
                    actors.append({"alive": False, "error": type(e).__name__})
            entry["actors"] = actors
        return out

    @property
    def actors(self) -> List[Any]:
        """Every shard actor's handle, shard by shard (replicas together)."""
        return [h for shard in self._handles for h in shard]

    def close(self) -> None:
        """Stop the actors. Searches afterwards raise ``ShardUnavailableError``."""
        ray = _ray()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for handle in self.actors:
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(handle)

    def __len__(self) -> int:
        return self._manifest.n

    @property
    def dim(self) -> int:
        return self._manifest.dim

    def __enter__(self) -> ShardedEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- routing, calls, merge ---------------------------------------------

    def _start(self, shard: int) -> Any:
        path = self._path / self._manifest.shards[shard].file
        return self._server.remote(str(path), self._config.model_dump_json())

    def _call(self, shard: int, replica: int, method: str, *args: Any) -> Any:
        """One actor call, replacing the actor once if it died for good."""
        ray = _ray()
        for attempt in range(2):
            with self._lock:
                if self._closed:
                    raise ShardUnavailableError(f"ShardedEngine({self._path}) is closed")
                handle = self._handles[shard][replica]
            try:
                return ray.get(getattr(handle, method).remote(*args), timeout=self._timeout)
            except ray.exceptions.RayTaskError as e:
                raise _cause(e) from None
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                if attempt == 1:
                    raise self._unavailable(shard, e) from None
                with self._lock:
                    if self._closed:  # closed meanwhile: start nothing nobody stops
                        closed = f"ShardedEngine({self._path}) is closed"
                        raise ShardUnavailableError(closed) from None
                    if self._handles[shard][replica] is handle:
                        self._handles[shard][replica] = self._start(shard)
        raise AssertionError("unreachable")

    def _unavailable(self, shard: int, e: BaseException) -> ShardUnavailableError:
        entry = self._manifest.shards[shard]
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return ShardUnavailableError(
            f"shard {shard} ({self._path / entry.file}) is unavailable: {why}"
        )

    def _ask(
        self,
        queries: np.ndarray,
        routes: Sequence[Sequence[int]],
        k: int,
        params_json: Optional[str],
        filter: Filter,
    ) -> List[List[Tuple[np.ndarray, np.ndarray]]]:
        """Each shard's answers for the queries routed to it, gathered per query."""
        ray = _ray()
        by_shard: Dict[int, List[int]] = {}
        for q, shards in enumerate(routes):
            for s in shards:
                by_shard.setdefault(s, []).append(q)
        pending = []
        for s, qs in by_shard.items():
            replica = next(self._turn[s]) % self._replicas
            with self._lock:
                # ray.kill is asynchronous: right after close() an actor may
                # still answer, and a closed engine must not (this raced in CI).
                if self._closed:
                    raise ShardUnavailableError(f"ShardedEngine({self._path}) is closed")
                handle = self._handles[s][replica]
            ref = handle.search_batch.remote(queries[qs], k, params_json, filter)
            pending.append((s, replica, qs, ref))
        found: List[List[Tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(len(queries))]
        for s, replica, qs, ref in pending:
            try:
                ids, scores = ray.get(ref, timeout=self._timeout)
            except ray.exceptions.RayTaskError as e:
                raise _cause(e) from None
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                # Died for good (or hung): a fresh actor answers this part.
                ids, scores = self._call(
                    s, replica, "search_batch", queries[qs], k, params_json, filter
                )
            for row, q in enumerate(qs):
                found[q].append((ids[row], scores[row]))
        return found


def _cause(e: Any) -> BaseException:
    """The exception a shard raised (an SVVEError keeps its type), not Ray's wrapper."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e
