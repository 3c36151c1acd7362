"""Study: svve against one peer, single queries, the settings interleaved.

The suite measures each library's settings one after another, so a drift
of the host between them (these 2-core machines drift by 2x) moves the
ratio: two suite runs of the same code on debian-minilm-384 gave svve
0.885x and 0.54x of rabitq-qg at recall 0.95. Here every setting of both
libraries runs once per round over all the queries, the rounds repeat,
and the median QPS of each is reported with its recall@k, so the drift
hits each alike.

    uv run --group bench python -m benchmarks.studies.interleaved \\
        --dataset ../shared/datasets/debian-minilm-384 --peer rabitq-qg \\
        --svve 0.95 0.99 --peer-settings '{"ef": 32}' '{"ef": 96}' '{"ef": 128}'

Indexes are built once into ``--index-dir`` (reused when present).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from benchmarks.harness.adapters import make
from benchmarks.harness.common import machine_info
from svve_core.datasets import load_dataset, recall

PEER_BUILD = {
    "rabitq-qg": {"degree": 32, "efc": 200, "init": "random"},
    "glass": {"R": 32, "L": 200},
}


def built(name: str, build: dict, base: np.ndarray, root: str):
    adapter = make(name, base.shape[1], build)
    path = os.path.join(root, name)
    os.makedirs(path, exist_ok=True)
    if not os.listdir(path):
        t = time.perf_counter()
        adapter.build(base, path)
        print(f"built {adapter.label()} in {time.perf_counter() - t:.1f} s")
    adapter.load(path)
    adapter.set_threads(1)
    return adapter


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--peer", default="rabitq-qg")
    ap.add_argument("--peer-build", default=None, help="JSON build parameters of the peer")
    ap.add_argument("--svve", nargs="+", type=float, default=[0.95, 0.99], help="targets")
    ap.add_argument("--peer-settings", nargs="+", default=['{"ef": 32}', '{"ef": 128}'])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--index-dir", default="/tmp/svve-interleaved")
    a = ap.parse_args(argv)
    print("command:", " ".join(sys.argv))
    print("machine:", machine_info())
    ds = load_dataset(a.dataset)
    base = ds.base / np.linalg.norm(ds.base, axis=1, keepdims=True)
    queries = ds.queries / np.linalg.norm(ds.queries, axis=1, keepdims=True)
    root = os.path.join(a.index_dir, os.path.basename(os.path.normpath(a.dataset)))
    build = json.loads(a.peer_build) if a.peer_build else PEER_BUILD.get(a.peer, {})
    svve, peer = built("svve", {}, base, root), built(a.peer, build, base, root)
    runs: Dict[str, Tuple[object, dict]] = {}
    for t in a.svve:
        runs[f"svve target_recall={t}"] = (svve, {"target_recall": t})
    for s in a.peer_settings:
        runs[f"{a.peer} {s}"] = (peer, json.loads(s))
    qps: Dict[str, List[float]] = {name: [] for name in runs}
    recalls: Dict[str, float] = {}
    for _ in range(a.rounds):
        for name, (adapter, params) in runs.items():
            adapter.set_query(**params)
            search: Callable[[np.ndarray, int], np.ndarray] = adapter.search
            t = time.perf_counter()
            ids = [search(q, a.k) for q in queries]
            qps[name].append(len(queries) / (time.perf_counter() - t))
            found = np.full((len(queries), a.k), -1, np.int64)
            for i, f in enumerate(ids):
                found[i, : len(f)] = f[: a.k]
            recalls[name] = recall(found, ds.gt, a.k)
    print(f"{len(queries)} queries x {a.rounds} interleaved rounds, one thread, k={a.k}")
    for name in runs:
        rounds = " ".join(f"{x:.0f}" for x in qps[name])
        print(
            f"{name:40s} median {np.median(qps[name]):8.0f} QPS  "
            f"recall@{a.k} {recalls[name]:.4f}  rounds [{rounds}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
