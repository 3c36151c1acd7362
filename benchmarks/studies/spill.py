"""Offline study: which second partition should a row's spilled copy go to?

Blueprint 3.3. For each query the ``m`` partitions nearest by centroid
distance are opened; a true top-10 row is *covered* when its own partition
or the partition its copy was spilled into is open. Printed for each rule:
coverage (the recall ceiling of the probes) and the entries scanned (rows
plus spilled copies in the open partitions), for ``m`` from 8 to 128.

Rules: ``single`` (no copies); ``lam=L frac=F``: the fraction ``F`` of rows
whose spill is cheapest (its squared distance over their own) get a copy in
the partition minimising SOAR's loss ``||x - c||^2 + L <r, x - c>^2 /
||r||^2`` (``r = x - c_own``); ``L = 0`` is the plain second-nearest
centroid. The index is read through ``SearchEngine.arrays()`` (its stored
rows, partitions and centroids; build it with default ids, as the
benchmark's adapter does), so the spill is recomputed here for every rule,
whatever the index holds. Usage:
``uv run python -m benchmarks.studies.spill INDEX DATASET_DIR [QUERIES]``
"""

import platform
import sys

import numpy as np

from svve_core import SearchEngine
from svve_core.datasets import load_dataset

PROBES = (8, 16, 24, 32, 48, 64, 96, 128)


def spill_of(vecs, part, cent, lam):
    """The SOAR spill partition of every row and its distance ratio."""
    cn = (cent * cent).sum(1)
    n = len(vecs)
    spill = np.empty(n, np.int64)
    cost = np.empty(n, np.float32)
    for s in range(0, n, 20_000):
        x, p = vecs[s : s + 20_000], part[s : s + 20_000]
        rows = np.arange(len(p))
        dots = x @ cent.T
        d = cn[None, :] - 2 * dots + (x * x).sum(1)[:, None]
        r = x - cent[p]
        rn = np.maximum((r * r).sum(1), 1e-12)
        along = (r * x).sum(1)[:, None] - r @ cent.T
        loss = d + lam * along**2 / rn[:, None]
        loss[rows, p] = np.inf
        spill[s : s + 20_000] = loss.argmin(1)
        own = np.maximum(d[rows, p], 1e-12)
        cost[s : s + 20_000] = d[rows, spill[s : s + 20_000]] / own
    return spill, cost


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    index, ds = argv[0], argv[1]
    nq = int(argv[2]) if len(argv) > 2 else 1000
    engine = SearchEngine(index)  # holds the mapping the views below read
    a = engine.arrays()
    cent, vecs, ids = a["centroids"], a["vectors"], a["ids"]
    off = a["offsets"].astype(np.int64)
    parts, n = cent.shape[0], vecs.shape[0]
    part = np.repeat(np.arange(parts), np.diff(off))
    data = load_dataset(ds, with_base=False)
    if data.gt is None:
        raise SystemExit(f"{ds}: no gt.npy; coverage is of the true top-10")
    nq = min(nq, len(data.queries))
    q = data.queries[:nq].astype(np.float32)
    row_of = np.empty(n, np.int64)
    row_of[ids] = np.arange(n)
    truth = row_of[data.gt[:nq, :10]]
    order = np.argsort((cent * cent).sum(1)[None, :] - 2 * q @ cent.T, 1)
    sizes = np.diff(off)
    print(f"command: uv run python -m benchmarks.studies.spill {' '.join(argv)}")
    print(f"machine: {platform.machine()}, python {platform.python_version()}")
    print(f"{parts} partitions, {n} rows x {vecs.shape[1]}, {nq} queries")
    print("each cell: coverage of the true top-10 / entries scanned, at m probes")

    def curve(name, spilled):
        extra = np.bincount(spilled[spilled >= 0], minlength=parts)
        total = sizes + extra
        cells = []
        for m in PROBES:
            open_ = np.zeros((nq, parts), bool)
            np.put_along_axis(open_, order[:, :m], True, 1)
            qi = np.arange(nq)[:, None]
            own = open_[qi, part[truth]]
            s = spilled[truth]
            copy = np.where(s >= 0, open_[qi, np.maximum(s, 0)], False)
            rows = np.take_along_axis(np.broadcast_to(total, (nq, parts)), order[:, :m], 1)
            cells.append(f"m={m}:{(own | copy).mean():.4f}/{rows.sum(1).mean():.0f}")
        print(f"{name:18s}", " ".join(cells), flush=True)

    curve("single", np.full(n, -1))
    for lam in (0.0, 1.0, 2.0):
        spill, cost = spill_of(vecs, part, cent, lam)
        for frac in (0.25, 0.5, 1.0):
            chosen = np.full(n, -1)
            keep = np.argsort(cost)[: int(frac * n)]
            chosen[keep] = spill[keep]
            curve(f"lam={lam} frac={frac}", chosen)
        if lam == 1.0:
            for c in (0.5, 1.0, 2.0):
                curve(f"lam=1 cap={c}", capped(spill, cost, sizes, c))
    return 0


def capped(spill, cost, sizes, c):
    """``spill``, with each partition taking at most ``c * max(own rows,
    mean rows)`` copies, those with the lowest distance ratio first."""
    cap = np.ceil(c * np.maximum(sizes, sizes.mean())).astype(np.int64)
    order = np.lexsort((cost, spill))
    ranked = np.empty(len(spill), np.int64)
    starts = np.searchsorted(spill[order], np.arange(len(sizes)))
    ranked[order] = np.arange(len(spill)) - starts[spill[order]]
    return np.where(ranked < cap[spill], spill, -1)


if __name__ == "__main__":
    sys.exit(main())
