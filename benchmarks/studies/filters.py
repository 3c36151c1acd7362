"""Study: filtered search at every selectivity, uncorrelated, correlated and
anti-correlated with the query, svve against the peers that filter
(issue 15's cells and targets).

The index gets two attributes: ``bucket_s`` (a random integer, so
``{"bucket_s": 0}`` matches a random share ``s`` of the rows: uncorrelated)
and ``region_s`` (the k-means cell of each row among ``1/s`` cells, so
``{"region_s": r}`` matches a compact group of rows: the query's nearest
region is correlated with it, its farthest region anti-correlated).

For each cell, every library sweeps its effort knob (svve ``target_recall``;
hnswlib ``ef`` with a ``filter=`` callable; faiss HNSW ``efSearch`` and IVF
``nprobe`` with an ``IDSelectorBitmap`` in the search parameters) over single
queries on one thread; the table gives recall@10 against numpy over the
matching rows and QPS at the default setting (svve) and the best QPS at
recall >= 0.95 of each. svve evaluates the filter dict in every call; the
peers get a precomputed allowlist per distinct filter (their users would
bring one from a database), which favours them.

    uv run --group bench python -m benchmarks.studies.filters [DATASET_DIR] [--queries N] [--quick]
        [--peers hnswlib,faiss-hnsw,faiss-ivf] [--max-regions N] [--out FILE]

Without ``--quick`` the report is also written to benchmarks/results/filters.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import svve_core
from benchmarks.harness.common import Tee, loadavg, machine_info
from svve_core import SearchParams
from svve_core.datasets import load_dataset

DEFAULT_DATASET = "../shared/datasets/debian-minilm-384"
RESULTS = Path(__file__).resolve().parents[1] / "results" / "filters.txt"
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001, 0.0001)
TARGET = 0.95
SVVE_TARGETS = (0.9, 0.95, 0.97, 0.99)
HNSW_EFS = (10, 20, 40, 80, 160, 320, 640)
IVF_PROBES = (4, 8, 16, 32, 64, 128, 256)


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


def _top10(scores: np.ndarray) -> np.ndarray:
    """The ten best of ``scores``, best first."""
    top = np.argpartition(-scores, 9)[:10] if len(scores) > 10 else np.arange(len(scores))
    return top[np.argsort(-scores[top], kind="stable")]


class Cell:
    """One selectivity and kind: a filter per query, its rows, the truth."""

    def __init__(self, name: str, s: float, column: str, values: Sequence[int], labels: np.ndarray):
        self.name, self.s, self.column = name, s, column
        self.values = [int(v) for v in values]
        self._masks: Dict[int, np.ndarray] = {}
        self._labels = labels

    def mask(self, i: int) -> np.ndarray:
        v = self.values[i]
        if v not in self._masks:
            self._masks[v] = self._labels == v
        return self._masks[v]

    def filter(self, i: int) -> Dict[str, int]:
        return {self.column: self.values[i]}


def measure(
    search: Callable[[int], np.ndarray], n: int, truth: List[np.ndarray]
) -> Tuple[float, float]:
    """Mean recall@10 and QPS of ``search(i)`` over queries ``0..n``
    (every answer must hold min(10, matching) rows)."""
    for i in range(min(10, n)):
        search(i)
    lat = np.empty(n)
    hits = 0.0
    for i in range(n):
        t = time.perf_counter()
        ids = search(i)
        lat[i] = time.perf_counter() - t
        want = truth[i]
        hits += len(set(np.asarray(ids).tolist()) & set(want.tolist())) / max(1, len(want))
    return hits / n, n / lat.sum()


def best(points: List[Tuple[Any, float, float]]) -> Tuple[str, float, float]:
    """The fastest point at recall >= TARGET, else the most accurate."""
    ok = [p for p in points if p[1] >= TARGET]
    if ok:
        k, r, q = max(ok, key=lambda p: p[2])
    else:
        k, r, q = max(points, key=lambda p: (p[1], p[2]))
    return str(k), r, q


def build_peers(x: np.ndarray, tmp: Path, wanted: Sequence[str]) -> Dict[str, Any]:
    peers: Dict[str, Any] = {}
    u = unit(x).astype(np.float32)
    n, d = u.shape
    with contextlib.suppress(ImportError):
        if "hnswlib" not in wanted:
            raise ImportError
        import hnswlib

        t = time.perf_counter()
        h = hnswlib.Index(space="ip", dim=d)
        h.init_index(max_elements=n, M=16, ef_construction=200, random_seed=0)
        h.add_items(u, np.arange(n), num_threads=os.cpu_count() or 1)
        h.set_num_threads(1)
        peers["hnswlib"] = h
        print(
            f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}: "
            f"M=16, ef_construction=200, built in {time.perf_counter() - t:.1f} s"
        )
    with contextlib.suppress(ImportError):
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)
        if "faiss-hnsw" in wanted:
            t = time.perf_counter()
            fh = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            fh.hnsw.efConstruction = 200
            fh.add(u)
            peers["faiss-hnsw"] = fh
            print(
                f"faiss {faiss.__version__} HNSWFlat: M=32, efConstruction=200, built in "
                f"{time.perf_counter() - t:.1f} s"
            )
        if "faiss-ivf" not in wanted:
            faiss.omp_set_num_threads(1)
            return peers
        t = time.perf_counter()
        nlist = round(4 * float(np.sqrt(n)))
        quantizer = faiss.IndexFlatIP(d)
        fi = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
        fi.train(u[sample])
        fi.add(u)
        peers["faiss-ivf"] = fi
        print(f"faiss IVFFlat: nlist={nlist} (4 sqrt(n)), built in {time.perf_counter() - t:.1f} s")
        faiss.omp_set_num_threads(1)
    return peers


def peer_points(name: str, index: Any, queries: np.ndarray, cell: Cell, truth, quick: bool):
    """(setting, recall, QPS) of a peer over its sweep on this cell."""
    n = len(queries)
    points = []
    if name == "hnswlib":
        allow = {}

        def allowed(i: int) -> Any:
            v = cell.values[i]
            if v not in allow:
                allow[v] = bytes(cell.mask(i).astype(np.uint8))
            return allow[v]

        for ef in HNSW_EFS[: 4 if quick else None]:
            index.set_ef(max(ef, 10))

            def search(i: int, ok=allowed) -> np.ndarray:
                a = ok(i)
                m = min(10, int(cell.mask(i).sum()))
                if m == 0:
                    return np.empty(0, np.int64)
                return index.knn_query(queries[i], m, filter=lambda label: a[label] == 1)[0][0]

            r, q = measure(search, n, truth)
            points.append((f"ef={ef}", r, q))
            if r >= 0.999:
                break
        return points
    import faiss

    sels: Dict[int, Any] = {}

    def selector(i: int) -> Any:
        v = cell.values[i]
        if v not in sels:
            bits = np.packbits(cell.mask(i).astype(np.uint8), bitorder="little")
            sels[v] = (faiss.IDSelectorBitmap(len(cell.mask(i)), faiss.swig_ptr(bits)), bits)
        return sels[v][0]

    knobs = HNSW_EFS if name == "faiss-hnsw" else IVF_PROBES
    for knob in knobs[: 4 if quick else None]:

        def search(i: int, knob=knob) -> np.ndarray:
            m = min(10, int(cell.mask(i).sum()))
            if m == 0:
                return np.empty(0, np.int64)
            if name == "faiss-hnsw":
                p = faiss.SearchParametersHNSW(sel=selector(i), efSearch=knob)
            else:
                p = faiss.SearchParametersIVF(sel=selector(i), nprobe=knob)
            ids = index.search(queries[i : i + 1], m, params=p)[1][0]
            return ids[ids >= 0]

        r, q = measure(search, n, truth)
        points.append((f"{'ef' if name == 'faiss-hnsw' else 'nprobe'}={knob}", r, q))
        if r >= 0.999:
            break
    return points


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", default=DEFAULT_DATASET)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="few queries and settings: smoke test")
    ap.add_argument(
        "--peers",
        default="hnswlib,faiss-hnsw,faiss-ivf",
        help="comma-separated peers to build (graphs take long at 1M rows on 2 cores)",
    )
    ap.add_argument(
        "--max-regions",
        type=int,
        default=20_000,
        help="skip correlated/anti-correlated cells needing more k-means regions than this",
    )
    ap.add_argument("--out", help=f"report file (default without --quick: {RESULTS})")
    a = ap.parse_args(argv)
    svve_core.set_num_threads(1)
    ds = load_dataset(a.dataset)
    assert ds.base is not None
    nq = 30 if a.quick else a.queries
    x, queries = ds.base, ds.queries[:nq].astype(np.float32)
    if a.quick:
        x = x[:8000]
    n = len(x)
    out = Path(a.out) if a.out else (None if a.quick else RESULTS)
    tee = Tee(out)
    with contextlib.redirect_stdout(tee):  # type: ignore[type-var]
        args = " ".join(sys.argv[1:] if argv is None else argv)
        print("# Filtered search: recall and QPS per selectivity, svve against peers\n")
        print(f"command: python -m benchmarks.studies.filters {args}".rstrip())
        m = machine_info()
        print(f"machine: {m['cpu']}, {m['cores']} cpus, {m['memory_gb']} GiB, load {loadavg()}")
        print(f"svve-core {m['svve_core']} (commit {m['git_commit']}), kernels {m['svve_isa']}")
        print(
            f"data: {a.dataset}, {n} x {x.shape[1]}, {len(queries)} queries, k=10, one thread, "
            f"recall target for 'best' columns: {TARGET}\n"
        )
        rng = np.random.default_rng(0)
        attrs: Dict[str, np.ndarray] = {}
        centres: Dict[float, np.ndarray] = {}
        for s in SELECTIVITIES:
            attrs[f"bucket_{s}"] = rng.integers(0, round(1 / s), n)
            count = max(2, min(n // 2, round(1 / s)))
            if count > a.max_regions:
                continue
            labels, c = regions(x, count, seed=int(1 / s))
            attrs[f"region_{s}"] = labels
            centres[s] = c
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "f.svve"
            t = time.perf_counter()
            svve_core.build_index(path, x, metric="cosine", attributes=attrs)
            print(
                f"svve: build with {len(attrs)} attributes {time.perf_counter() - t:.1f} s, "
                f"{os.path.getsize(path) / 2**20:.1f} MiB"
            )
            engine = svve_core.SearchEngine(path)
            peers = build_peers(x, Path(tmp), a.peers.split(","))
            u, uq = unit(x), unit(queries)
            sims = uq @ u.T
            top = [_top10(row) for row in sims]
            r0, qps0 = measure(lambda i: engine.search(queries[i], 10)[0], len(queries), top)
            print(f"\nunfiltered svve, default target: recall {r0:.4f}, {qps0:,.0f} QPS\n")
            head = ["filter", "s", "rows", "svve default", "svve best", "vs unfiltered"]
            head += [f"{p} best" for p in peers] + ["svve / best peer"]
            print("| " + " | ".join(head) + " |")
            print("|" + "---|" * len(head))
            for s in SELECTIVITIES:
                bucket = attrs[f"bucket_{s}"]
                cells = [Cell("uncorrelated", s, f"bucket_{s}", [0] * len(queries), bucket)]
                if s in centres:
                    label = attrs[f"region_{s}"]
                    near = _nearest(uq, centres[s])
                    far = _nearest(uq, -centres[s])
                    cells.append(Cell("correlated", s, f"region_{s}", near, label))
                    cells.append(Cell("anti-correlated", s, f"region_{s}", far, label))
                for cell in cells:
                    truth, counts = [], []
                    for i in range(len(queries)):
                        mk = cell.mask(i)
                        counts.append(int(mk.sum()))
                        sc = np.where(mk, sims[i], -np.inf)
                        truth.append(_top10(sc)[: min(10, counts[-1])])
                    pts = []
                    for t_ in SVVE_TARGETS:
                        p = SearchParams(target_recall=t_)
                        r, q = measure(
                            lambda i, p=p, c=cell: engine.search(
                                queries[i], 10, p, filter=c.filter(i)
                            )[0],
                            len(queries),
                            truth,
                        )
                        pts.append((f"t={t_}", r, q))
                    default = next(p for p in pts if p[0] == "t=0.95")
                    sv = best(pts)
                    row = [
                        cell.name,
                        f"{s:g}",
                        str(int(np.median(counts))),
                        f"{default[1]:.3f} / {default[2]:,.0f}",
                        f"{sv[1]:.3f} / {sv[2]:,.0f} ({sv[0]})",
                        f"{default[2] / qps0:.2f}x",
                    ]
                    peer_best = 0.0
                    for name, index in peers.items():
                        pb = best(peer_points(name, index, queries, cell, truth, a.quick))
                        row.append(f"{pb[1]:.3f} / {pb[2]:,.0f} ({pb[0]})")
                        if pb[1] >= TARGET:
                            peer_best = max(peer_best, pb[2])
                    ratio = f"{sv[2] / peer_best:.2f}x" if peer_best and sv[1] >= TARGET else "n/a"
                    row.append(ratio)
                    print("| " + " | ".join(row) + " |")
        print(
            "\ncells: recall@10 / QPS (setting); 'best' = fastest setting at recall >= "
            f"{TARGET} (else the most accurate); 'vs unfiltered' = svve default QPS over the "
            "unfiltered QPS above; the ratio compares best columns where both reach the target."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
