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
from benchmarks.adapters import open_svve
from svve_core import IndexConfig, SearchEngine, SearchParams, build_index
from svve_core.demo import _metric_of, load_dataset, recall

# (label, build config, search params). "flat" = one partition (every row
# scanned); C = Tier1 survivors. Each stage is compared with the simpler
# variant one row above it.
FLAT = {"partitions": 1}
VARIANTS: List[Tuple[str, Dict, Dict]] = [
    ("exact float32 (brute force)", FLAT, {"exact": True}),
    (
        "baseline: flat, Hamming top-C=200, rescore all",
        FLAT,
        {"tier1": "hamming", "candidates": 200, "expansion": False},
    ),
    (
        "baseline: flat, Hamming top-C=1000, rescore all",
        FLAT,
        {"tier1": "hamming", "candidates": 1000, "expansion": False},
    ),
    (
        "flat, asymmetric Tier1 (4-bit query), C=200, rescore all",
        FLAT,
        {"candidates": 200, "expansion": False},
    ),
    (
        "flat, asymmetric, 2-bit query",
        FLAT,
        {"candidates": 200, "expansion": False, "query_bits": 2},
    ),
    (
        "flat, asymmetric, 8-bit query",
        FLAT,
        {"candidates": 200, "expansion": False, "query_bits": 8},
    ),
    (
        "flat, asymmetric, not centred",
        {**FLAT, "center": False},
        {"candidates": 200, "expansion": False},
    ),
    ("flat, asymmetric + bound skipping", FLAT, {"candidates": 200}),
    ("segments, fixed nprobe=auto (L/10), no expansion", {}, {"expansion": False}),
    ("segments, fixed nprobe=3x auto, no expansion", {}, {"expansion": False, "nprobe": -3}),
    ("segments + centroid expansion (DEFAULT: at most +2x nprobe)", {}, {}),
    ("segments + expansion uncapped (up to L/2)", {}, {"expand_probes": -1}),
    ("segments + expansion, C=100", {}, {"candidates": 100}),
    ("segments + expansion + voting (3 dim segments, top-64, >=2)", {}, {"segments": 3}),
    ("segments + expansion, not centred", {"center": False}, {}),
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
    scanned = float(np.mean([s["scanned"] for s in stats]))
    survivors = float(np.mean([s["survivors"] for s in stats]))
    return ids, lat * 1e6, scanned, survivors, rescued, rescored


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
        engines: Dict[str, SearchEngine] = {}
        for _, cfg, _ in VARIANTS:
            key = repr(sorted(cfg.items()))
            if key in engines:
                continue
            path = os.path.join(tmp, f"{len(engines)}.svve")
            start = time.perf_counter()
            build_index(
                path, base, metric=metric, config=IndexConfig(**cfg), progress=lambda d, t: None
            )
            secs = time.perf_counter() - start
            engines[key] = open_svve(path)[0]
            print(f"build {cfg}: {secs:.2f} s, {engines[key].info().partitions} partitions")
        print()
        exact_p50 = None
        print(
            "| variant | recall@10 | p50 us | p99 us | speed-up vs exact "
            "| Tier1 rows scanned | Tier1 survivors | rescued by votes | rescored in float32 |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for label, cfg, kw in VARIANTS:
            engine = engines[repr(sorted(cfg.items()))]
            parts = engine.info().partitions
            if kw.get("nprobe", 0) < 0:  # a multiple of the automatic nprobe
                kw = {**kw, "nprobe": -kw["nprobe"] * max(8, parts // 10)}
            if kw.get("expand_probes", 0) < 0:  # the old, uncapped rule
                kw = {**kw, "expand_probes": max(1, parts // 2)}
            ids, lat, scanned, surv, resc, rescored = measure(
                engine, queries, SearchParams(**kw), a.k
            )
            p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
            exact_p50 = exact_p50 or p50
            print(
                f"| {label} | {recall(ids, gt, a.k):.4f} | {p50:.0f} | {p99:.0f} | "
                f"{exact_p50 / p50:.1f}x | {scanned:.0f} | {surv:.0f} | "
                f"{resc:.1f} | {rescored:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
