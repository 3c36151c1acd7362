"""Study: could a query stop probing when no unopened partition can hold a
top-k row? The triangle inequality bounds every row of partition ``p`` at
distance at least ``||q - c_p|| - r_p`` (``r_p`` the partition's largest
row-to-centroid distance). This reports the share of partitions that bound
would skip even with the *true* k-th distance known, i.e. the most such a
stopping rule could ever save. Quoted in docs/arch/blueprint.md (3.9).

    uv run python -m benchmarks.studies.stop_bound DATASET_DIR INDEX [--queries 300]

Distances are Euclidean on the stored (scored) vectors; for cosine and ip
sets of unit vectors they rank like the metric.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import numpy as np

import svve_core
from svve_core.datasets import load_dataset


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("index")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("-k", type=int, default=10)
    a = ap.parse_args(argv)
    print("command:", " ".join(sys.argv))
    ds = load_dataset(a.dataset, with_base=False)
    if ds.gt is None:
        raise SystemExit("the dataset has no gt.npy")
    arrays = svve_core.SearchEngine(a.index).arrays()
    cents, vecs = arrays["centroids"], arrays["vectors"]
    off = arrays["offsets"].astype(np.int64)
    radius = np.array(
        [
            np.sqrt(((vecs[s:e] - c) ** 2).sum(1).max()) if e > s else 0.0
            for c, s, e in zip(cents, off[:-1], off[1:])
        ]
    )
    row_of = {int(i): r for r, i in enumerate(arrays["ids"])}
    queries = ds.queries[: a.queries]
    if svve_core.SearchEngine(a.index).info().metric != "l2":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    skippable = []
    for q, truth in zip(queries, ds.gt):
        rows = [row_of[int(t)] for t in truth[: a.k]]
        kth = np.sqrt(((vecs[rows] - q) ** 2).sum(1)).max()
        lower = np.sqrt(((cents - q) ** 2).sum(1)) - radius
        skippable.append(float((lower > kth).mean()))
    print(f"partitions {len(cents)}, median radius {np.median(radius):.3f}")
    print(
        f"share of partitions the bound skips with the true k-th distance: "
        f"mean {np.mean(skippable):.4f}, median {np.median(skippable):.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
