"""Study: sharded indexes (issue 17). For each shard count, one
``build_sharded`` of the dataset and one ``build_index`` of the same rows:

- recall@10 of the sharded answer against the single index's, at the same
  parameters (default target 0.95, target 0.99, a fixed nprobe). The sharded
  answer is computed as ``ShardedEngine`` computes it (``Router.route``, each
  routed shard's search, ``Router.merge``) over shard files opened here, so
  it needs no Ray and isolates the algorithm from RPC;
- fan-out: mean shards a query touches at each target;
- with ``--ray``: per-query latency through ``ShardedEngine`` on a local Ray
  cluster against the single index in process (routing + RPC + merge
  overhead), and throughput with 1 and 2 replicas per shard.

    uv run --group bench python -m benchmarks.studies.sharded [DATASET_DIR]
        [--shards 4,8,16] [--queries N] [--ray] [--out FILE]

Without ``--out`` the report goes to benchmarks/results/sharded.txt.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

import svve_core
from benchmarks.harness.common import Tee, loadavg, machine_info
from svve_core.datasets import load_dataset
from svve_core.distributed import ShardedEngine, build_sharded, layout
from svve_core.distributed.router import Router, fanout

DEFAULT_DATASET = "../shared/datasets/debian-minilm-384"
RESULTS = Path(__file__).resolve().parents[1] / "results" / "sharded.txt"
K = 10


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t[:K])) / K for f, t in zip(found, truth)]))


def local_sharded(
    path: Path, queries: np.ndarray, params: svve_core.SearchParams
) -> Tuple[np.ndarray, float, float]:
    """The sharded answer without Ray, its fan-out, and mean us per query."""
    manifest, centroids = layout.read(path)
    router = Router(manifest, centroids)
    shards = [svve_core.SearchEngine(path / s.file) for s in manifest.shards]
    out, routes, t0 = [], [], time.perf_counter()
    for q in queries:
        route = router.route(q[None, :], params, False)[0]
        routes.append(route)
        parts = [[shards[s].search(q, K, params) for s in route]]
        out.append(router.merge(parts, K)[0][0])
    us = (time.perf_counter() - t0) / len(queries) * 1e6
    return np.stack(out), fanout(routes), us


def single_times(engine: svve_core.SearchEngine, queries: np.ndarray, params: Any) -> float:
    t0 = time.perf_counter()
    for q in queries:
        engine.search(q, K, params)
    return (time.perf_counter() - t0) / len(queries) * 1e6


def ray_figures(path: Path, queries: np.ndarray) -> List[str]:
    import ray

    lines = []
    for replicas in (1, 2):
        with ShardedEngine(path, replicas=replicas) as eng:
            for q in queries[:20]:  # warm: actors mapped and faulted in
                eng.search(q, K)
            lat = []
            for q in queries:
                t0 = time.perf_counter()
                eng.search(q, K)
                lat.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda q: eng.search(q, K), queries))
            qps = len(queries) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            eng.search_batch(queries, K)
            batch = len(queries) / (time.perf_counter() - t0)
            lines.append(
                f"    ray, {replicas} replica(s)/shard: p50 {np.median(lat) * 1e6:8.0f} us, "
                f"p99 {np.percentile(lat, 99) * 1e6:8.0f} us; 8 client threads {qps:8.0f} qps; "
                f"one search_batch {batch:8.0f} qps"
            )
    del ray
    return lines


class _NoRayNoise:
    """The report without Ray's own log lines (raylet warnings reach the
    driver's stdout); they go to stderr instead."""

    def __init__(self, tee: Tee) -> None:
        self.tee = tee

    def write(self, s: str) -> int:
        if "(raylet)" in s or "ray-project" in s or "\x1b[" in s:
            return sys.__stderr__.write(s)
        return self.tee.write(s)

    def flush(self) -> None:
        self.tee.flush()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", default=DEFAULT_DATASET)
    ap.add_argument("--shards", default="4,8,16")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--ray", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    ds = load_dataset(args.dataset)
    base, queries = ds.base, ds.queries[: args.queries]
    truth = ds.gt[: len(queries)] if ds.gt is not None else None
    sys.stdout = _NoRayNoise(Tee(args.out))  # type: ignore[assignment]
    try:
        print("# Sharded indexes: recall against one index, fan-out, overhead\n")
        print(f"command: python -m benchmarks.studies.sharded {' '.join(argv or sys.argv[1:])}")
        m = machine_info()
        print(f"machine: {m['cpu']}, {m['cores']} cpus, {m['memory_gb']} GiB, load {loadavg()}")
        print(f"svve-core {m['svve_core']} (commit {m['git_commit']}), kernels {m['svve_isa']}")
        print(f"data: {args.dataset}, {len(base)} x {base.shape[1]}, {len(queries)} queries\n")
        settings = {
            "target 0.95": svve_core.SearchParams(),
            "target 0.99": svve_core.SearchParams(target_recall=0.99),
            "nprobe 8": svve_core.SearchParams(nprobe=8),
        }
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            single_path = Path(tmp) / "one.svve"
            t0 = time.perf_counter()
            svve_core.build_index(single_path, base, metric=ds.metric)
            print(f"single index: built in {time.perf_counter() - t0:.1f} s")
            single = svve_core.SearchEngine(single_path)
            if truth is None:
                exact = svve_core.SearchParams(exact=True)
                truth = single.search_batch(queries, K, exact)[0]
            for name, p in settings.items():
                found = single.search_batch(queries, K, p)[0]
                us = single_times(single, queries, p)
                print(f"  {name:12s} recall {recall(found, truth):.4f}  {us:7.1f} us/query")
            t0 = time.perf_counter()
            single.search_batch(queries, K)
            batch = len(queries) / (time.perf_counter() - t0)
            print(f"  one search_batch in process: {batch:.0f} qps")
            for shards in [int(s) for s in args.shards.split(",")]:
                path = Path(tmp) / f"s{shards}"
                t0 = time.perf_counter()
                build_sharded(path, base, metric=ds.metric, shards=shards)
                print(f"\n{shards} shards: built in {time.perf_counter() - t0:.1f} s")
                for name, p in settings.items():
                    found, fan, us = local_sharded(path, queries, p)
                    one = recall(single.search_batch(queries, K, p)[0], truth)
                    got = recall(found, truth)
                    print(
                        f"  {name:12s} recall {got:.4f} (one index {one:.4f}, "
                        f"diff {got - one:+.4f})  fan-out {fan:5.2f} of {shards} "
                        f"({fan / shards:4.0%})  {us:7.1f} us/query local"
                    )
                if args.ray:
                    import ray

                    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                    try:
                        for line in ray_figures(path, queries):
                            print(line)
                    finally:
                        ray.shutdown()
    finally:
        sys.stdout = sys.__stdout__
    return 0


if __name__ == "__main__":
    sys.exit(main())
