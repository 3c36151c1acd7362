"""Study: filtered search at every selectivity, uncorrelated, correlated and
anti-correlated with the query (issue 15's cells), svve alone for now.

The index gets two attributes: ``bucket`` (a random integer, so ``{"bucket":
0}`` matches a random share of the rows: uncorrelated) and ``region`` (the
k-means cell of each row among ``1/selectivity`` cells, so ``{"region": r}``
matches a compact group of rows: the query's nearest region is correlated
with it, its farthest region anti-correlated). For each cell: recall@10
against numpy over the matching rows, single-query QPS (one thread, default
``SearchParams``, the filter evaluated in every call) and that QPS over the
unfiltered QPS measured in the same run.

    uv run --group bench python -m benchmarks.studies.filters [DATASET_DIR] [--queries N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

import svve_core
from benchmarks.harness.common import loadavg, machine_info
from svve_core.datasets import load_dataset

DEFAULT_DATASET = "../shared/datasets/debian-minilm-384"
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001, 0.0001)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _nearest(u: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the most similar centre of each unit row, in chunks."""
    out = np.empty(len(u), np.int64)
    step = max(1, (1 << 25) // max(1, len(centres)))
    for s in range(0, len(u), step):
        out[s : s + step] = np.argmax(u[s : s + step] @ centres.T, axis=1)
    return out


def regions(x: np.ndarray, count: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """``count`` k-means cells of the unit rows (a few Lloyd steps), every
    row in its nearest: labels and centres."""
    rng = np.random.default_rng(seed)
    u = unit(x).astype(np.float32)
    centres = u[rng.choice(len(u), count, replace=False)].copy()
    for _ in range(4):
        lab = _nearest(u, centres)
        sums = np.zeros_like(centres)
        np.add.at(sums, lab, u)
        filled = np.bincount(lab, minlength=count) > 0
        centres[filled] = unit(sums[filled])
    return _nearest(u, centres), centres


def measure(
    search: Callable[[np.ndarray], np.ndarray],
    queries: np.ndarray,
    truth: List[np.ndarray],
) -> Tuple[float, float, float]:
    """Mean recall@10, QPS and the share of answers with min(k, matching) rows."""
    for q in queries[:20]:
        search(q)
    lat = np.empty(len(queries))
    hits, full = 0.0, 0
    for i, q in enumerate(queries):
        t = time.perf_counter()
        ids = search(q)
        lat[i] = time.perf_counter() - t
        want = truth[i]
        full += len(ids) == len(want)
        hits += len(set(ids.tolist()) & set(want.tolist())) / max(1, len(want))
    return hits / len(queries), len(queries) / lat.sum(), full / len(queries)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", default=DEFAULT_DATASET)
    ap.add_argument("--queries", type=int, default=300)
    a = ap.parse_args(argv)
    svve_core.set_num_threads(1)
    ds = load_dataset(a.dataset)
    assert ds.base is not None
    x, queries = ds.base, ds.queries[: a.queries]
    n = len(x)
    args = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"command: python -m benchmarks.studies.filters {args}".rstrip())
    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cpus, {m['memory_gb']} GiB, load {loadavg()}")
    print(f"svve-core {m['svve_core']} (commit {m['git_commit']}), kernels {m['svve_isa']}")
    print(f"data: {a.dataset}, {n} x {x.shape[1]}, {len(queries)} queries, k=10, one thread\n")
    rng = np.random.default_rng(0)
    attrs: Dict[str, np.ndarray] = {}
    region_centres: Dict[float, np.ndarray] = {}
    for s in SELECTIVITIES:
        attrs[f"bucket_{s}"] = rng.integers(0, round(1 / s), n)
        labels, centres = regions(x, max(2, round(1 / s)), seed=int(1 / s))
        attrs[f"region_{s}"] = labels
        region_centres[s] = centres
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.svve"
        t = time.perf_counter()
        svve_core.build_index(path, x, metric="cosine", attributes=attrs)
        print(
            f"build with {len(attrs)} attributes: {time.perf_counter() - t:.1f} s, "
            f"{os.path.getsize(path) / 2**20:.1f} MiB\n"
        )
        engine = svve_core.SearchEngine(path)
        u, uq = unit(x), unit(queries)
        sims = uq @ u.T
        all_truth = [np.argsort(-row)[:10] for row in sims]
        r0, qps0, _ = measure(lambda q: engine.search(q, 10)[0], queries, all_truth)
        print(
            "| filter | selectivity | matching rows (median) | recall@10 | QPS "
            "| vs unfiltered | full answers |"
        )
        print("|---|---|---|---|---|---|---|")
        print(f"| none | 1 | {n} | {r0:.4f} | {qps0:,.0f} | 1.00x | 100% |")
        for s in SELECTIVITIES:
            bucket = attrs[f"bucket_{s}"]
            label = attrs[f"region_{s}"]
            centres = region_centres[s]
            near = _nearest(uq, centres)
            far = _nearest(uq, -centres)
            cells = {
                "uncorrelated": [{f"bucket_{s}": 0}] * len(queries),
                "correlated": [{f"region_{s}": int(r)} for r in near],
                "anti-correlated": [{f"region_{s}": int(r)} for r in far],
            }
            for kind, filters in cells.items():
                truth, counts = [], []
                for i, f in enumerate(filters):
                    col, val = next(iter(f.items()))
                    match = (bucket if col.startswith("bucket") else label) == val
                    counts.append(int(match.sum()))
                    sc = np.where(match, sims[i], -np.inf)
                    truth.append(np.argsort(-sc)[: min(10, counts[-1])])
                # Each call takes the next query's filter (measure runs the
                # warm-up on the first 20 queries first, then all of them).
                order = [filters[i] for i in range(20)] + filters
                it = iter(order)
                r, qps, full = measure(
                    lambda q, it=it: engine.search(q, 10, filter=next(it))[0], queries, truth
                )
                print(
                    f"| {kind} | {s:g} | {int(np.median(counts))} | {r:.4f} | {qps:,.0f} | "
                    f"{qps / qps0:.2f}x | {full:.0%} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
