"""Seed corpus for the fuzz targets: small valid indexes of every metric,
flat and partitioned, centred or not, with 1 row, odd dimensions, and
custom ids. Usage: uv run python fuzz/make_seeds.py DIR"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import svve_core


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cases = [
        # (n, dim, partitions, center)
        (1, 3, 0, True),
        (2, 1, 0, True),
        (5, 8, 0, False),
        (12, 8, 3, True),
        (20, 65, 2, True),
        (30, 16, 4, False),
    ]
    for metric in ("cosine", "ip", "l2"):
        for n, dim, parts, center in cases:
            x = rng.standard_normal((n, dim)).astype(np.float32)
            ids = rng.permutation(10 * n).astype(np.int64)[:n] - 5
            path = out / f"{metric}-n{n}-d{dim}-p{parts}-c{int(center)}.svve"
            config = svve_core.IndexConfig(partitions=parts, center=center)
            svve_core.build_index(path, x, ids=ids, metric=metric, config=config)
    print(f"{len(list(out.iterdir()))} seeds in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
