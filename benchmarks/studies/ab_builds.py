"""Study: two builds of svve's extension, their queries interleaved in one process.

A change worth a few percent is lost in these hosts' drift when each build
runs in its own process one after the other (two alternating runs of the
same binary differ by up to 30%). Here both extension files are loaded
into one interpreter (each under its own package name, so each keeps its
own statics and thread pool) and open the same index; at every step each
build answers one query, A and B alternately, with the clock read around
each native call. A and B answer different queries at each step (the same
query twice in a row would find the second one's lines in cache): in even
rounds A takes query ``j`` while B takes query ``j + n/2``, in odd rounds
the other way round, so each pair of rounds gives each build every query
once. The figure is B's time over A's per pair of rounds; loading the same
file twice (an A/A run) bounds the noise: on debian-minilm-384 at target
0.95, four pairs of rounds gave 0.94-1.03, median 1.00.

    cargo build --release --features python --lib --target-dir /tmp/a
    ... (change) ...
    cargo build --release --features python --lib --target-dir /tmp/b
    uv run python -m benchmarks.studies.ab_builds INDEX QUERIES.npy \\
        /tmp/a/release/lib_svve_core.so /tmp/b/release/lib_svve_core.so --target 0.95

The native call is what is timed (``_Engine.search``, one thread), so the
Python layer's own cost is not in the figure. The builds must read the
index's format.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import sys
import time
from types import ModuleType
from typing import List, Optional

import numpy as np

from benchmarks.harness.common import machine_info
from svve_core.filters import filter_text
from svve_core.schemas import SearchParams


def load_build(package: str, path: str) -> ModuleType:
    """The extension at ``path`` as ``package._svve_core`` (its init symbol
    is named after the last component, so any package name loads it)."""
    name = f"{package}._svve_core"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise SystemExit(f"{path}: not a loadable extension")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index")
    ap.add_argument("queries", help=".npy, one query per row")
    ap.add_argument("build_a", help="extension file of build A (lib_svve_core.so)")
    ap.add_argument("build_b", help="extension file of build B")
    ap.add_argument("--target", type=float, default=0.95, help="target_recall")
    ap.add_argument("--params", default=None, help="JSON SearchParams instead of --target")
    ap.add_argument("--filter", default=None, help="JSON filter for every query")
    ap.add_argument("--pairs", type=int, default=4, help="pairs of rounds")
    ap.add_argument("-k", type=int, default=10)
    a = ap.parse_args(argv)
    print("command:", " ".join(sys.argv))
    print("machine:", machine_info())
    if a.build_a == a.build_b:
        raise SystemExit("load two files (copy A's for an A/A run): one file loads once")
    knobs = json.loads(a.params) if a.params else {"target_recall": a.target}
    params = SearchParams(**knobs)
    flt = filter_text(json.loads(a.filter)) if a.filter else None
    queries = np.ascontiguousarray(np.load(a.queries), dtype=np.float32)
    n = len(queries)
    builds = [load_build("svve_ab_a", a.build_a), load_build("svve_ab_b", a.build_b)]
    engines, natives = [], []
    for m in builds:
        m.set_num_threads(1)
        engines.append(m._Engine(a.index, verify=False, lock_pages=False))
        natives.append(m._Params(**params.model_dump()))
    same = 0
    for q in queries:
        ids = [e.search(q, a.k, p, flt)[0] for e, p in zip(engines, natives)]
        same += int(np.array_equal(ids[0], ids[1]))
    rounds = 2 * a.pairs
    spent = np.zeros((rounds, 2))
    half = n // 2
    for r in range(rounds):
        for j in range(n):
            for b in (0, 1):
                q = queries[(j + half * ((b + r) % 2)) % n]
                t = time.perf_counter_ns()
                engines[b].search(q, a.k, natives[b], flt)
                spent[r, b] += time.perf_counter_ns() - t
    us = spent / (n * 1e3)
    pairs = us.reshape(a.pairs, 2, 2).sum(axis=1)
    ratio = pairs[:, 1] / pairs[:, 0]
    print(f"{n} queries, {rounds} rounds, k={a.k}, params {knobs}")
    print(f"same ids from both builds: {same} of {n} queries")
    print("A mean us per round:", " ".join(f"{x:.1f}" for x in us[:, 0]))
    print("B mean us per round:", " ".join(f"{x:.1f}" for x in us[:, 1]))
    print(
        f"B / A per pair of rounds: median {np.median(ratio):.3f} "
        f"(min {ratio.min():.3f}, max {ratio.max():.3f}): " + " ".join(f"{x:.3f}" for x in ratio)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
