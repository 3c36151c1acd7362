"""``svve demo``: build an index from shipped data, answer its queries, and
report recall@k against exact search, latency percentiles and QPS."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

import svve_core
from svve_core.datasets import load_dataset, recall
from svve_core.engine import SearchEngine, build_index
from svve_core.schemas import SearchParams


def timed_queries(
    engine: SearchEngine, queries: np.ndarray, k: int, params: SearchParams
) -> Tuple[np.ndarray, List[float]]:
    """Answers each query with one call, as a service would; returns ids and latencies (s)."""
    out = np.empty((len(queries), k), np.int64)
    lat = []
    for q in queries[: min(20, len(queries))]:  # warm caches and thread-local buffers
        engine.search(q, k, params)
    for i, q in enumerate(queries):
        t = time.perf_counter()
        ids, _ = engine.search(q, k, params)
        lat.append(time.perf_counter() - t)
        out[i, : len(ids)] = ids
    return out, lat


def summarise(lat: List[float]) -> Dict[str, float]:
    a = np.asarray(lat) * 1e6
    return {
        "p50_us": float(np.percentile(a, 50)),
        "p99_us": float(np.percentile(a, 99)),
        "qps": float(len(a) / (a.sum() / 1e6)),
    }


def run(dataset: Optional[str] = None, k: int = 10, max_queries: Optional[int] = None) -> int:
    ds = load_dataset(dataset)
    base, queries, gt, name, metric = ds.base, ds.queries, ds.gt, ds.name, ds.metric
    if max_queries:
        queries, gt = queries[:max_queries], None if gt is None else gt[:max_queries]
    print(f"svve-core {svve_core.__version__} demo")
    print(f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} "
        f"cpus={os.cpu_count()} python={platform.python_version()}"
    )
    print(f"data: {name}: {len(base)} x {base.shape[1]}, {len(queries)} queries, metric={metric}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "demo.svve")
        t = time.perf_counter()
        info = build_index(path, base, metric=metric, progress=lambda done, total: None)
        build_s = time.perf_counter() - t
        cal = info.calibration
        print(
            f"build: {build_s:.2f} s (recall calibration {cal.seconds if cal else 0:.2f} s), "
            f"file {info.bytes_file / 2**20:.1f} MiB "
            f"(tier1 {info.bytes_tier1 / 2**20:.1f} MiB, "
            f"tier2 {info.bytes_tier2 / 2**20:.1f} MiB), "
            f"kernels={info.isa}"
        )
        engine = SearchEngine(path)
        exact_ids, exact_lat = timed_queries(engine, queries, k, SearchParams(exact=True))
        default = SearchParams().target_recall
        rows = []
        for target in sorted({0.9, default, 0.99}):
            found, times = timed_queries(engine, queries, k, SearchParams(target_recall=target))
            tag = " (default)" if target == default else ""
            rows.append((f"svve recall {target}{tag}", found, times))
            if target == default:
                ids, lat = found, times
        rows.append(("exact float32", exact_ids, exact_lat))
        print(f"\n{'mode':<28} {'recall@' + str(k):>10} {'p50 us':>9} {'p99 us':>9} {'QPS':>9}")
        for label, found, times in rows:
            s = summarise(times)
            r = recall(found, exact_ids, k)
            print(
                f"{label:<28} {r:>10.4f} {s['p50_us']:>9.1f} {s['p99_us']:>9.1f} {s['qps']:>9.0f}"
            )
        speedup = summarise(exact_lat)["p50_us"] / summarise(lat)["p50_us"]
        print(
            f"\nrecall is measured against exact search on the same index (ask for it with "
            f"SearchParams(target_recall=...)); p50 speed-up over exact at the default: "
            f"{speedup:.1f}x"
        )
        if len(base) < 10_000:
            print(
                "note: on fewer than 10 000 rows exact search is already fast and the\n"
                "speed-up is small; try `svve demo --dataset DIR` on a larger set "
                "(e.g. ../shared/datasets/debian-minilm-384)."
            )
        if gt is not None:
            print(
                f"recall@{k} vs the dataset's ground truth: svve {recall(ids, gt, k):.4f}, "
                f"exact {recall(exact_ids, gt, k):.4f}"
            )
    return 0
