"""Offline study: could votes choose the partitions that expansion opens?

For each query, the `nprobe = max(8, L/10)` partitions nearest by centroid
are probed first. Expansion then opens up to `E` more, chosen by

- ``fixed``: the next `E` by centroid score;
- ``ratio``: those of the next `E` within `(1 + 0.7)` of the nearest
  centroid's squared distance (the library's rule);
- ``vote``: each of the top `T` rows of the first probes (ranked by exact
  score, an upper bound on what Tier1 could do) votes for its own second-
  nearest partition; the partitions with the most votes (at least `minv`)
  are opened.

It prints the coverage (share of the true top-10 whose partition is opened,
the recall ceiling of the probes) against the rows opened. A second table
studies multi-assignment instead: a row whose second-nearest centroid is
within `(1 + lam)` of its nearest one's squared distance is also stored in
that partition (spilled), and plain probing of `nprobe` partitions is
measured with duplicates counted in the rows scanned. Usage:
``uv run python -m benchmarks.studies.vote_coverage INDEX DATASET_DIR [QUERIES]``
(the index built with default ids, as the benchmark's svve adapter does).
It reads the index through ``SearchEngine.arrays()``.
"""

import json
import sys

import numpy as np

from svve_core import SearchEngine
from svve_core.datasets import load_dataset


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    index, ds = argv[0], argv[1]
    nq = int(argv[2]) if len(argv) > 2 else 300
    engine = SearchEngine(index)  # holds the mapping the views below read
    arrays = engine.arrays()
    cent = arrays["centroids"]  # (L, dim) float32
    off = arrays["offsets"].astype(np.int64)  # (L + 1,): partition p is rows off[p]..off[p+1]
    vecs = arrays["vectors"]  # (n, dim) float32, stored order
    ids = arrays["ids"]  # (n,) int64, stored order
    parts, n = cent.shape[0], vecs.shape[0]
    part = np.repeat(np.arange(parts), np.diff(off))
    cn = (cent * cent).sum(1)
    second = np.empty(n, np.int32)
    ratio = np.empty(n, np.float32)  # second / first squared distance
    for s in range(0, n, 50_000):
        x = vecs[s : s + 50_000]
        d = cn[None, :] - 2 * x @ cent.T + (x * x).sum(1)[:, None]
        own = d[np.arange(d.shape[0]), part[s : s + 50_000]].copy()
        d[np.arange(d.shape[0]), part[s : s + 50_000]] = np.inf
        second[s : s + 50_000] = d.argmin(1)
        ratio[s : s + 50_000] = d.min(1) / np.maximum(own, 1e-12)
    row_of = np.empty(n, np.int64)
    row_of[ids] = np.arange(n)
    data = load_dataset(ds, with_base=False)
    if data.gt is None:
        raise SystemExit(f"{ds}: no gt.npy; coverage is of the true top-10")
    nq = min(nq, len(data.queries))
    q = data.queries[:nq]
    gt_ids = data.gt[:nq, :10]
    gtp = part[row_of[gt_ids]]
    nprobe = max(8, parts // 10)

    def run(rule, extra, t=50, minv=1):
        cov = rows = 0.0
        for qi in range(nq):
            rho = cent @ q[qi]
            order = np.argsort(-rho)
            probed = list(order[:nprobe])
            nxt = order[nprobe : nprobe + extra]
            if rule == "fixed":
                probed += list(nxt)
            elif rule == "ratio":
                d2 = q[qi] @ q[qi] - 2 * rho + cn
                probed += [p for p in nxt if d2[p] <= 1.7 * d2[order[0]]]
            elif rule == "vote":
                rs = np.concatenate([np.arange(off[p], off[p + 1]) for p in probed])
                top = rs[np.argsort(-(vecs[rs] @ q[qi]))[:t]]
                votes: dict = {}
                for p2 in second[top]:
                    if p2 not in probed:
                        votes[p2] = votes.get(p2, 0) + 1
                ranked = sorted(votes.items(), key=lambda kv: (-kv[1], -rho[kv[0]]))
                probed += [p for p, v in ranked if v >= minv][:extra]
            opened = set(probed)
            cov += np.mean([p in opened for p in gtp[qi]])
            rows += sum(off[p + 1] - off[p] for p in opened)
        return cov / nq, rows / nq

    print(f"command: uv run python -m benchmarks.studies.vote_coverage {' '.join(argv)}")
    print(f"{parts} partitions, {n} rows, {nq} queries, nprobe {nprobe}")
    c, r = run("fixed", 0)
    print(f"{'first probes only':42s} coverage {c:.4f} rows {r:9.0f}")
    for extra in (nprobe // 2, nprobe, 2 * nprobe):
        for rule, kw in [
            ("fixed", {}),
            ("ratio", {}),
            ("vote", {"t": 100}),
            ("vote", {"t": 300}),
            ("vote", {"t": 1000, "minv": 2}),
        ]:
            c, r = run(rule, extra, **kw)
            label = f"E={extra} {rule} {json.dumps(kw) if kw else ''}"
            print(f"{label:42s} coverage {c:.4f} rows {r:9.0f}")
    sizes = np.diff(off)
    print("\nmulti-assignment (spill), plain probing, rows include duplicates")
    for lam in (0.0, 0.05, 0.1, 0.2):
        spill = ratio <= 1 + lam if lam > 0 else np.zeros(n, bool)
        size = sizes + np.bincount(second[spill], minlength=parts)
        for mult in (1, 2, 3):
            probes = mult * nprobe
            cov = rows = 0.0
            for qi in range(nq):
                opened = set(np.argsort(-(cent @ q[qi]))[:probes])
                r = row_of[gt_ids[qi]]
                cov += np.mean([part[x] in opened or (spill[x] and second[x] in opened) for x in r])
                rows += size[list(opened)].sum()
            print(
                f"lam={lam:<5} spilled {spill.mean():6.1%} nprobe={probes:<5}"
                f" coverage {cov / nq:.4f} rows {rows / nq:9.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
