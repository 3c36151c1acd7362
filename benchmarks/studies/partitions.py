"""Study: how many partitions? Builds one index per partition count
``round(c * sqrt(n))`` and reports, for each, the build time, the share of the
true top-10 found at fixed probe fractions (expansion off, 1000 candidates:
the partitions' coverage per row scanned) and the best single-query QPS at
recall@10 >= 0.95 and >= 0.99 over a sweep of probes, expansion and candidates.
Quoted in docs/arch/blueprint.md (section 2, "Partition count").

    uv run python -m benchmarks.studies.partitions DATASET_DIR [--c 1 2 4] [--queries 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from typing import List, Optional, Tuple

import numpy as np

import svve_core
from svve_core import EngineConfig, IndexConfig, SearchParams
from svve_core.datasets import load_dataset, recall

FRACTIONS = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2)
Point = Tuple[float, float, float, str]  # recall, qps, p50 us, settings


def sweep(engine: svve_core.SearchEngine, queries: np.ndarray, gt: np.ndarray) -> List[Point]:
    parts = engine.info().partitions
    points: List[Point] = []
    for frac in FRACTIONS:
        for expansion in (True, False):
            for candidates in (200, 400):
                p = SearchParams(
                    nprobe=max(1, round(frac * parts)), expansion=expansion, candidates=candidates
                )
                ids, _ = engine.search_batch(queries, 10, p)
                for q in queries[:50]:
                    engine.search(q, 10, p)
                lat = []
                for q in queries:
                    t = time.perf_counter()
                    engine.search(q, 10, p)
                    lat.append(time.perf_counter() - t)
                settings = f"nprobe={p.nprobe},expansion={expansion},C={candidates}"
                points.append(
                    (recall(ids, gt, 10), 1 / float(np.mean(lat)), np.median(lat) * 1e6, settings)
                )
    return points


def best(points: List[Point], threshold: float) -> Optional[Point]:
    ok = [p for p in points if p[0] >= threshold]
    return max(ok, key=lambda p: p[1]) if ok else None


def coverage(engine: svve_core.SearchEngine, queries: np.ndarray, gt: np.ndarray) -> str:
    parts = engine.info().partitions
    cells = []
    for frac in (0.02, 0.05, 0.1):
        p = SearchParams(nprobe=max(1, round(frac * parts)), expansion=False, candidates=1000)
        ids, _ = engine.search_batch(queries, 10, p)
        rows = np.mean([engine.search_stats(q, 10, p)[2]["scanned"] for q in queries[:200]])
        cells.append(f"{recall(ids, gt, 10):.4f} / {rows:,.0f}")
    return " | ".join(cells)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--c", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--queries", type=int, default=1000)
    a = ap.parse_args(argv)
    ds = load_dataset(a.dataset)
    if ds.base is None or ds.gt is None:
        ap.error("the dataset needs base.npy and gt.npy")
    queries = ds.queries[: a.queries]
    n = len(ds.base)
    print("command: python -m benchmarks.studies.partitions " + " ".join(sys.argv[1:]))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}, "
        f"svve-core {svve_core.__version__} ({svve_core.build_id()}), kernels {svve_core.isa()}"
    )
    print(f"data: {ds.name} {n} x {ds.base.shape[1]}, {len(queries)} queries, metric {ds.metric}")
    print(
        "\n| c | partitions | build s | top-10 found / rows scanned at 2% | 5% | 10% of the "
        "partitions | best QPS @0.95 | best QPS @0.99 |\n|---|---|---|---|---|---|---|---|"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for c in a.c:
            path = os.path.join(tmp, f"c{c}.svve")
            parts = max(1, round(c * np.sqrt(n)))
            t = time.perf_counter()
            svve_core.build_index(
                path, ds.base, metric=ds.metric, config=IndexConfig(partitions=parts)
            )
            build = time.perf_counter() - t
            engine = svve_core.SearchEngine(path, EngineConfig(lock_pages=True))
            points = sweep(engine, queries, ds.gt)
            cells = []
            for th in (0.95, 0.99):
                b = best(points, th)
                cells.append("not reached" if b is None else f"{b[1]:,.0f} ({b[3]}, r={b[0]:.4f})")
            print(
                f"| {c:g} | {parts} | {build:.2f} | {coverage(engine, queries, ds.gt)} | "
                f"{cells[0]} | {cells[1]} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
