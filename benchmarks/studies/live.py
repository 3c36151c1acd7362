"""Study: live collections (``svve_core.Collection``) against the targets of
the live-collections issue, in one run:

1. ingest, one writer, batches of 1,000 rows, one thread: vectors/s of svve
   (add + commit per batch; add per batch and one commit at the end) at 384-d
   (debian-minilm-384) and 1536-d (the suite's ada-like stand-in), against
   hnswlib ``add_items``, usearch ``Index.add``, faiss IVF-Flat ``add``
   (trained first, training reported apart) and LanceDB ``Table.add``, on the
   same rows in the same batches; then, on each index as its ingest left it,
   deletes of 10% of its rows (the same random ids for every library) in
   batches of 1,000 ids: svve ``delete`` + ``commit``, hnswlib
   ``mark_deleted``, usearch ``Index.remove``, faiss ``remove_ids``, LanceDB
   ``Table.delete``, and a check that no search afterwards returns a deleted id;
2. recall@10 of a collection built in 10 batches (add + commit each) against a
   one-shot ``build_index`` of the same rows, at ``target_recall`` 0.95 and
   0.99, before and after ``compact()``, then after deleting 10% and 50% of the
   rows at random (against a one-shot build of the rows left), with the
   single-query QPS and the segments of each case;
3. p50/p99 of single queries on a reader (``readonly=True``, ``refresh()``
   every 100 ms on a thread) while a writer in another process ingests the
   second half of debian in batches of 1,000 with a commit each, against
   static ``SearchEngine`` indexes of the row counts the reader passes
   through (pooled), and of the first half alone (the stricter reading).

    uv run --group bench python -m benchmarks.studies.live [DATASET_DIR] [--quick]

``--quick`` runs every part on small slices (the smoke test, under 2 minutes).
Without it the report is also written to benchmarks/results/live.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

# Before any library starts its thread pool: one CPU thread for LanceDB.
# (LANCE_IO_THREADS=1 as well makes lancedb 0.40's Table.add hang: left alone.)
os.environ.setdefault("LANCE_CPU_THREADS", "1")

import numpy as np

import svve_core
from benchmarks.harness.adapters import _nlist, _sample
from benchmarks.harness.common import Tee, dir_bytes, loadavg, machine_info
from benchmarks.harness.suite import synthetic_dir
from benchmarks.harness.synthetic import ADA
from svve_core import SearchParams
from svve_core.datasets import load_dataset, recall

BATCH = 1000
DEFAULT_DATASET = "../shared/datasets/debian-minilm-384"
RESULTS = Path(__file__).resolve().parents[1] / "results" / "live.txt"
TARGETS = (0.95, 0.99)
# The suite's hnswlib and usearch settings (benchmarks/harness/suite.py).
HNSW_M, HNSW_EFC = 16, 200
HNSW_EF, FAISS_NPROBE = 100, 32  # searches of the deletes check only
USEARCH_M, USEARCH_EFC = 16, 128
# Issue targets.
INGEST_TARGET = {384: 5000.0, 1536: 1500.0}
# Part 1's deletes: this share of the ingested rows, drawn with this seed (the
# same ids, in the same order, for every library), then CHECK_QUERIES searches.
DELETE_SHARE, DELETE_SEED, CHECK_QUERIES = 0.1, 1, 10
RECALL_GAP = {"before": 0.01, "after": 0.005}
P99_RATIO = 1.5
# Row counts of the static indexes the reader's p99 is compared with: the
# reader holds every count from the first half to all rows during a round.
SAME_ROWS_STEPS = 5


class Plan(NamedTuple):
    ingest_384: Optional[int]  # debian rows ingested in part 1 (None: all)
    ingest_1536: int  # ada-like rows in part 1
    rows: Optional[int]  # debian rows in parts 2 and 3 (None: all)
    queries: int  # dataset queries for recall and latency
    static_queries: int  # single queries per static latency run in part 3
    rounds: int  # ingest rounds in part 3
    delete_batch: int  # ids per delete call in part 1


FULL = Plan(None, 30000, None, 1000, 20000, 5, BATCH)
# --quick deletes 500 and 200 ids in batches of 100: several batches each.
QUICK = Plan(5000, 2000, 6000, 200, 2000, 2, 100)


# ----------------------------------------------------------------- helpers


def batches(n: int) -> List[Tuple[int, int]]:
    return [(s, min(s + BATCH, n)) for s in range(0, n, BATCH)]


def segments(info: svve_core.CollectionInfo) -> str:
    """``3: 24000, 24000, 6014 (-601) + 20 fresh``."""
    parts = [f"{s.rows}" + (f" (-{s.deleted})" if s.deleted else "") for s in info.segments]
    fresh = f" + {info.fresh} fresh" if info.fresh else ""
    return f"{len(parts)}: " + ", ".join(parts) + fresh


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top10(unit_base: np.ndarray, live: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """numpy exact top-10 ids (cosine) of each query over the rows ``live``."""
    scores = queries @ unit_base[live].T
    top = np.argpartition(-scores, 9, axis=1)[:, :10]
    return live[top]


def single_queries(search: Callable, queries: np.ndarray, count: int) -> np.ndarray:
    """Seconds of ``count`` single queries (cycling through ``queries``), after 100 warm-up."""
    for q in queries[:100]:
        search(q)
    lat = np.empty(count)
    for i in range(count):
        q = queries[i % len(queries)]
        t = time.perf_counter()
        search(q)
        lat[i] = time.perf_counter() - t
    return lat


def recall_qps(searcher, queries: np.ndarray, gt: np.ndarray, target: float) -> Tuple[float, float]:
    """recall@10 and single-query QPS (one thread) over ``queries``."""
    params = SearchParams(target_recall=target)
    for q in queries[:20]:
        searcher.search(q, 10, params)
    found = np.full((len(queries), 10), -1, np.int64)
    lat = np.empty(len(queries))
    for i, q in enumerate(queries):
        t = time.perf_counter()
        ids, _ = searcher.search(q, 10, params)
        lat[i] = time.perf_counter() - t
        found[i, : len(ids)] = ids
    return recall(found, gt, 10), len(lat) / lat.sum()


# ------------------------------------------------------------- 1. ingest


class Ingest(NamedTuple):
    label: str
    rows: int
    batch_s: List[float]  # seconds per batch
    total_s: float  # every batch, plus a final commit where there is one
    note: str

    @property
    def median(self) -> float:
        return float(
            np.median([(e - s) / t for (s, e), t in zip(batches(self.rows), self.batch_s)])
        )

    @property
    def total(self) -> float:
        return self.rows / self.total_s


class Live(NamedTuple):
    """A library's index as its ingest left it, for the deletes that follow."""

    label: str  # the deletes table's row
    delete: Callable[[np.ndarray], int]  # one batch of ids; how many it says it removed
    search: Callable[[np.ndarray], np.ndarray]  # ids of the top-10 of one query
    count: Callable[[], int]  # rows the library reports
    note: Callable[[], str]  # what a delete call does (read after the deletes)
    close: Callable[[], None]  # frees the index and its files


def ingest_svve(x: np.ndarray, tmp: Path, commit_each: bool) -> Tuple[Ingest, Live]:
    path = tmp / f"ingest-{x.shape[1]}-{int(commit_each)}"
    ids = np.arange(len(x), dtype=np.int64)
    col = svve_core.Collection.create(path, dim=x.shape[1], metric="cosine")
    per = []
    t0 = time.perf_counter()
    for s, e in batches(len(x)):
        t = time.perf_counter()
        col.add(x[s:e], ids[s:e])
        if commit_each:
            col.commit()
        per.append(time.perf_counter() - t)
    t = time.perf_counter()
    col.commit()
    final = time.perf_counter() - t
    total = time.perf_counter() - t0
    info = col.info()
    assert info.n == len(x), (info.n, len(x))
    note = (
        f"segments {segments(info)}; generation {info.generation}; "
        f"{dir_bytes(str(path)) / 2**20:.0f} MiB on disk"
    )
    if not commit_each:
        note = f"final commit {final:.2f} s (in the total); " + note
    label = "svve add+commit per batch" if commit_each else "svve add per batch, 1 commit"

    def delete(ids: np.ndarray) -> int:
        gone = col.delete(ids)
        col.commit()
        return gone

    def close() -> None:
        col.close()
        shutil.rmtree(path)

    live = Live(
        f"svve delete+commit per batch (after {label.removeprefix('svve ')})",
        delete,
        lambda q: col.search(q, 10)[0],
        lambda: len(col),
        lambda: (
            "col.delete(ids) + col.commit() per batch (durable, fsynced); segments after "
            f"{segments(col.info())}; generation {col.info().generation}"
        ),
        close,
    )
    return Ingest(label, len(x), per, total, note), live


def _timed_batches(x: np.ndarray, add: Callable[[np.ndarray, np.ndarray], None]) -> List[float]:
    ids = np.arange(len(x), dtype=np.int64)
    per = []
    for s, e in batches(len(x)):
        t = time.perf_counter()
        add(x[s:e], ids[s:e])
        per.append(time.perf_counter() - t)
    return per


def ingest_hnswlib(x: np.ndarray, tmp: Path) -> Tuple[Ingest, Live]:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=x.shape[1])
    index.init_index(max_elements=len(x), M=HNSW_M, ef_construction=HNSW_EFC, random_seed=0)
    index.set_num_threads(1)
    per = _timed_batches(x, lambda v, i: index.add_items(v, i, num_threads=1))
    t = time.perf_counter()
    index.save_index(str(tmp / "hnsw.bin"))
    save = time.perf_counter() - t
    os.remove(tmp / "hnsw.bin")
    note = f"M={HNSW_M}, ef_construction={HNSW_EFC}; in memory; one save at the end {save:.2f} s"

    def delete(ids: np.ndarray) -> int:
        for i in ids.tolist():
            index.mark_deleted(i)
        return len(ids)

    index.set_ef(HNSW_EF)
    live = Live(
        "hnswlib mark_deleted per id",
        delete,
        lambda q: index.knn_query(q, k=10, num_threads=1)[0][0],
        index.get_current_count,
        lambda: (
            "mark_deleted(id), one call per id: hnswlib has no batch call; removed = ids "
            "passed (it returns nothing, raises on an unknown id); marked rows stay in the "
            f"graph and searches skip them (ef={HNSW_EF}); get_current_count() still counts "
            "them; in memory"
        ),
        lambda: None,
    )
    return Ingest("hnswlib add_items", len(x), per, sum(per), note), live


def ingest_usearch(x: np.ndarray, tmp: Path) -> Tuple[Ingest, Live]:
    from usearch.index import Index

    index = Index(
        ndim=x.shape[1],
        metric="ip",
        dtype="f32",
        connectivity=USEARCH_M,
        expansion_add=USEARCH_EFC,
    )
    per = _timed_batches(x, lambda v, i: index.add(i, v, threads=1))
    t = time.perf_counter()
    index.save(str(tmp / "index.usearch"))
    save = time.perf_counter() - t
    os.remove(tmp / "index.usearch")
    note = (
        f"f32, connectivity={USEARCH_M}, expansion_add={USEARCH_EFC}; in memory; "
        f"one save at the end {save:.2f} s"
    )
    live = Live(
        "usearch Index.remove",
        lambda ids: int(np.sum(index.remove(ids, threads=1))),
        lambda q: index.search(q, 10, threads=1).keys,
        lambda: len(index),
        lambda: (
            "Index.remove(keys) per batch, threads=1, compact=False (the default: nodes "
            "marked removed, links to them kept); in memory"
        ),
        lambda: None,
    )
    return Ingest("usearch Index.add", len(x), per, sum(per), note), live


def ingest_faiss(x: np.ndarray) -> Tuple[Ingest, Live]:
    import faiss

    faiss.omp_set_num_threads(1)
    nlist = _nlist(len(x), {})
    index = faiss.IndexIVFFlat(
        faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT
    )
    sample = _sample(len(x), 64 * nlist)
    t = time.perf_counter()
    index.train(x[sample])
    train = time.perf_counter() - t
    per = _timed_batches(x, lambda v, i: index.add_with_ids(v, i))
    note = (
        f"nlist={nlist}, trained first on {len(sample)} of the rows it then ingests: "
        f"{train:.2f} s (not in the rates; with it: {len(x) / (train + sum(per)):,.0f}/s); "
        "in memory"
    )
    index.nprobe = FAISS_NPROBE

    def search(q: np.ndarray) -> np.ndarray:
        found = index.search(q[None, :], 10)[1][0]
        return found[found >= 0]

    live = Live(
        "faiss IVF-Flat remove_ids",
        lambda ids: int(index.remove_ids(ids)),
        search,
        lambda: int(index.ntotal),
        lambda: (
            "IndexIVFFlat.remove_ids(int64 array) per batch: faiss wraps it in an "
            f"IDSelectorBatch and makes a full pass over all {nlist} lists per call (no "
            f"direct map); rows removed from the lists; nprobe={FAISS_NPROBE}; in memory"
        ),
        lambda: None,
    )
    return Ingest("faiss IVF-Flat add", len(x), per, sum(per), note), live


def ingest_lancedb(x: np.ndarray, tmp: Path) -> Tuple[Ingest, Live]:
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfPq

    pa.set_cpu_count(1)
    dim = x.shape[1]
    schema = pa.schema(
        [pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), dim))]
    )
    path = tmp / "lancedb"
    table = lancedb.connect(str(path)).create_table("live", schema=schema)

    def add(v: np.ndarray, i: np.ndarray) -> None:
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), dim)
        table.add(pa.table({"id": pa.array(i), "vector": vectors}, schema=schema))

    per = _timed_batches(x, add)
    assert table.count_rows() == len(x)
    t = time.perf_counter()
    table.create_index("vector", config=IvfPq(distance_type="cosine"))
    index_s = time.perf_counter() - t
    note = (
        f"a new data file and version per batch, no vector index kept up to date (rows "
        f"added are scanned exactly until indexed); create_index(IvfPq) after the "
        f"ingest: {index_s:.2f} s (not in the rates)"
    )

    def delete(ids: np.ndarray) -> int:
        return table.delete(f"id IN ({', '.join(map(str, ids.tolist()))})").num_deleted_rows

    def search(q: np.ndarray) -> np.ndarray:
        query = table.search(q).distance_type("cosine").select(["id", "_distance"]).limit(10)
        return query.to_arrow()["id"].to_numpy()

    live = Live(
        "lancedb Table.delete",
        delete,
        search,
        table.count_rows,
        lambda: (
            'table.delete("id IN (...)") per batch (the SQL text built in the call\'s time): '
            "a new version with deletion files per call; durable; searched through the "
            "IvfPq index built after the ingest"
        ),
        lambda: shutil.rmtree(path),
    )
    return Ingest("lancedb Table.add", len(x), per, sum(per), note), live


class Deletes(NamedTuple):
    label: str
    sizes: List[int]  # ids per batch
    batch_s: List[float]  # seconds per batch
    removed: int  # what the library said it removed, summed
    rows: int  # rows the library reports after the deletes
    returned: int  # deleted ids among the check's results
    results: int  # ids the check's searches returned
    note: str

    @property
    def median(self) -> float:
        return float(np.median([n / t for n, t in zip(self.sizes, self.batch_s)]))

    @property
    def total(self) -> float:
        return sum(self.sizes) / sum(self.batch_s)


def measure_deletes(live: Live, x: np.ndarray, ids: np.ndarray, batch: int) -> Deletes:
    """Deletes ``ids`` from ``live`` in batches of ``batch``, then searches the
    vectors of the first CHECK_QUERIES of them (each would find itself first
    were it still there) and counts the deleted ids returned."""
    sizes, per, removed = [], [], 0
    for s in range(0, len(ids), batch):
        chunk = ids[s : s + batch]
        t = time.perf_counter()
        removed += live.delete(chunk)
        per.append(time.perf_counter() - t)
        sizes.append(len(chunk))
    found = [np.asarray(live.search(q)).astype(np.int64) for q in x[ids[:CHECK_QUERIES]]]
    every = np.concatenate(found)
    returned = int(np.isin(every, ids).sum())
    return Deletes(live.label, sizes, per, removed, live.count(), returned, len(every), live.note())


def part_ingest(name: str, x: np.ndarray, tmp: Path, delete_batch: int) -> Dict[str, Ingest]:
    dim = x.shape[1]
    rng = np.random.default_rng(DELETE_SEED)
    doomed = rng.choice(len(x), round(DELETE_SHARE * len(x)), replace=False).astype(np.int64)
    print(f"\n### {name}: {len(x)} x {dim}, batches of {BATCH} (load average {loadavg()})\n")
    print("| ingest | median of per-batch vectors/s | total vectors/s | slowest batch ms | notes |")
    print("|---|---|---|---|---|")
    runs: Dict[str, Ingest] = {}
    deletes: List[Deletes] = []
    jobs: List[Tuple[str, Callable[[], Tuple[Ingest, Live]]]] = [
        ("svve", lambda: ingest_svve(x, tmp, True)),
        ("svve-1commit", lambda: ingest_svve(x, tmp, False)),
        ("hnswlib", lambda: ingest_hnswlib(x, tmp)),
        ("usearch", lambda: ingest_usearch(x, tmp)),
        ("faiss", lambda: ingest_faiss(x)),
        ("lancedb", lambda: ingest_lancedb(x, tmp)),
    ]
    for key, job in jobs:
        try:
            r, live = job()
        except ImportError as e:
            print(f"| {key} | - | - | - | not installed ({e}): skipped |", flush=True)
            continue
        runs[key] = r
        print(
            f"| {r.label} | {r.median:,.0f} | {r.total:,.0f} | {max(r.batch_s) * 1e3:,.0f} "
            f"| {r.note} |",
            flush=True,
        )
        try:
            deletes.append(measure_deletes(live, x, doomed, delete_batch))
        finally:
            live.close()
    print_deletes(deletes, len(x), len(doomed), delete_batch)
    return runs


def print_deletes(deletes: List[Deletes], n: int, doomed: int, batch: int) -> None:
    calls = -(-doomed // batch)
    print(
        f"\nDeletes, right after each ingest above, on the index it left: {doomed} of the "
        f"{n} rows ({DELETE_SHARE:.0%}; numpy default_rng({DELETE_SEED}).choice, the same ids "
        f"in the same random order for every library) in {calls} batches of {batch} ids, "
        "one thread. Per-batch rate = ids / seconds of that batch's call(s); total = ids / "
        f"sum of every batch. Check: then {CHECK_QUERIES} searches (k=10) with the vectors "
        "of the first deleted rows as queries (each would find itself first were it still "
        "there); deleted ids returned counts deleted ids among the results.\n"
    )
    print(
        "| deletes | median of per-batch deletes/s | total deletes/s | slowest batch ms "
        "| removed | rows after | deleted ids returned | notes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for d in deletes:
        print(
            f"| {d.label} | {d.median:,.0f} | {d.total:,.0f} | {max(d.batch_s) * 1e3:,.1f} "
            f"| {d.removed} | {d.rows} | {d.returned} (of {d.results}) | {d.note} |",
            flush=True,
        )
    bad = [f"{d.label} {d.returned}" for d in deletes if d.returned]
    short = [f"{d.label} {d.removed}" for d in deletes if d.removed != doomed]
    print(
        f"\ndeleted ids returned: {'0 for every library' if not bad else ', '.join(bad)}"
        f"{'' if not short else '; removed fewer than ' + str(doomed) + ': ' + ', '.join(short)}"
    )


# ------------------------------------------------------------- 2. recall


class Case(NamedTuple):
    label: str
    rows: int
    recalls: Tuple[float, float]  # at TARGETS


def measure_case(label: str, searcher, segs: str, queries, gt, n: int) -> Case:
    cells, recalls = [], []
    for target in TARGETS:
        r, qps = recall_qps(searcher, queries, gt, target)
        recalls.append(r)
        cells.append(f"{r:.4f} | {qps:,.0f}")
    print(f"| {label} | {n} | {segs} | {' | '.join(cells)} |", flush=True)
    return Case(label, n, (recalls[0], recalls[1]))


def compare(
    name: str,
    path: Path,
    base: np.ndarray,
    unit_base: np.ndarray,
    queries: np.ndarray,
    delete: Optional[np.ndarray],
    tmp: Path,
) -> Dict[str, Case]:
    """The collection at ``path`` (after deleting ``delete``) before and after
    compaction, and a one-shot build of the same live rows."""
    col = svve_core.Collection.open(path)
    all_ids = np.arange(len(base), dtype=np.int64)
    note = ""
    if delete is not None:
        t = time.perf_counter()
        gone = col.delete(delete)
        col.commit()
        note = f" ({gone} deleted, delete + commit {time.perf_counter() - t:.2f} s)"
    live = np.setdiff1d(all_ids, delete) if delete is not None else all_ids
    assert len(col) == len(live), (len(col), len(live))
    gt = exact_top10(unit_base, live, queries)
    print(f"| **{name}**{note} | | | | | | |")
    out = {
        "before": measure_case(
            "live, 10 batches", col, segments(col.info()), queries, gt, len(live)
        )
    }
    t = time.perf_counter()
    col.compact()
    compact_s = time.perf_counter() - t
    label = f"live, after compact() ({compact_s:.1f} s)"
    out["after"] = measure_case(label, col, segments(col.info()), queries, gt, len(live))
    col.close()
    one = tmp / f"oneshot-{name.split()[0]}.svve"
    t = time.perf_counter()
    svve_core.build_index(str(one), base[live], ids=live, metric="cosine")
    label = f"one-shot build_index ({time.perf_counter() - t:.1f} s)"
    out["oneshot"] = measure_case(
        label, svve_core.SearchEngine(str(one)), "1", queries, gt, len(live)
    )
    return out


def part_recall(base: np.ndarray, queries: np.ndarray, tmp: Path) -> Dict[str, Dict[str, Case]]:
    n = len(base)
    unit_base = unit(base)
    print(
        f"\n## 2. Recall: debian {n} x {base.shape[1]} built in 10 batches (add + commit each) "
        f"vs one-shot\n"
    )
    print(
        f"recall@10 against numpy exact top-10 over the live rows, {len(queries)} queries; "
        "QPS = single queries, one thread. Segments: rows (-deleted) of each, oldest first. "
        f"Load average before: {loadavg()}.\n"
    )
    print("| case | live rows | segments | recall@10 t=0.95 | QPS | recall@10 t=0.99 | QPS |")
    print("|---|---|---|---|---|---|---|")
    batched = tmp / "batched"
    col = svve_core.Collection.create(batched, dim=base.shape[1], metric="cosine")
    ids = np.arange(n, dtype=np.int64)
    t = time.perf_counter()
    for chunk in np.array_split(ids, 10):
        col.add(base[chunk], chunk)
        col.commit()
    build_s = time.perf_counter() - t
    col.close()
    del col
    copies = {f: tmp / f"batched-del{round(f * 100)}" for f in (0.1, 0.5)}
    for path in copies.values():
        shutil.copytree(batched, path)
    rng = np.random.default_rng(0)
    results = {
        f"all rows, built in 10 batches in {build_s:.1f} s": compare(
            "all rows", batched, base, unit_base, queries, None, tmp
        )
    }
    for frac, path in copies.items():
        delete = np.sort(rng.choice(n, round(frac * n), replace=False)).astype(np.int64)
        name = f"{round(frac * 100)}% deleted at random"
        results[name] = compare(name, path, base, unit_base, queries, delete, tmp)
        shutil.rmtree(path)
    return results


# ------------------------------------------------- 3. latency while ingesting


def _writer(path: str, dataset: str, start: int, stop: int, ready, go, done, out) -> None:
    """Another process: ingests rows ``start:stop`` of ``dataset`` in batches of
    1,000 with a commit each, on one thread, once ``go`` is set."""
    svve_core.set_num_threads(1)
    x = load_dataset(dataset).base[start:stop]
    col = svve_core.Collection.open(path)
    ready.set()
    go.wait()
    per = []
    t0 = time.perf_counter()
    for s, e in batches(len(x)):
        t = time.perf_counter()
        col.add(x[s:e], np.arange(start + s, start + e, dtype=np.int64))
        col.commit()
        per.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    info = col.info()
    done.set()
    out.put(
        {
            "batch_s": per,
            "total_s": total,
            "generation": info.generation,
            "segs": segments(info),
            "build": svve_core.build_id(),
        }
    )


def lat_row(label: str, lat: np.ndarray, note: str = "") -> Tuple[float, float]:
    us = lat * 1e6
    p50, p99 = np.percentile(us, 50), np.percentile(us, 99)
    print(
        f"| {label} | {len(us)} | {p50:.0f} | {p99:.0f} | {np.percentile(us, 99.9):.0f} "
        f"| {us.max():,.0f} | {len(us) / lat.sum():,.0f} | {note} |",
        flush=True,
    )
    return p50, p99


class Round(NamedTuple):
    lat: np.ndarray  # seconds of each single query while the writer ran
    wall: float
    refresh_s: np.ndarray
    moved: int
    writer: dict
    control: np.ndarray  # the same reader after the ingest, no writer
    info: svve_core.CollectionInfo  # the reader's, after a last refresh()
    recall: float  # its recall@10 at the default target, against exact top-10 of every row


def ingest_round(
    template: Path, path: Path, dataset: str, n: int, queries, gt, count: int
) -> Round:
    """Copies the starting collection ``template`` to ``path``; a writer in
    another process ingests its rows up to ``n`` while this process queries a
    reader of it; then the same reader again, without the writer."""
    shutil.copytree(template, path)
    ro = svve_core.Collection.open(path, readonly=True)
    start = len(ro)
    ctx = mp.get_context("spawn")
    ready, go, done, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    writer = ctx.Process(
        target=_writer, args=(str(path), dataset, start, n, ready, go, done, out), daemon=True
    )
    writer.start()
    try:
        if not ready.wait(120):
            raise RuntimeError("the writer process did not start")
        refreshes: List[Tuple[float, bool]] = []
        stop = threading.Event()

        def refresher() -> None:
            due = time.perf_counter()
            while not stop.is_set():
                t = time.perf_counter()
                moved = ro.refresh()
                refreshes.append((time.perf_counter() - t, moved))
                due += 0.1
                stop.wait(max(0.0, due - time.perf_counter()))

        thread = threading.Thread(target=refresher, daemon=True)
        for q in queries[:100]:
            ro.search(q, 10)
        lat: List[float] = []
        thread.start()
        go.set()
        i = 0
        t_start = time.perf_counter()
        while not done.is_set():
            q = queries[i % len(queries)]
            t = time.perf_counter()
            ro.search(q, 10)
            lat.append(time.perf_counter() - t)
            i += 1
        wall = time.perf_counter() - t_start
        stop.set()
        thread.join()
        w = out.get(timeout=60)
        writer.join(60)
    finally:
        if writer.is_alive():
            writer.terminate()
    ro.refresh()
    control = single_queries(lambda q: ro.search(q, 10), queries, count)
    info = ro.info()
    found, _ = ro.search_batch(queries, 10)
    if w["build"] != svve_core.build_id():
        print(f"WARNING: the writer process loaded another svve build ({w['build']})")
    assert info.n == n, f"the reader sees {info.n} rows, {n} were committed"
    r = Round(
        np.array(lat),
        wall,
        np.array([x[0] for x in refreshes]),
        sum(x[1] for x in refreshes),
        w,
        control,
        info,
        recall(found, gt, 10),
    )
    ro.close()
    shutil.rmtree(path)
    return r


def part_latency(
    dataset: str, base: np.ndarray, queries: np.ndarray, count: int, rounds: int, tmp: Path
) -> Tuple[Tuple[float, float], Tuple[float, float], Tuple[float, float]]:
    n = len(base)
    half = n // 2
    ids = np.arange(n, dtype=np.int64)
    gt = exact_top10(unit(base), ids, queries)
    print(f"\n## 3. Query latency while another process ingests (debian, {half} -> {n} rows)\n")
    print(
        "The reader runs single queries (k=10, default SearchParams, one thread) in a loop and "
        "refresh()es every 100 ms on a second thread; the writer (another process, one thread) "
        f"adds rows {half}..{n} in batches of {BATCH} with a commit each, as fast as it can. "
        f"{rounds} rounds, each from a copy of the same starting collection (one round's ingest "
        "lasts seconds, so one round's tail is at the mercy of whatever else the machine does); "
        "after each, the same reader is queried again without the writer (the control: same "
        f"segments, no contention). The machine has {os.cpu_count()} cores: writer and reader "
        f"each keep one busy. Load average before: {loadavg()}.\n"
    )
    template = tmp / "ingest-start"
    col = svve_core.Collection.create(template, dim=base.shape[1], metric="cosine")
    col.add(base[:half], ids[:half])
    col.commit()
    start_segs = segments(col.info())
    col.close()
    del col
    static0, static1 = tmp / "static-half.svve", tmp / "static-all.svve"
    svve_core.build_index(str(static0), base[:half], ids=ids[:half], metric="cosine")
    svve_core.build_index(str(static1), base, ids=ids, metric="cosine")
    # The same rows as the reader: static indexes of the row counts it passes
    # through on its way from `half` to `n`, queried equally and pooled.
    sizes = np.linspace(half, n, SAME_ROWS_STEPS).round().astype(int)
    same_rows = []
    for m in sizes:
        path = tmp / f"static-{m}.svve"
        svve_core.build_index(str(path), base[:m], ids=ids[:m], metric="cosine")
        same_rows.append(svve_core.SearchEngine(str(path)))

    def same_rows_queries() -> np.ndarray:
        share = count // len(same_rows)
        return np.concatenate(
            [single_queries(lambda q, e=e: e.search(q, 10), queries, share) for e in same_rows]
        )

    print("| searcher | queries | p50 us | p99 us | p99.9 us | max us | QPS | notes |")
    print("|---|---|---|---|---|---|---|---|")
    engine = svve_core.SearchEngine(str(static0))
    static_a = single_queries(lambda q: engine.search(q, 10), queries, count)
    lat_row(f"static SearchEngine, {half} rows, before the rounds", static_a)
    same_a = same_rows_queries()
    sizes_text = ", ".join(f"{m}" for m in sizes)
    lat_row(f"static SearchEngines of {sizes_text} rows, pooled, before the rounds", same_a)
    ro = svve_core.Collection.open(template, readonly=True)
    lat_row(
        f"reader, {half} rows, no writer",
        single_queries(lambda q: ro.search(q, 10), queries, count),
        f"segments {start_segs}",
    )
    ro.close()
    done: List[Round] = []
    for k in range(rounds):
        path = tmp / f"ingesting-{k}"
        r = ingest_round(template, path, dataset, n, queries, gt, count // rounds)
        done.append(r)
        ms = r.refresh_s * 1e3
        w = r.writer
        lat_row(
            f"round {k + 1}: reader while ingesting",
            r.lat,
            f"{r.wall:.1f} s; writer {(n - half) / w['total_s']:,.0f} vectors/s, slowest "
            f"commit {max(w['batch_s']) * 1e3:,.0f} ms; {len(ms)} refresh() calls, {r.moved} "
            f"moved, each p50 {np.median(ms):.2f} / max {ms.max():.1f} ms; load {loadavg()}",
        )
    ingest = lat_row(
        f"all {rounds} rounds: reader while ingesting, {half} -> {n} rows",
        np.concatenate([r.lat for r in done]),
        "the figure the target reads",
    )
    last = done[-1]
    lat_row(
        f"all {rounds} rounds: the same readers after the ingest, no writer",
        np.concatenate([r.control for r in done]),
        f"control; segments {segments(last.info)}",
    )
    static_b = single_queries(lambda q: engine.search(q, 10), queries, count)
    lat_row(f"static SearchEngine, {half} rows, after the rounds", static_b)
    start = lat_row(
        f"static SearchEngine, {half} rows, before + after",
        np.concatenate([static_a, static_b]),
        "the stricter reference: the rows the reader starts with",
    )
    same_b = same_rows_queries()
    lat_row(f"static SearchEngines of {sizes_text} rows, pooled, after the rounds", same_b)
    static = lat_row(
        f"static SearchEngines of {sizes_text} rows, pooled, before + after",
        np.concatenate([same_a, same_b]),
        "the reference the target reads: the rows the reader holds during the ingest",
    )
    engine1 = svve_core.SearchEngine(str(static1))
    lat_row(
        f"static SearchEngine, {n} rows",
        single_queries(lambda q: engine1.search(q, 10), queries, count),
        "context: the final row count",
    )
    w = last.writer
    wrate = [(e - s) / t for (s, e), t in zip(batches(n - half), w["batch_s"])]
    print(
        f"\nlast round's writer: {n - half} rows in {len(w['batch_s'])} commits, "
        f"{w['total_s']:.1f} s (per batch median {np.median(wrate):,.0f}/s), generation "
        f"{w['generation']}, segments {w['segs']}; its reader after a last refresh(): "
        f"n={last.info.n} (expected {n}), generation {last.info.generation}; recall@10 of the "
        f"readers after the ingest, t=0.95: {', '.join(f'{r.recall:.4f}' for r in done)}"
    )
    return static, start, ingest


# ------------------------------------------------------------------ report


def verdict(ok: bool, how: str) -> str:
    return f"{'met' if ok else 'MISSED'} ({how})"


def targets(ingest: Dict[int, Dict[str, Ingest]], cases, lat) -> None:
    print("\n## Targets\n")
    print("| target | measured | verdict |")
    print("|---|---|---|")
    for dim, runs in ingest.items():
        goal = INGEST_TARGET[dim]
        for key in ("svve", "svve-1commit"):
            if key not in runs:
                continue
            r = runs[key]
            for what, v in (("total", r.total), ("median batch", r.median)):
                print(
                    f"| {dim}-d {r.label}, {what} >= {goal:,.0f}/s | {v:,.0f}/s | "
                    f"{verdict(v >= goal, f'{v / goal:.2f}x the target')} |"
                )
            for peer in ("hnswlib", "usearch"):
                if peer in runs:
                    p = runs[peer]
                    print(
                        f"| {dim}-d {r.label} faster than {p.label} (total) | "
                        f"{r.total:,.0f} vs {p.total:,.0f}/s | "
                        f"{verdict(r.total > p.total, f'{r.total / p.total:.2f}x')} |"
                    )
    for name, c in cases.items():
        one = c["oneshot"].recalls
        for stage in ("before", "after"):
            gap = RECALL_GAP[stage]
            for t, live, ref in zip(TARGETS, c[stage].recalls, one):
                d = live - ref
                print(
                    f"| {name.split(',')[0]}, t={t}, {stage} compaction: within {gap} of "
                    f"one-shot | {live:.4f} vs {ref:.4f} ({d:+.4f}) | "
                    f"{verdict(d >= -gap, f'{d + gap:+.4f} margin')} |"
                )
    same, start, (i50, i99) = lat
    for (s50, s99), what in ((same, "the same rows"), (start, "the starting rows, stricter")):
        ratio = i99 / s99
        print(
            f"| p99 while ingesting <= {P99_RATIO}x static p99 ({what}) | {i99:.0f} vs "
            f"{s99:.0f} us ({ratio:.2f}x; p50 {i50:.0f} vs {s50:.0f} us) | "
            f"{verdict(ratio <= P99_RATIO, f'{ratio / P99_RATIO:.2f}x the limit')} |"
        )


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", default=DEFAULT_DATASET)
    ap.add_argument("--quick", action="store_true", help="small slices: the smoke test")
    ap.add_argument("--out", help=f"report file (default without --quick: {RESULTS})")
    a = ap.parse_args(argv)
    plan = QUICK if a.quick else FULL
    out = Path(a.out) if a.out else (None if a.quick else RESULTS)
    svve_core.set_num_threads(1)
    ds = load_dataset(a.dataset)
    if ds.base is None:
        ap.error("the dataset needs base.npy")
    ada = load_dataset(synthetic_dir(plan.ingest_1536, kind="ada"))
    assert ada.base is not None
    tee = Tee(out)
    t_all = time.perf_counter()
    with contextlib.redirect_stdout(tee):  # type: ignore[type-var]
        args = " ".join(sys.argv[1:] if argv is None else argv)
        print(
            "# Live collections: ingest and deletes, recall in batches, latency while ingesting\n"
        )
        exe = sys.executable
        if exe.startswith(os.getcwd()):
            exe = os.path.relpath(exe)
        print(f"command: {exe} -m benchmarks.studies.live {args}".rstrip())
        print("(the interpreter that `uv run --group bench python` runs in this checkout)")
        m = machine_info()
        versions = {k: v for k, v in m["versions"].items() if v}
        for dist in ("lancedb", "pyarrow"):
            with contextlib.suppress(Exception):
                from importlib import metadata

                versions[dist] = metadata.version(dist)
        print(
            f"machine: {m['cpu']}, {m['cores']} cpus, {m['memory_gb']} GiB, {m['os']}, "
            f"load {loadavg()}"
        )
        print(
            f"svve-core {m['svve_core']} (build {m['svve_build_sha256']}, commit "
            f"{m['git_commit']}{', uncommitted core changes' if m['git_dirty_core'] else ''}), "
            f"kernels {m['svve_isa']}; python {m['python']}, numpy {m['numpy']}"
        )
        print("peers: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
        print(
            f"threads: svve_core.set_num_threads(1); hnswlib num_threads=1, usearch threads=1, "
            f"faiss omp_set_num_threads(1), LANCE_CPU_THREADS={os.environ['LANCE_CPU_THREADS']}"
            f"{'; --quick: small slices' if a.quick else ''}"
        )
        with tempfile.TemporaryDirectory(prefix="svve-live-") as tmp_s:
            tmp = Path(tmp_s)
            print(f"files: {tmp} (the machine's disk)")
            print("\n## 1. Ingest: one writer, batches of 1,000, one thread")
            print(
                "Per-batch rate = rows / seconds of that batch's call(s); total = rows / "
                "(sum of every batch, plus the final commit where there is one). svve commits "
                "are durable (fsynced); hnswlib, usearch and faiss ingest into memory. Each "
                "dataset's deletes table follows its ingest table.\n"
            )
            x384 = ds.base[: plan.ingest_384] if plan.ingest_384 else ds.base
            ingest = {384: part_ingest(f"{ds.name} (384-d)", x384, tmp, plan.delete_batch)}
            meta = ada.meta
            ingest[1536] = part_ingest(
                f"ada-like stand-in (benchmarks.harness.synthetic kind 'ada', seed "
                f"{meta.get('seed')}, {ADA}, mean pairwise cosine "
                f"{meta.get('mean_pairwise_cosine')})",
                ada.base,
                tmp,
                plan.delete_batch,
            )
            base = ds.base[: plan.rows] if plan.rows else ds.base
            queries = ds.queries[: plan.queries]
            cases = part_recall(base, queries, tmp)
            lat = part_latency(a.dataset, base, queries, plan.static_queries, plan.rounds, tmp)
        targets(ingest, cases, lat)
        print(f"\nwall time of the study: {time.perf_counter() - t_all:.0f} s")
    if out:
        print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
