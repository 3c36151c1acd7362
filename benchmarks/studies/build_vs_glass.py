"""Build time of svve against glass (the fastest graph peer to build), the
two built in turn ``--reps`` times through the suite's own adapters, so the
host's drift hits both alike; prints every build and the per-pair ratios.

    uv run --group bench python -m benchmarks.studies.build_vs_glass \\
        --dataset ../shared/datasets/debian-minilm-384 --reps 3

The suite (``benchmarks.run``) builds each library once, minutes apart; on
these noisy 2-core hosts two such runs gave svve / glass 0.29x and 0.41x on
debian-minilm-384. Issue 12's target is 0.2x.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

from benchmarks.harness.adapters import Glass, Svve


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, help="a folder holding base.npy")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    base = np.load(os.path.join(args.dataset, "base.npy")).astype(np.float32)
    base = np.ascontiguousarray(base)
    print("command:", " ".join([sys.executable, "-m", __spec__.name, *sys.argv[1:]]))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; rows {base.shape}")
    seconds: dict[str, list[float]] = {"svve": [], "glass": []}
    for _ in range(args.reps):
        for cls in (Svve, Glass):
            adapter = cls(base.shape[1], "ip")
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                adapter.build(base, tmp)
                took = time.perf_counter() - t0
            seconds[adapter.name].append(took)
            load = os.getloadavg()[0]
            print(f"{adapter.name:6s} build {took:6.2f} s (1-min load {load:.2f})", flush=True)
    for name, s in seconds.items():
        print(f"{name} median {np.median(s):.2f} s, all {[round(x, 2) for x in s]}")
    pairs = [round(a / b, 3) for a, b in zip(seconds["svve"], seconds["glass"])]
    ratio = np.median(seconds["svve"]) / np.median(seconds["glass"])
    print(f"svve / glass per pair {pairs}, of the medians {ratio:.3f}")


if __name__ == "__main__":
    main()
