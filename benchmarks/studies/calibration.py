"""Study: does ``SearchParams(target_recall=t)`` deliver on queries the
calibration never saw, and what does recalibrating on the user's own queries
(``engine.calibrate``) change? Builds one calibrated index (rows of the index
as calibration queries, leave-one-out), then splits the dataset's queries:
the first ``--calibrate-on`` recalibrate a copy, the rest evaluate both.
Reports, per target, mean and 10th-percentile recall@10, single-query QPS
and p99/p50 on the evaluation queries. Quoted in docs/arch/blueprint.md (7).

    uv run python -m benchmarks.studies.calibration DATASET_DIR [--calibrate-on 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from typing import List, Optional

import numpy as np

import svve_core
from svve_core import SearchParams
from svve_core.datasets import dataset_metric, load_dataset, recall_per_query

TARGETS = (0.8, 0.9, 0.95, 0.97, 0.99, 0.995)


def evaluate(engine: svve_core.SearchEngine, queries, gt, target: float) -> str:
    params = SearchParams(target_recall=target)
    for q in queries[:20]:
        engine.search(q, 10, params)
    lat = np.empty(len(queries))
    found = np.empty((len(queries), 10), np.int64)
    for i, q in enumerate(queries):
        t = time.perf_counter()
        ids, _ = engine.search(q, 10, params)
        lat[i] = time.perf_counter() - t
        found[i, : len(ids)] = ids
    r = recall_per_query(found, gt, 10)
    p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
    return (
        f"{r.mean():.4f} | {np.percentile(r, 10):.2f} | {len(lat) / lat.sum():,.0f} | "
        f"{p99 / p50:.2f}"
    )


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--calibrate-on", type=int, default=300)
    a = ap.parse_args(argv)
    ds = load_dataset(a.dataset)
    if ds.gt is None or ds.base is None:
        raise SystemExit("the dataset needs base.npy and gt.npy")
    print("command:", " ".join(sys.argv))
    print("machine:", platform.processor() or platform.machine(), os.cpu_count(), "CPUs")
    cal_q, eval_q = ds.queries[: a.calibrate_on], ds.queries[a.calibrate_on :]
    eval_gt = ds.gt[a.calibrate_on :]
    with tempfile.TemporaryDirectory() as tmp:
        rows = os.path.join(tmp, "rows.svve")
        t = time.perf_counter()
        info = svve_core.build_index(rows, ds.base, metric=dataset_metric(ds.meta))
        build_s = time.perf_counter() - t
        cal = info.calibration
        assert cal is not None
        print(
            f"{ds.name}: {info.n} x {info.dim}, {info.partitions} partitions; "
            f"build {build_s:.1f} s, of which calibration {cal.seconds:.1f} s "
            f"({cal.settings_tried} settings)"
        )
        engine = svve_core.SearchEngine(rows)
        own = os.path.join(tmp, "own.svve")
        t = time.perf_counter()
        engine.calibrate(cal_q, out=own)
        print(f"recalibration on {len(cal_q)} queries: {time.perf_counter() - t:.1f} s")
        mine = svve_core.SearchEngine(own)
        print(f"evaluated on the other {len(eval_q)} queries\n")
        print(
            "| target | calibrated on rows: recall | p10 | QPS | p99/p50 "
            "| on own queries: recall | p10 | QPS | p99/p50 |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for target in TARGETS:
            a_row = evaluate(engine, eval_q, eval_gt, target)
            b_row = evaluate(mine, eval_q, eval_gt, target)
            print(f"| {target} | {a_row} | {b_row} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
