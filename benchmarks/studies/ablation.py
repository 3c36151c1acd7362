"""Ablation of the SVVE stages: each stage on/off against the simplest
baseline (every row scanned by Tier1, top-C, then float32 rescoring), on one dataset.

    uv run python -m benchmarks.studies.ablation --dataset ../shared/datasets/debian-minilm-384

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
from benchmarks.harness.adapters import open_svve
from svve_core import IndexConfig, SearchEngine, SearchParams, build_index
from svve_core.datasets import load_dataset, recall

# (label, build config, search params). "flat" = one partition (every row
# scanned); C = Tier1 survivors. Each stage is compared with the simpler
# variant one row above it.
FLAT = {"partitions": 1}
VARIANTS: List[Tuple[str, Dict, Dict]] = [
    # Hamming Tier1 and voting rows left the pipeline in the remodel; last figures: blueprint.md s7
    ("exact float32 (brute force)", FLAT, {"exact": True}),
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
    ("partitions, fixed nprobe=auto (L/10), no expansion", {}, {"expansion": False}),
    ("partitions, fixed nprobe=3x auto, no expansion", {}, {"expansion": False, "nprobe": -3}),
    ("partitions + centroid expansion (DEFAULT: at most +2x nprobe)", {}, {}),
    ("partitions + expansion uncapped (up to L/2)", {}, {"expand_probes": -1}),
    ("partitions + expansion, C=100", {}, {"candidates": 100}),
    ("partitions + expansion, not centred", {"center": False}, {}),
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
    scanned = float(np.mean([s["scanned"] for s in stats]))
    survivors = float(np.mean([s["survivors"] for s in stats]))
    return ids, lat * 1e6, scanned, survivors, rescored


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=None, help="first N queries only")
    a = ap.parse_args(argv)
    ds = load_dataset(a.dataset)
    base, queries, gt, metric = ds.base, ds.queries, ds.gt, ds.metric
    if gt is None:
        ap.error(f"{a.dataset}: no gt.npy; the ablation measures recall against it")
    if a.queries:
        queries, gt = queries[: a.queries], gt[: a.queries]
    print(f"command: uv run python -m benchmarks.studies.ablation {' '.join(sys.argv[1:])}")
    with tempfile.TemporaryDirectory() as tmp:
        engines: Dict[str, SearchEngine] = {}
        builds = []
        for _, cfg, _ in VARIANTS:
            key = repr(sorted(cfg.items()))
            if key in engines:
                continue
            path = os.path.join(tmp, f"{len(engines)}.svve")
            start = time.perf_counter()
            info = build_index(
                path, base, metric=metric, config=IndexConfig(**cfg), progress=lambda d, t: None
            )
            secs = time.perf_counter() - start
            engines[key] = open_svve(path)[0]
            builds.append(f"build {cfg}: {secs:.2f} s, {engines[key].info().partitions} partitions")
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cpus, "
            f"python {platform.python_version()}, svve-core {svve_core.__version__}, "
            f"kernels {info.isa}"
        )
        print(
            f"data: {ds.name} {base.shape[0]} x {base.shape[1]}, {len(queries)} queries, "
            f"metric {metric}\n"
        )
        print("\n".join(builds) + "\n")
        exact_p50 = None
        print(
            "| variant | recall@10 | p50 us | p99 us | speed-up vs exact "
            "| Tier1 rows scanned | Tier1 survivors | rescored in float32 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, cfg, kw in VARIANTS:
            engine = engines[repr(sorted(cfg.items()))]
            parts = engine.info().partitions
            if kw.get("nprobe", 0) < 0:  # a multiple of the automatic nprobe
                kw = {**kw, "nprobe": -kw["nprobe"] * max(8, parts // 10)}
            if kw.get("expand_probes", 0) < 0:  # the old, uncapped rule
                kw = {**kw, "expand_probes": max(1, parts // 2)}
            ids, lat, scanned, surv, rescored = measure(engine, queries, SearchParams(**kw), a.k)
            p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
            exact_p50 = exact_p50 or p50
            print(
                f"| {label} | {recall(ids, gt, a.k):.4f} | {p50:.0f} | {p99:.0f} | "
                f"{exact_p50 / p50:.1f}x | {scanned:.0f} | {surv:.0f} | {rescored:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
