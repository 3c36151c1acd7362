"""Study: the calibration's cost model (blueprint 3.9) against the clock.

The calibration prices a query as ``a probed + b d scanned + c survivors +
e d rescored`` from what the query did (``search_stats``), so that two builds
of the same data store the same table. This measures those constants: it
runs a grid of explicit settings (probes, survivors, and ``epsilon``, which
moves the rows rescored with the survivors fixed), times each setting's
queries one by one in CPU time, the settings interleaved round by round so
that the host's drift hits each alike, and fits the mean time per query to
the mean stage counts by least squares. Probes and rows scanned move
together (a probe opens a partition's rows), so each is also fitted alone
with the survivors and rows rescored. The intercept holds the call from
Python and the query's encoding.

    uv run python -m benchmarks.studies.cost_model INDEX QUERIES.npy [--queries 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from typing import List, Optional

import numpy as np

import svve_core
from benchmarks.harness.common import machine_info

STAGES = ("probed", "scanned", "survivors", "rescored")


def settings(partitions: int) -> List[dict]:
    """Probes with a spill-scanning plan (4 (nprobe + 2 nprobe) <= L keeps
    the spilled entries in every setting, so a probe's rows stay alike)."""
    probes = sorted({p for p in (1, 3, 8, 20, 32) if 12 * p <= partitions} | {1})
    return [
        dict(nprobe=p, expand_probes=2 * p, expand_ratio=0.3, candidates=c, epsilon=eps)
        for p, c, eps in itertools.product(probes, (20, 60, 200, 600), (1.0, 20.0))
    ]


def fit(x: np.ndarray, y: np.ndarray, cols: List[int]) -> np.ndarray:
    a = np.c_[np.ones(len(x)), x[:, cols]]
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return coef


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index")
    ap.add_argument("queries", help=".npy of query rows")
    ap.add_argument("--queries", dest="count", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    print("command:", " ".join(sys.argv))
    print("machine:", machine_info())
    svve_core.set_num_threads(1)
    engine = svve_core.SearchEngine(a.index)
    info = engine.info()
    qs = np.load(a.queries).astype(np.float32)[: a.count]
    grid = settings(info.partitions)
    params = [svve_core.SearchParams(**s) for s in grid]
    stats = np.array(
        [
            [np.mean([engine.search_stats(q, 10, p)[2][k] for q in qs]) for k in STAGES]
            for p in params
        ]
    )
    times: List[List[float]] = [[] for _ in grid]
    for _ in range(a.rounds):
        for i, p in enumerate(params):
            t = time.thread_time_ns()
            for q in qs:
                engine.search(q, 10, p)
            times[i].append((time.thread_time_ns() - t) / 1e3 / len(qs))
    # The least of the rounds: the host's noise only adds time.
    y = np.array([min(t) for t in times])
    d = info.dim / 384
    print(f"index: n={info.n} dim={info.dim} partitions={info.partitions}, {len(qs)} queries")
    print("setting | probed scanned survivors rescored | us per query (least of rounds)")
    for s, x, t in zip(grid, stats, y):
        print(s, "|", " ".join(f"{v:.1f}" for v in x), "|", f"{t:.1f}")
    for cols in ([1, 2, 3], [0, 2, 3]):
        coef = fit(stats, y, cols)
        rms = np.sqrt(np.mean((np.c_[np.ones(len(stats)), stats[:, cols]] @ coef - y) ** 2))
        named = ", ".join(
            f"{STAGES[c]} {v / (d if STAGES[c] in ('scanned', 'rescored') else 1):.4f}"
            for c, v in zip(cols, coef[1:])
        )
        print(f"fit: intercept {coef[0]:.2f} us, {named} (per unit, / d), rms {rms:.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
