"""The benchmark suite: svve-core against faiss, hnswlib, usearch, ScaNN, glass,
rabitqlib, zvec and VSAG, ann-benchmarks style. One entry point
(``benchmarks/run.py`` calls :func:`main`):

    uv run --group bench python -m benchmarks.run --dataset ../shared/datasets/debian-minilm-384 \\
        --out benchmarks/results/debian
    uv run --group bench python -m benchmarks.run --synthetic 10000,100000,1000000 \\
        --out benchmarks/results/synthetic
    uv run --group bench python -m benchmarks.run --synthetic 1000000 --synthetic-kind clustered \\
        --out benchmarks/results/clustered
    uv run --group bench python -m benchmarks.run --quick --out "$(mktemp -d)"

For each dataset, each library and build setting is built in its own process,
then opened in a fresh process that sweeps its query settings: recall@10
against the dataset's ground truth, single-query latency (a Python loop, one
query per call, one thread) and batch QPS (all threads). Then svve alone under
load (1/2/4/8 threads, 1/2/4 processes, RSS over 100k queries) and the stage
ablation (``benchmarks.studies.ablation``). Every record goes to
``OUT/runs.jsonl``; ``OUT/report.md`` and the PNG plots are written from it at
the end (``python -m benchmarks.report`` redoes that from the records alone).

``--synthetic N[,N...]`` writes (once) seeded synthetic sets of N rows under
``benchmarks/.cache/`` and runs them smallest first; build times measured at a
smaller N predict the next one, and a build predicted to exceed
``--build-budget`` seconds is skipped and recorded as skipped.
``--synthetic-kind`` picks the generator's kind (``default``: 384-d
overlapping clusters; ``clustered``: 384-d well-separated clusters; ``ada``:
1536-d ada-002 stand-in); keep one kind per ``--out``, since build times are
predicted from the earlier records in it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from benchmarks.harness import adapters
from benchmarks.harness.common import latency_summary, loadavg, machine_info
from svve_core.datasets import load_dataset

BENCHMARKS = Path(__file__).resolve().parents[1]  # benchmarks/
REPO = BENCHMARKS.parent  # where the worker processes start (python -m benchmarks...)
CACHE = BENCHMARKS / ".cache"
# Exact searches: recall@10 must be 1.0 (up to float ties), or the harness is wrong.
EXACT = {"faiss-flat": {}, "svve": {"exact": True}}
# svve's recall targets (SearchParams.target_recall) run in every full plan.
TARGETS = (0.9, 0.95, 0.99)


def _ef(values):
    return [{"ef": v} for v in values]


def plan(n: int, quick: bool) -> List[dict]:
    """(adapter, build, query settings) per job, cheap builds first."""
    leaves = max(1, round(math.sqrt(n)))
    if quick:
        svve = [
            {"exact": True},
            {},
            {"target_recall": 0.9},
            {"expand_ratio": 0.2},
            {"expand_ratio": 1.2, "candidates": 400},
        ]
        return [
            {"adapter": "svve", "build": {}, "settings": svve},
            {"adapter": "faiss-flat", "build": {}, "settings": [{}]},
            {"adapter": "faiss-ivfflat", "build": {}, "settings": [{"nprobe": 4}, {"nprobe": 16}]},
            {"adapter": "faiss-binary+rescore", "build": {}, "settings": [{"C": 100}]},
            {
                "adapter": "faiss-ivfrabitq",
                "build": {},
                "settings": [{"nprobe": 16, "k_factor": 10}],
            },
            {"adapter": "hnswlib", "build": {"M": 16, "efc": 200}, "settings": _ef([32, 128])},
            {"adapter": "usearch", "build": {"dtype": "f32"}, "settings": _ef([32, 128])},
            {
                "adapter": "scann",
                "build": {},
                "settings": [{"leaves": max(1, leaves // 10), "reorder": 100}],
            },
            # Of the newer peers only the two cheap builds (about 3 s each with
            # their processes); rabitq-qg, zvec and vsag take 6-9 s each to
            # build at 10k and are left to the full plan.
            {"adapter": "rabitq-ivf", "build": {"nbits": 9}, "settings": [{"nprobe": 16}]},
            {"adapter": "glass", "build": {"R": 32, "L": 200}, "settings": [{"ef": 64, "rf": 1}]},
        ]
    # Probes as a fraction of the partitions: fixed (no expansion), and with
    # centroid expansion capped at twice the base probes; candidates grow
    # with the probes. Plus the defaults.
    # Expansion runs with two candidate counts: bound skipping rescores few
    # of them, but each still costs selection time.
    probe_fracs = [0.01, 0.02, 0.03, 0.04, 0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5]
    # The recall targets (calibrated at build; 0.95 is the default) and a
    # fixed sweep that sets every effort knob, the frontier they are judged by.
    svve = [{"exact": True}] + [{"target_recall": t} for t in TARGETS]
    for f in probe_fracs:
        c = 100 if f <= 0.05 else 200 if f <= 0.12 else 400 if f <= 0.25 else 1000
        svve.append({"probe_frac": f, "expansion": False, "candidates": c})
        for cc in (c // 2, c):
            svve.append({"probe_frac": f, "expand_x": 2, "expand_ratio": 0.7, "candidates": cc})
    fracs = [0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3, 0.5]
    scann = [
        {"leaves": max(1, round(f * leaves)), "reorder": r}
        for f, r in zip(fracs, [50, 100, 100, 150, 200, 250, 300, 400, 500, 1000])
    ]
    rabitq = [
        {"nprobe": p, "k_factor": kf}
        for p, kf in [
            (4, 4),
            (8, 4),
            (16, 4),
            (16, 10),
            (32, 10),
            (64, 10),
            (64, 20),
            (128, 20),
            (256, 20),
        ]
    ]
    graph_ef = _ef([10, 16, 32, 48, 64, 96, 128, 256, 512])
    # glass re-ranks 1.5 x the results asked for; rf asks for rf x k of them
    # (its fixed 1.5 x k candidates top out below recall 0.98 at ef 512).
    glass = [{"ef": e, "rf": 1} for e in (10, 16, 32, 48, 64, 96, 128, 256, 512)]
    glass += [{"ef": e, "rf": 2} for e in (64, 128, 256, 512)] + [{"ef": 512, "rf": 4}]
    return [
        {"adapter": "svve", "build": {}, "settings": svve},
        {"adapter": "faiss-flat", "build": {}, "settings": [{}]},
        {
            "adapter": "faiss-binary+rescore",
            "build": {},
            "settings": [{"C": c} for c in (10, 20, 50, 100, 200, 500, 1000, 2000)],
        },
        {
            "adapter": "faiss-ivfflat",
            "build": {},
            "settings": [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32, 64, 128, 256)],
        },
        {"adapter": "faiss-ivfrabitq", "build": {}, "settings": rabitq},
        {"adapter": "scann", "build": {}, "settings": scann},
        {
            "adapter": "rabitq-ivf",
            "build": {"nbits": 9},
            "settings": [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)],
        },
        # Graph indexes last: their builds are the slow ones here (n log n), so
        # a dataset's wall budget runs out on them first. The strongest
        # graph peers first, then the classic HNSW libraries.
        {"adapter": "glass", "build": {"R": 32, "L": 200}, "settings": glass},
        {
            "adapter": "rabitq-qg",
            "build": {"degree": 32, "efc": 200, "init": "random"},
            "settings": graph_ef,
        },
        {"adapter": "zvec", "build": {"m": 16, "efc": 500}, "settings": graph_ef},
        {"adapter": "vsag", "build": {"degree": 64, "efc": 400}, "settings": graph_ef},
        {"adapter": "hnswlib", "build": {"M": 16, "efc": 200}, "settings": graph_ef},
        {"adapter": "faiss-hnsw", "build": {"M": 32, "efc": 200}, "settings": graph_ef},
        {
            "adapter": "usearch",
            "build": {"dtype": "f32"},
            "settings": _ef([16, 32, 48, 64, 96, 128, 256, 512]),
        },
        {
            "adapter": "usearch",
            "build": {"dtype": "i8"},
            "settings": [{"ef": e, "C": 50} for e in (16, 32, 64, 128, 256, 512)],
        },
        {"adapter": "hnswlib", "build": {"M": 32, "efc": 200}, "settings": graph_ef},
        {"adapter": "zvec", "build": {"m": 32, "efc": 500}, "settings": graph_ef},
    ]


class Suite:
    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.a = args
        self.out = out
        self.records = out / "runs.jsonl"
        argv = " ".join(args.argv)
        self.machine = machine_info(f"uv run --group bench python -m benchmarks.run {argv}")
        # label -> (n, seconds) of the largest build so far, here or in earlier runs into OUT
        self.build_times: Dict[str, tuple] = {}
        if self.records.exists():
            for line in self.records.read_text().splitlines():
                r = json.loads(line)
                if (
                    r.get("kind") == "search"
                    and r["n"] >= self.build_times.get(r["label"], (0, 0))[0]
                ):
                    self.build_times[r["label"]] = (r["n"], r["build_s"])
        self.svve_failures: List[str] = []
        self.harness_failures: List[str] = []  # exact search that did not give recall 1

    # -- plumbing
    def emit(self, record: dict) -> None:
        with open(self.records, "a") as f:
            f.write(json.dumps(record) + "\n")

    def worker(self, job: dict, timeout: float) -> tuple:
        """Run one job in a fresh interpreter; (records, error or None)."""
        with tempfile.TemporaryDirectory() as tmp:
            jp, rp = Path(tmp, "job.json"), Path(tmp, "out.jsonl")
            jp.write_text(json.dumps(job))
            rp.touch()
            err = None
            start = time.perf_counter()
            try:
                p = subprocess.run(
                    [sys.executable, "-m", "benchmarks.harness.worker", str(jp), str(rp)],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    check=False,
                )
                if p.returncode != 0:
                    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
                    err = f"exit {p.returncode}: {' | '.join(tail)}"
            except subprocess.TimeoutExpired:
                err = f"stopped at the time limit of {timeout:.0f} s"
            records = [json.loads(line) for line in rp.read_text().splitlines() if line]
            if err:
                print(f"    ! {err} after {time.perf_counter() - start:.0f} s", flush=True)
            return records, err

    def log(self, msg: str) -> None:
        print(msg, flush=True)

    # -- one dataset
    def run_dataset(self, directory: str, index_root: Path, is_largest: bool) -> None:
        data = load_dataset(directory, with_base=False)
        queries, meta = data.queries, data.meta
        if data.gt is None:
            raise SystemExit(f"{directory}: no gt.npy; the suite measures recall against it")
        n = int(
            meta.get("n")
            or meta.get("n_base")
            or np.load(Path(directory, "base.npy"), mmap_mode="r").shape[0]
        )
        name = data.name
        nq = min(len(queries), self.a.queries or len(queries))
        ds = {"dataset": name, "n": n, "dim": int(queries.shape[1]), "queries": nq, "k": self.a.k}
        self.log(f"== {name}: {n} x {queries.shape[1]}, {nq} queries")
        self.emit({"kind": "dataset", **ds, "path": str(directory), "machine": self.machine})
        deadline = time.time() + self.a.wall_budget
        for entry in plan(n, self.a.quick):
            if self.a.only and entry["adapter"] not in self.a.only:
                continue
            self.run_entry(entry, directory, index_root, ds, deadline)
        svve_dir = adapters.index_dir(str(index_root), f"{name}-svve")
        if (
            self.a.stability
            and (is_largest or self.a.quick)
            and Path(svve_dir, "index.svve").exists()
        ):
            self.stability(directory, svve_dir, ds)
        ablate = self.a.ablation == "on" or (
            self.a.ablation == "auto" and (self.a.quick or n <= 200_000) and is_largest
        )
        if ablate:
            self.ablation(directory, ds)

    def run_entry(self, entry: dict, directory: str, index_root: Path, ds: dict, deadline: float):
        name = entry["adapter"]
        ad = adapters.make(name, ds["dim"], entry["build"])
        label = ad.label()
        head = {
            "kind": "search",
            **ds,
            "adapter": name,
            "library": ad.library,
            "label": label,
            "build": entry["build"],
        }
        try:
            adapters.available(name)()
        except Exception as e:  # an optional peer that did not install
            return self.skip(head, f"not installed: {type(e).__name__}: {e}")
        if label in (self.a.skip or []):
            return self.skip(head, "left out of this run by --skip")
        if time.time() > deadline:
            return self.skip(
                head, f"wall budget of {self.a.wall_budget:.0f} s for this dataset spent"
            )
        budget = self.a.build_budget
        prev = self.build_times.get(label)
        if prev and prev[0] < ds["n"]:
            pn, ps = prev
            predicted = ps * ds["n"] / pn * math.log(ds["n"]) / math.log(pn)
            if predicted > budget:
                return self.skip(
                    head,
                    f"build predicted {predicted:.0f} s from {ps:.1f} s at n={pn} "
                    f"(n log n), over the build budget of {budget:.0f} s",
                )
        idx = adapters.index_dir(str(index_root), f"{ds['dataset']}-{label}")
        self.log(f"  build {label}")
        recs, err = self.worker(
            {
                "job": "build",
                "adapter": name,
                "build": entry["build"],
                "dataset": directory,
                "index_dir": idx,
            },
            timeout=budget,
        )
        if err or not recs:
            return self.skip(head, f"build failed: {err}")
        built = recs[0]
        self.build_times[label] = (ds["n"], built["build_s"])
        self.log(f"    {built['build_s']:.1f} s, {built['index_bytes'] / 2**20:.0f} MiB")
        remaining = max(60.0, deadline - time.time())
        recs, err = self.worker(
            {
                "job": "search",
                "adapter": name,
                "build": entry["build"],
                "dataset": directory,
                "index_dir": idx,
                "settings": entry["settings"],
                "k": self.a.k,
                "queries": self.a.queries,
                "budget_s": self.a.query_budget,
                "min_queries": min(200, ds["queries"]),
            },
            timeout=min(self.a.search_timeout, remaining),
        )
        for r in recs:
            rec = {**head, **built, **r}
            self.emit(rec)
            if r["query"] == EXACT.get(name) and r["recall"] < 0.999:
                self.harness_failures.append(f"{label} {r['query']}: recall {r['recall']:.4f}")
            s = r["single"]
            self.log(
                f"    {json.dumps(r['query']):42s} recall {r['recall']:.4f}  "
                f"1-thread {s['qps']:8.0f} qps p50 {s['p50_us']:7.0f} us p99 {s['p99_us']:7.0f} us"
                f"  batch {r['batch']['qps']:8.0f} qps"
            )
        if err:
            done = len(recs)
            self.skip(
                {**head, **built},
                f"search stopped after {done} of {len(entry['settings'])} settings: {err}",
            )
        if not self.a.keep_indexes and name != "svve":
            for f in Path(idx).glob("*"):
                if f.is_dir():  # zvec's collection
                    shutil.rmtree(f)
                else:
                    f.unlink()

    def skip(self, head: dict, reason: str) -> None:
        self.log(f"  skip {head['label']}: {reason}")
        if head.get("adapter") == "svve":
            self.svve_failures.append(f"{head['dataset']}: {reason}")
        self.emit({**head, "kind": "skip", "reason": reason})

    # -- svve under load
    def stability(self, directory: str, svve_dir: str, ds: dict) -> None:
        quick = self.a.quick
        seconds = 2.0 if quick else self.a.load_seconds
        base = {"dataset": directory, "index_dir": svve_dir, "k": self.a.k, "params": {}}
        for t in [1, 2] if quick else [1, 2, 4, 8]:
            self.log(f"  svve: {t} Python thread(s), {seconds:.0f} s")
            recs, err = self.worker(
                {**base, "job": "threads", "threads": t, "seconds": seconds}, timeout=seconds + 300
            )
            self.check_svve_job(ds, f"{t} Python thread(s)", err)
            for r in recs:
                self.emit({"kind": "threads", **ds, **r})
                self.log(
                    f"    {r['total_qps']:.0f} qps, p50 {r['latency']['p50_us']:.0f} us,"
                    f" p99 {r['latency']['p99_us']:.0f} us, p99.9 {r['latency']['p999_us']:.0f} us"
                )
        for p in [1, 2] if quick else [1, 2, 4]:
            self.log(f"  svve: {p} process(es), {seconds:.0f} s")
            self.processes(base, p, seconds, ds)
        self.log("  svve: batch speedup vs an embarrassingly parallel reference")
        recs, err = self.worker(
            {**base, "job": "scaling", "repeat": 2 if quick else 5}, timeout=1800
        )
        self.check_svve_job(ds, "batch speedup", err)
        for r in recs:
            self.emit({"kind": "scaling", **ds, **r})
            self.log(
                f"    reference {r['reference_speedup']:.2f}x, svve batch {r['svve_speedup']:.2f}x"
                f" on {r['cpus']} CPUs: {100 * r['efficiency']:.0f} % of the reference"
            )
        total = 5_000 if quick else self.a.memory_queries
        self.log(f"  svve: RSS over {total} single queries")
        recs, err = self.worker(
            {**base, "job": "memory", "total": total, "every": max(1, total // 100)}, timeout=3600
        )
        self.check_svve_job(ds, "RSS over single queries", err)
        for r in recs:
            s = r["samples"][1:]
            tenth = max(1, len(s) // 10)
            first = float(np.mean([x["rss_mb"] for x in s[:tenth]]))
            last = float(np.mean([x["rss_mb"] for x in s[-tenth:]]))
            self.emit({"kind": "memory", **ds, **r, "rss_first10_mb": first, "rss_last10_mb": last})
            self.log(f"    RSS first 10 % {first:.1f} MiB, last 10 % {last:.1f} MiB")

    def processes(self, base: dict, nproc: int, seconds: float, ds: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            start_at = time.time() + 8.0 + 2.0 * nproc  # after every process imported and opened
            load_before = loadavg()
            procs = []
            for slot in range(nproc):
                job = {
                    **base,
                    "job": "loadgen",
                    "slot": slot,
                    "seconds": seconds,
                    "start_at": start_at,
                    "lat_path": os.path.join(tmp, f"{slot}.npy"),
                }
                jp, rp = Path(tmp, f"job{slot}.json"), Path(tmp, f"out{slot}.jsonl")
                jp.write_text(json.dumps(job))
                rp.touch()
                procs.append(
                    (
                        subprocess.Popen(
                            [sys.executable, "-m", "benchmarks.harness.worker", str(jp), str(rp)],
                            cwd=REPO,
                        ),
                        rp,
                        job["lat_path"],
                    )
                )
            lats, per = [], []
            for p, rp, lp in procs:
                try:
                    p.wait(timeout=seconds + 300)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                recs = [json.loads(line) for line in rp.read_text().splitlines() if line]
                if recs and os.path.exists(lp):
                    lats.append(np.load(lp))
                    per.append(recs[0])
            if len(per) < nproc:
                self.check_svve_job(
                    ds, f"{nproc} process(es)", f"{nproc - len(per)} of {nproc} gave no result"
                )
            if not lats:
                return
            lat = np.concatenate(lats)
            load_after = loadavg()
            wall = max(r["seconds"] for r in per)
            rec = {
                "kind": "processes",
                **ds,
                "processes": nproc,
                "ok": len(per),
                "total_qps": len(lat) / wall,
                "cpu_share": sum(r["cpu_share"] for r in per) / min(nproc, os.cpu_count() or 1),
                "latency": latency_summary(lat),
                "per_process": per,
                "loadavg": [load_before, load_after],
            }
            self.emit(rec)
            self.log(
                f"    {rec['total_qps']:.0f} qps, p50 {rec['latency']['p50_us']:.0f} us, "
                f"p99 {rec['latency']['p99_us']:.0f} us, p99.9 {rec['latency']['p999_us']:.0f} us"
            )

    def ablation(self, directory: str, ds: dict) -> None:
        self.log("  ablation (benchmarks.studies.ablation)")
        cmd = [sys.executable, "-m", "benchmarks.studies.ablation", "--dataset", directory]
        if self.a.queries:
            cmd += ["--queries", str(self.a.queries)]
        try:
            p = subprocess.run(
                cmd, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False
            )
            text, err = p.stdout, (None if p.returncode == 0 else p.stderr[-500:])
        except subprocess.TimeoutExpired:
            text, err = "", "stopped at 1800 s"
        self.emit({"kind": "ablation", **ds, "output": text, "error": err})
        self.check_svve_job(ds, "ablation", err)

    def check_svve_job(self, ds: dict, what: str, err) -> None:
        """An svve job beyond the sweep that failed fails the run, like a failed svve build."""
        if err:
            self.svve_failures.append(f"{ds['dataset']}: {what}: {err}")


def synthetic_dir(
    n: int, dim: Optional[int] = None, seed: int = 0, queries: int = 1000, kind: str = "default"
) -> str:
    """A cached synthetic dataset (written once with benchmarks.harness.synthetic)
    of ``kind`` (``default``, ``clustered``, ``ada``) with its default parameters."""
    from benchmarks.harness import synthetic

    dim = dim or synthetic.DEFAULT_DIM[kind]
    tag = "" if kind == "default" else f"{kind}-"  # the default kind keeps its old names
    d = CACHE / f"synthetic-{tag}{n}-{dim}-s{seed}"
    if not (d / "meta.json").exists():
        print(f"writing synthetic {kind} {n} x {dim} to {d} (once)", flush=True)
        synthetic.write(d, n, dim, queries, seed, kind)
    return str(d)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="svve-core benchmark suite")
    ap.add_argument("--dataset", action="append", default=[], help="dataset directory (repeatable)")
    ap.add_argument("--synthetic", default="", help="comma-separated sizes, e.g. 10000,100000")
    ap.add_argument(
        "--synthetic-kind",
        choices=("default", "clustered", "ada", "gaussian"),
        default="default",
        help="kind of the --synthetic sets (benchmarks.harness.synthetic): default "
        "(overlapping clusters, 384-d), clustered (well separated, 384-d), ada "
        "(ada-002 stand-in, 1536-d), gaussian (isotropic, 384-d)",
    )
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="smoke test: 10k synthetic, few settings")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=None, help="first N queries only")
    ap.add_argument("--only", nargs="*", help="adapters to run (default all)")
    ap.add_argument(
        "--skip", nargs="*", help="index labels to leave out, e.g. 'hnswlib(M=32,efc=200)'"
    )
    ap.add_argument("--build-budget", type=float, default=900.0, help="seconds per build")
    ap.add_argument("--wall-budget", type=float, default=7200.0, help="seconds per dataset")
    ap.add_argument(
        "--query-budget",
        type=float,
        default=15.0,
        help="seconds of single-query loop per setting (at least 200 queries)",
    )
    ap.add_argument("--search-timeout", type=float, default=1800.0)
    ap.add_argument("--load-seconds", type=float, default=10.0)
    ap.add_argument("--memory-queries", type=int, default=100_000)
    ap.add_argument("--no-stability", dest="stability", action="store_false")
    ap.add_argument("--ablation", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--keep-indexes", action="store_true")
    ap.add_argument("--index-dir", default=None, help="where indexes are built (default: temp)")
    a = ap.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dirs = list(a.dataset)
    if a.quick and not dirs and not a.synthetic:
        a.synthetic = "10000"
        a.queries = a.queries or 300
    sizes = sorted(int(s) for s in a.synthetic.split(",") if s)
    dirs += [synthetic_dir(n, kind=a.synthetic_kind) for n in sizes]
    if not dirs:
        ap.error("give --dataset DIR, --synthetic N or --quick")
    suite = Suite(a, out)
    print(
        f"machine: {suite.machine['cpu']}, {suite.machine['cores']} cores; records -> "
        f"{suite.records}",
        flush=True,
    )
    start = time.time()
    with tempfile.TemporaryDirectory(dir=a.index_dir) as tmp:
        for i, d in enumerate(dirs):
            largest = d not in a.dataset and i == len(dirs) - 1
            suite.run_dataset(d, Path(tmp), is_largest=largest or d in a.dataset)
    from benchmarks.report import markdown

    markdown.write(out)
    print(f"done in {time.time() - start:.0f} s: {out / 'report.md'}", flush=True)
    for failure in suite.svve_failures:  # peers may be missing; svve itself must run
        print(f"svve failed: {failure}", file=sys.stderr)
    for failure in suite.harness_failures:
        print(f"harness check failed (exact search below recall 0.999): {failure}", file=sys.stderr)
    return 1 if suite.svve_failures or suite.harness_failures else 0


if __name__ == "__main__":
    sys.exit(main())
