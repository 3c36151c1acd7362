"""One benchmark job in its own process (started by ``benchmarks.run``), so
memory and thread settings of one library never leak into another's figures.

    python -m benchmarks.harness.worker JOB.json RESULT.jsonl

Jobs (``job["job"]``): ``build`` (build and save one index), ``search``
(open a saved index in a fresh process, then one record per query setting:
recall, single-query latency on one thread, batch QPS on all threads),
``threads`` (svve: single-query latency while T Python threads share one
engine), ``loadgen`` (one of P processes doing the same), ``memory`` (svve:
RSS sampled over many single queries). Each record is appended to RESULT as
one JSON line as soon as it exists, so a job killed at its time limit keeps
what it measured.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import List

import numpy as np

from benchmarks.harness import adapters
from benchmarks.harness.common import dir_bytes, latency_summary, loadavg, memory, peak_rss_mb
from svve_core.datasets import load_dataset, recall, recall_per_query


def _emit(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def job_build(job: dict, out: str) -> None:
    base = load_dataset(job["dataset"]).base
    ad = adapters.make(job["adapter"], base.shape[1], job["build"])
    ad.set_threads(job.get("threads") or os.cpu_count() or 1)
    rss0 = memory().get("rss_mb")
    load0 = loadavg()
    start = time.perf_counter()
    ad.build(base, job["index_dir"])
    secs = time.perf_counter() - start
    _emit(
        out,
        {
            "build_s": secs,
            "index_bytes": dir_bytes(job["index_dir"]),
            "build_peak_rss_mb": peak_rss_mb(),
            "rss_before_build_mb": rss0,
            "loadavg": [load0, loadavg()],
        },
    )


def single_loop(ad, queries: np.ndarray, k: int, budget_s: float, min_queries: int):
    """One query per call on this thread, as a service makes them. Stops after
    ``budget_s`` seconds (at least ``min_queries`` queries)."""
    for q in queries[: min(20, len(queries))]:  # warm caches and thread-local buffers
        ad.search(q, k)
    ids = np.full((len(queries), k), -1, np.int64)
    lat = np.empty(len(queries))
    spent = 0.0
    done = 0
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for i, q in enumerate(queries):
        t = time.perf_counter()
        found = ad.search(q, k)
        lat[i] = time.perf_counter() - t
        ids[i, : len(found)] = found[:k]
        spent += lat[i]
        done = i + 1
        if spent > budget_s and done >= min_queries:
            break
    # Share of one CPU this thread got: well below 1 means other processes took the core.
    cpu_share = (time.thread_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    return ids[:done], lat[:done], cpu_share


def job_search(job: dict, out: str) -> None:
    # The base set is not loaded: the index holds what it needs, and the memory
    # figures are the index's alone.
    data = load_dataset(job["dataset"], with_base=False)
    queries, gt = data.queries, data.gt
    dim = queries.shape[1]
    k = job["k"]
    queries = queries[: job.get("queries") or len(queries)]
    ad = adapters.make(job["adapter"], dim, job["build"])
    before = memory()
    start = time.perf_counter()
    ad.load(job["index_dir"])
    load_s = time.perf_counter() - start
    after = memory()
    cpus = os.cpu_count() or 1
    for qp in job["settings"]:
        ad.set_query(**qp)
        load0 = loadavg()
        ad.set_threads(1)
        ids, lat, share = single_loop(ad, queries, k, job["budget_s"], job["min_queries"])
        single = {**latency_summary(lat), "cpu_share": share}
        ad.set_threads(cpus)
        ad.search_batch(queries[: min(50, len(queries))], k)  # warm-up
        t, cpu0 = time.perf_counter(), time.process_time()
        batch_ids = ad.search_batch(queries, k)
        batch_s = time.perf_counter() - t
        batch_share = (time.process_time() - cpu0) / batch_s / cpus
        rec = {
            "query": qp,
            "recall": recall(batch_ids, gt, k),
            # 10th percentile of per-query recall: the recall-target table reports it.
            "recall_p10": float(np.percentile(recall_per_query(batch_ids, gt, k), 10)),
            "recall_single": recall(ids, gt, k),
            "single": single,
            "batch": {
                "qps": len(queries) / batch_s,
                "threads": cpus,
                "n": len(queries),
                "cpu_share": batch_share,
            },
            "load_s": load_s,
            "mem_before_load": before,
            "mem_after_load": after,
            "mem_after_search": memory(),
            "loadavg": [load0, loadavg()],
        }
        stats = ad.stats(queries, k)
        if stats:
            rec["stats"] = stats
        _emit(out, rec)


def _open_svve(job: dict):
    return adapters.open_svve(os.path.join(job["index_dir"], "index.svve"))[0]


def job_threads(job: dict, out: str) -> None:
    """T Python threads, one engine, each a loop of single queries for ``seconds``."""
    import svve_core

    queries = load_dataset(job["dataset"], with_base=False).queries
    engine = _open_svve(job)
    params = svve_core.SearchParams(**job.get("params", {}))
    k, nthreads, seconds = job["k"], job["threads"], job["seconds"]
    for q in queries[:20]:
        engine.search(q, k, params)
    lats: List[List[float]] = [[] for _ in range(nthreads)]
    barrier = threading.Barrier(nthreads + 1)

    def worker(slot: int) -> None:
        rng = np.random.default_rng(slot)
        order = rng.permutation(len(queries))
        mine = lats[slot]
        barrier.wait()
        stop = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < stop:
            q = queries[order[i % len(order)]]
            t = time.perf_counter()
            engine.search(q, k, params)
            mine.append(time.perf_counter() - t)
            i += 1

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(nthreads)]
    for t in threads:
        t.start()
    load0 = loadavg()
    barrier.wait()
    start, cpu0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cpus = min(nthreads, os.cpu_count() or 1)
    cpu_share = (time.process_time() - cpu0) / wall / cpus
    all_lat = np.concatenate([np.asarray(x) for x in lats])
    summary = latency_summary(all_lat)
    _emit(
        out,
        {
            "threads": nthreads,
            "seconds": wall,
            "total_qps": len(all_lat) / wall,
            "cpu_share": cpu_share,
            "latency": summary,
            "per_thread_queries": [len(x) for x in lats],
            "mem": memory(),
            "loadavg": [load0, loadavg()],
        },
    )


def job_loadgen(job: dict, out: str) -> None:
    """One of P processes: open the shared index, wait for the common start, loop."""
    import svve_core

    queries = load_dataset(job["dataset"], with_base=False).queries
    engine = _open_svve(job)
    params = svve_core.SearchParams(**job.get("params", {}))
    k = job["k"]
    for q in queries[:20]:
        engine.search(q, k, params)
    order = np.random.default_rng(job["slot"]).permutation(len(queries))
    delay = job["start_at"] - time.time()
    if delay > 0:
        time.sleep(delay)
    lat = []
    start, cpu0 = time.perf_counter(), time.thread_time()
    stop = start + job["seconds"]
    i = 0
    while time.perf_counter() < stop:
        q = queries[order[i % len(order)]]
        t = time.perf_counter()
        engine.search(q, k, params)
        lat.append(time.perf_counter() - t)
        i += 1
    wall = time.perf_counter() - start
    share = (time.thread_time() - cpu0) / wall
    np.save(job["lat_path"], np.asarray(lat, np.float64))
    _emit(
        out,
        {
            "slot": job["slot"],
            "seconds": wall,
            "queries": len(lat),
            "cpu_share": share,
            "mem": memory(),
        },
    )


def job_memory(job: dict, out: str) -> None:
    """RSS sampled every ``every`` single queries over ``total`` queries."""
    import svve_core

    queries = load_dataset(job["dataset"], with_base=False).queries
    engine = _open_svve(job)
    params = svve_core.SearchParams(**job.get("params", {}))
    k, total, every = job["k"], job["total"], job["every"]
    samples = [{"queries": 0, **memory()}]
    start = time.perf_counter()
    for i in range(total):
        engine.search(queries[i % len(queries)], k, params)
        if (i + 1) % every == 0:
            samples.append({"queries": i + 1, **memory()})
    _emit(out, {"samples": samples, "seconds": time.perf_counter() - start, "total": total})


def _spin(n: int) -> int:
    """The reference workload: pure integer arithmetic, no memory traffic."""
    x = 0
    for i in range(n):
        x = (x * 1103515245 + i) & 0xFFFFFFFF
    return x


def _reference_rate(procs: int, n: int = 3_000_000) -> float:
    """Spin loops per second with ``procs`` processes each running one."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        pool.map(_spin, [1000] * procs)  # start every process first
        start = time.perf_counter()
        pool.map(_spin, [n] * procs)
        return procs / (time.perf_counter() - start)


def job_scaling(job: dict, out: str) -> None:
    """Parallel speedup of svve's batch search (1 thread vs all) next to an
    embarrassingly parallel reference (1 process vs one per CPU) measured
    in the same process, best of ``repeat`` interleaved rounds."""
    import svve_core

    queries = load_dataset(job["dataset"], with_base=False).queries
    engine = _open_svve(job)
    params = svve_core.SearchParams(**job.get("params", {}))
    cpus, k, repeat = os.cpu_count() or 1, job["k"], job.get("repeat", 5)

    def batch_qps(threads: int) -> float:
        svve_core.set_num_threads(threads)
        engine.search_batch(queries[:50], k, params)
        t = time.perf_counter()
        engine.search_batch(queries, k, params)
        return len(queries) / (time.perf_counter() - t)

    # Rounds interleave the four measurements so that drift in the machine's
    # speed hits all of them alike; each figure is its best round.
    load0 = loadavg()
    ref, svve = [0.0, 0.0], [0.0, 0.0]
    for _ in range(repeat):
        for i, p in enumerate((1, cpus)):
            ref[i] = max(ref[i], _reference_rate(p))
            svve[i] = max(svve[i], batch_qps(p))
    _emit(
        out,
        {
            "cpus": cpus,
            "reference_rate": ref,
            "reference_speedup": ref[1] / ref[0],
            "svve_batch_qps": svve,
            "svve_speedup": svve[1] / svve[0],
            "efficiency": (svve[1] / svve[0]) / (ref[1] / ref[0]),
            "loadavg": [load0, loadavg()],
        },
    )


JOBS = {
    "build": job_build,
    "scaling": job_scaling,
    "search": job_search,
    "threads": job_threads,
    "loadgen": job_loadgen,
    "memory": job_memory,
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        job = json.load(f)
    JOBS[job["job"]](job, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
