"""Ablation of the SVVE stages: each stage on/off against the simplest
baseline (full Hamming top-C, then float32 rescoring), on one dataset.

    uv run python -m benchmarks.ablation --dataset ../shared/datasets/debian-minilm-384

Prints the command, the machine and a markdown table: recall@10 against the
dataset's ground truth, single-query p50/p99 latency (one Python call per
query, as a service makes them), and the rows each stage touched.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np

import svve_core
from svve_core import IndexConfig, SearchEngine, SearchParams, build_index
from svve_core.demo import _metric_of, load_dataset, recall

# (label, build config, search params); C = Tier1 survivors.
VARIANTS: List[Tuple[str, Dict, Dict]] = [
    ("exact float32 (brute force)", {}, {"exact": True}),
    (
        "baseline: Hamming top-C=200, rescore all",
        {},
        {"tier1": "hamming", "candidates": 200, "expansion": False},
    ),
    (
        "baseline: Hamming top-C=1000, rescore all",
        {},
        {"tier1": "hamming", "candidates": 1000, "expansion": False},
    ),
    ("+ asymmetric Tier1, C=200, rescore all", {}, {"candidates": 200, "expansion": False}),
    (
        "+ asymmetric, no centring, C=200",
        {"center": False},
        {"candidates": 200, "expansion": False},
    ),
    (
        "+ asymmetric, 2-bit query, C=200",
        {},
        {"candidates": 200, "expansion": False, "query_bits": 2},
    ),
    (
        "+ asymmetric, 8-bit query, C=200",
        {},
        {"candidates": 200, "expansion": False, "query_bits": 8},
    ),
    ("+ asymmetric + expansion, C=200", {}, {"candidates": 200}),
    ("+ asymmetric + expansion, C=auto (default)", {}, {}),
    ("+ asymmetric + expansion, C=auto, epsilon=2", {}, {"epsilon": 2.0}),
    ("+ voting (6 segments, top-64, >=2 votes), C=200", {}, {"candidates": 200, "segments": 6}),
    ("+ voting (3 segments, top-200, >=2 votes), C=auto", {}, {"segments": 3, "vote_top": 200}),
    ("asymmetric, C=100, rescore all", {}, {"candidates": 100, "expansion": False}),
    ("asymmetric + expansion, C=100", {}, {"candidates": 100}),
]


def measure(engine: SearchEngine, queries: np.ndarray, params: SearchParams, k: int):
    for q in queries[:20]:
        engine.search(q, k, params)
    ids = np.empty((len(queries), k), np.int64)
    lat = np.empty(len(queries))
    for i, q in enumerate(queries):
        t = time.perf_counter()
        found, _ = engine.search(q, k, params)
        lat[i] = time.perf_counter() - t
        ids[i] = found
    stats = [engine.search_stats(q, k, params)[2] for q in queries[:200]]
    rescored = float(np.mean([s["rescored"] for s in stats]))
    rescued = float(np.mean([s["rescued"] for s in stats]))
    survivors = float(np.mean([s["survivors"] for s in stats]))
    return ids, lat * 1e6, survivors, rescued, rescored


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=None, help="first N queries only")
    a = ap.parse_args(argv)
    base, queries, gt, name = load_dataset(a.dataset)
    if a.queries:
        queries, gt = queries[: a.queries], gt[: a.queries]
    metric = _metric_of(a.dataset)
    print(f"command: uv run python -m benchmarks.ablation {' '.join(sys.argv[1:])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()},"
        f" svve-core {svve_core.__version__}, kernels {svve_core._svve_core.isa()}"
    )
    print(
        f"data: {name} {base.shape[0]} x {base.shape[1]}, {len(queries)} queries, metric {metric}\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        engines = {}
        for center in (True, False):
            path = os.path.join(tmp, f"c{int(center)}.svve")
            build_index(
                path,
                base,
                metric=metric,
                config=IndexConfig(center=center),
                progress=lambda d, t: None,
            )
            engines[center] = SearchEngine(path)
        exact_p50 = None
        print(
            "| variant | recall@10 | p50 us | p99 us | speed-up vs exact "
            "| Tier1 survivors | rescued by votes | rescored in float32 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, cfg, kw in VARIANTS:
            engine = engines[cfg.get("center", True)]
            ids, lat, surv, resc, rescored = measure(engine, queries, SearchParams(**kw), a.k)
            p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
            exact_p50 = exact_p50 or p50
            print(
                f"| {label} | {recall(ids, gt, a.k):.4f} | {p50:.0f} | {p99:.0f} | "
                f"{exact_p50 / p50:.1f}x | {surv:.0f} | {resc:.1f} | {rescored:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
