"""Markdown report and PNG plots from the records of ``benchmarks.run``.

    uv run --group bench python -m benchmarks.report RESULTS_DIR [RESULTS_DIR ...] \\
        [--markdown BENCHMARKS.md --preamble benchmarks/report/preamble.md]

Reads ``RESULTS_DIR/runs.jsonl`` and writes ``RESULTS_DIR/report.md`` and
``RESULTS_DIR/*.png``. Every figure in the report is copied from a record;
nothing is edited by hand. With ``--markdown`` the reports of all given
directories are joined into one file (figure links made relative to it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

THRESHOLDS = (0.90, 0.95, 0.99)
NOISE = (
    "Each run records the 1-minute load average and the CPU share its measuring thread "
    "actually got (single-query loop / batch; 100 % = a core to itself), shown in the tables: "
    "read a low share as a slowed-down run. These 2-core virtual machines are noisy: compare "
    "ratios within one run, not absolute figures across runs."
)


def noise_note(recs: List[dict]) -> str:
    """The load the runs in ``recs`` saw, then :data:`NOISE`."""
    loads = [x for r in recs if r.get("kind") == "search" for x in r.get("loadavg") or []]
    if not loads:
        return NOISE
    return (
        f"1-minute load average during these runs: {min(loads):.1f} to {max(loads):.1f} "
        f"(median {sorted(loads)[len(loads) // 2]:.1f}; the measuring process itself "
        f"counts about 1). " + NOISE
    )


def load(out: Path) -> List[dict]:
    """The records of ``out/runs.jsonl``. A dataset run again into the same
    directory replaces its earlier (e.g. interrupted) run: only the records
    after its last ``dataset`` record count."""
    path = out / "runs.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    last = {r["dataset"]: i for i, r in enumerate(recs) if r.get("kind") == "dataset"}
    return [r for i, r in enumerate(recs) if i >= last.get(r.get("dataset"), 0)]


def group_of(r: dict) -> str:
    """The curve a run belongs to (one per library and algorithm)."""
    if r["adapter"] == "usearch":
        return f"usearch-{r['build'].get('dtype', 'f32')}"
    return r["adapter"]


def q_label(r: dict) -> str:
    q = r.get("query") or {}
    return ",".join(f"{k}={v}" for k, v in q.items()) or "default"


def pareto(runs: List[dict], key) -> List[dict]:
    """Runs not dominated in (recall, key(run)): sorted by recall, best first."""
    best, front = -1.0, []
    for r in sorted(runs, key=lambda r: (-r["recall"], -key(r))):
        if key(r) > best:
            front.append(r)
            best = key(r)
    return front


def best_at(runs: List[dict], threshold: float, key) -> Optional[dict]:
    ok = [r for r in runs if r["recall"] >= threshold]
    return max(ok, key=key) if ok else None


def single_qps(r: dict) -> float:
    return r["single"]["qps"]


def batch_qps(r: dict) -> float:
    return r["batch"]["qps"]


def setting(r: dict) -> str:
    """Build and query parameters of a run, e.g. ``M=16,efc=200 ef=128``."""
    b = ",".join(f"{k}={v}" for k, v in r["build"].items())
    return f"{b} {q_label(r)}" if b else q_label(r)


def mem_cell(before: dict, after: dict) -> str:
    """``+total (file / anon)`` MiB added since ``before``."""

    def d(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    return f"+{d('rss_mb'):,.0f} ({d('rss_file_mb'):,.0f} / {d('rss_anon_mb'):,.0f})"


def pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def share(r: dict) -> str:
    """CPU the measuring thread got during the single-query loop / the batch (all cores)."""
    return f"{pct(r['single'].get('cpu_share'))} / {pct(r['batch'].get('cpu_share'))}"


def fmt(x: Optional[float], digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def mib(x: Optional[float]) -> str:
    return "-" if x is None else f"{x / 2**20:,.1f}"


# ------------------------------------------------------------------ plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_recall_qps(groups: Dict[str, List[dict]], key, title: str, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=90)
    for g, runs in sorted(groups.items()):
        front = sorted(pareto(runs, key), key=lambda r: r["recall"])
        xs = [r["recall"] for r in front]
        ys = [key(r) for r in front]
        style = dict(lw=2.5, color="black") if g == "svve" else dict(lw=1.2)
        ax.plot(xs, ys, marker="o", ms=3, label=g, **style)
    ax.set_yscale("log")
    lows = [r["recall"] for rs in groups.values() for r in rs]
    ax.set_xlim(max(min(lows, default=0.0), 0.8) - 0.005, 1.002)
    ax.set_xlabel("recall@10 (from 0.8)")
    ax.set_ylabel("queries per second (log)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latency(picks: Dict[str, dict], title: str, path: Path) -> None:
    from benchmarks.harness.common import LAT_QUANTILES

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=90)
    for g, r in sorted(picks.items()):
        qs = r["single"]["quantiles_us"]
        style = dict(lw=2.5, color="black") if g == "svve" else dict(lw=1.2)
        ax.plot(
            qs, LAT_QUANTILES[: len(qs)], label=f"{g} ({q_label(r)}, R={r['recall']:.3f})", **style
        )
    ax.set_xscale("log")
    ax.set_xlabel("single-query latency, us (log)")
    ax.set_ylabel("percentile")
    ax.set_ylim(0, 100.5)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_scale(series: Dict[str, List[tuple]], ylabel: str, title: str, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    for g, pts in sorted(series.items()):
        if not pts:
            continue
        pts = sorted(pts)
        style = dict(lw=2.5, color="black") if g.startswith("svve") else dict(lw=1.2)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, label=g, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("n (base vectors, 384-d)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_memory(samples: List[dict], title: str, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=90)
    xs = [s["queries"] for s in samples]
    for key, lab in (("rss_mb", "RSS"), ("rss_anon_mb", "RssAnon"), ("rss_file_mb", "RssFile")):
        if key in samples[0]:
            ax.plot(xs, [s.get(key) for s in samples], label=lab)
    ax.set_xlabel("single queries answered")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------- report


def _targets(svve: List[dict]) -> List[dict]:
    return sorted(
        (r for r in svve if set(r.get("query") or {}) == {"target_recall"}),
        key=lambda r: r["query"]["target_recall"],
    )


def _fixed(svve: List[dict]) -> List[dict]:
    return [r for r in svve if "probe_frac" in (r.get("query") or {})]


def _target_cells(r: dict, fixed: List[dict]) -> dict:
    """One recall-target run's cells, shared by the summary and the per-dataset table."""
    t = r["query"]["target_recall"]
    front = best_at(fixed, r["recall"], single_qps)
    p10 = r.get("recall_p10")
    sq = r["single"]
    return {
        "target": f"{t:.2f}",
        "recall": f"{r['recall']:.4f}",
        "p10": "-" if p10 is None else f"{p10:.2f}",
        "met": "yes" if r["recall"] >= t - 0.005 else "NO",
        "qps": fmt(single_qps(r)),
        "p50": f"{sq['p50_us']:.1f}",
        "spread": f"{sq['p99_us'] / sq['p50_us']:.2f}",
        "front": front,
        "ratio": f"{single_qps(r) / single_qps(front):.2f}x" if front else "-",
    }


def targets_summary(outs: List[Path]) -> str:
    """Every dataset's recall targets in one table (each row from its own run)."""
    lines = [
        "| dataset | target | mean recall@10 | p10 | met | QPS | p99/p50 | fixed frontier QPS "
        "| target / frontier |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for out in outs:
        recs = load(out)
        for ds in [r for r in recs if r.get("kind") == "dataset"]:
            svve = [
                r
                for r in recs
                if r.get("kind") == "search"
                and r["dataset"] == ds["dataset"]
                and r["adapter"] == "svve"
            ]
            for r in _targets(svve):
                c = _target_cells(r, _fixed(svve))
                front = c["front"]
                lines.append(
                    f"| {ds['dataset']} ({ds['n']:,}) | {c['target']} | {c['recall']} | "
                    f"{c['p10']} | {c['met']} | {c['qps']} | {c['spread']} | "
                    + (f"{fmt(single_qps(front))} | " if front else "not reached | ")
                    + f"{c['ratio']} |"
                )
    return "\n".join(lines) + "\n"


def targets_table(svve: List[dict]) -> List[str]:
    """svve's recall targets against the fixed sweep's frontier at the recall reached."""
    targets = _targets(svve)
    if not targets:
        return []
    fixed = _fixed(svve)
    lines = [
        "### Recall targets (svve, `SearchParams(target_recall=t)`)",
        "",
        "Settings calibrated at build on rows of the index (leave-one-out); the queries here "
        "were not seen. *Fixed frontier*: the best single-query QPS of svve's fixed sweep "
        "(every effort knob set by hand) among settings whose mean recall is at least the one "
        "the target reached; the target should be >= 0.85x of it.",
        "",
        "| target | mean recall@10 | p10 | met (>= t - 0.005) | QPS | p50 us | p99/p50 "
        "| fixed frontier QPS | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in targets:
        c = _target_cells(r, fixed)
        front = c["front"]
        lines.append(
            f"| {c['target']} | {c['recall']} | {c['p10']} | {c['met']} | {c['qps']} | "
            f"{c['p50']} | {c['spread']} | "
            + (f"{fmt(single_qps(front))} ({setting(front)}) | " if front else "not reached | ")
            + f"{c['ratio']} |"
        )
    return [*lines, ""]


def dataset_section(ds: dict, recs: List[dict], out: Path, figs: List[str]) -> List[str]:
    name = ds["dataset"]
    slug = name.replace("/", "_")
    runs = [r for r in recs if r.get("kind") == "search"]
    skips = [r for r in recs if r.get("kind") == "skip"]
    groups: Dict[str, List[dict]] = defaultdict(list)
    for r in runs:
        groups[group_of(r)].append(r)
    lines = [
        f"## {name}: {ds['n']:,} x {ds['dim']}, {ds['queries']} queries, k={ds['k']}",
        "",
        f"Command: `{ds['machine']['command']}` (svve-core commit "
        f"{ds['machine']['git_commit']}, extension sha256 {ds['machine']['svve_build_sha256']})",
        "",
    ]
    if not runs:
        return [*lines, "No runs.", ""]
    # Harness checks
    checks = []
    for g, want in (("faiss-flat", {}), ("svve", {"exact": True})):
        for r in groups.get(g, []):
            if (r.get("query") or {}) == want:
                checks.append(f"{r['label']} {q_label(r)}: recall@10 {r['recall']:.4f}")
    if checks:
        lines += ["Harness checks (exact search must give 1.0): " + "; ".join(checks) + ".", ""]
    # Threshold tables
    for key, what in (
        (single_qps, "single-query QPS (one thread, one Python call per query)"),
        (batch_qps, f"batch QPS (all {runs[0]['batch']['threads']} threads)"),
    ):
        lines += [f"### Best {what} at recall@10 >= threshold", ""]
        lines += [
            "| library | " + " | ".join(f"R >= {t:.2f}" for t in THRESHOLDS) + " |",
            "|---|" + "---|" * len(THRESHOLDS),
        ]
        best_peer = {t: None for t in THRESHOLDS}
        for g in sorted(groups, key=lambda g: (g != "svve", g)):
            cells = []
            for t in THRESHOLDS:
                b = best_at(groups[g], t, key)
                if b is None:
                    cells.append("not reached")
                    continue
                cells.append(f"{fmt(key(b))} ({setting(b)}; R={b['recall']:.3f})")
                if g != "svve" and (best_peer[t] is None or key(b) > key(best_peer[t])):
                    best_peer[t] = b
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
        ratios = []
        for t in THRESHOLDS:
            s = best_at(groups.get("svve", []), t, key)
            p = best_peer[t]
            if s and p:
                ratios.append(f"{key(s) / key(p):.2f}x (vs {group_of(p)})")
            else:
                ratios.append("-")
        lines += ["| **svve / best peer** | " + " | ".join(ratios) + " |", ""]
    lines += targets_table(groups.get("svve", []))
    # Build and memory
    lines += [
        "### Build, size and memory",
        "",
        "RSS is of a fresh process that opened the saved index (the dataset is not loaded "
        "in it); 'after load' minus 'before load' is what opening cost, 'after search' is "
        "after the whole sweep. File = file-backed pages (mmap, shared between processes), "
        "anon = private memory (/proc/self/status RssFile / RssAnon).",
        "",
        "| build | build s | size on disk MiB | RSS after load MiB (file / anon) | "
        "RSS after search MiB (file / anon) | load s |",
        "|---|---|---|---|---|---|",
    ]
    seen = set()
    for r in sorted(runs, key=lambda r: (group_of(r) != "svve", r["label"])):
        if r["label"] in seen:
            continue
        seen.add(r["label"])
        before = r["mem_before_load"]
        loaded = mem_cell(before, r["mem_after_load"])
        searched = mem_cell(before, r["mem_after_search"])
        lines.append(
            f"| {r['label']} | {r['build_s']:.1f} | {mib(r['index_bytes'])} | {loaded} | "
            f"{searched} | {r['load_s']:.2f} |"
        )
    lines.append("")
    # Plots
    p1 = out / f"{slug}-recall-qps.png"
    plot_recall_qps(groups, single_qps, f"{name}: single-query QPS, 1 thread (Pareto fronts)", p1)
    p2 = out / f"{slug}-recall-batch-qps.png"
    plot_recall_qps(groups, batch_qps, f"{name}: batch QPS, all threads (Pareto fronts)", p2)
    picks = {}
    for g, rs in groups.items():
        b = best_at(rs, 0.95, single_qps) or max(rs, key=lambda r: r["recall"])
        picks[g] = b
    p3 = out / f"{slug}-latency.png"
    plot_latency(picks, f"{name}: single-query latency CDF, fastest setting with R>=0.95", p3)
    figs += [p1.name, p2.name, p3.name]
    lines += [
        f"![recall vs single-query QPS]({p1.name})",
        "",
        f"![recall vs batch QPS]({p2.name})",
        "",
        f"![latency distribution]({p3.name})",
        "",
    ]
    # Pareto fronts
    lines += [
        "### Pareto frontier per library (single-query, one thread)",
        "",
        "| library | setting | recall@10 | QPS | p50 us | p99 us | p99.9 us | batch QPS "
        "| CPU share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in sorted(groups, key=lambda g: (g != "svve", g)):
        for r in pareto(groups[g], single_qps):
            s = r["single"]
            lines.append(
                f"| {g} | {r['label']} {q_label(r)} | {r['recall']:.4f} | {fmt(s['qps'])} | "
                f"{fmt(s['p50_us'])} | {fmt(s['p99_us'])} | {fmt(s['p999_us'])} | "
                f"{fmt(r['batch']['qps'])} | {share(r)} |"
            )
    lines.append("")
    if skips:
        lines += ["### Skipped", ""] + [f"- {r['label']}: {r['reason']}" for r in skips] + [""]
    lines += [
        "<details><summary>Every run</summary>",
        "",
        "| build | query | recall@10 | single QPS | p50 us | p99 us | p99.9 us | batch QPS | "
        "single queries | CPU share | loadavg | svve rows scanned / rescored |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s, st = r["single"], r.get("stats") or {}
        rows = f"{st['scanned']:,.0f} / {st['rescored']:,.0f}" if "scanned" in st else ""
        la = r.get("loadavg") or []
        lines.append(
            f"| {r['label']} | {q_label(r)} | {r['recall']:.4f} | {fmt(s['qps'])} | "
            f"{fmt(s['p50_us'])} | {fmt(s['p99_us'])} | {fmt(s['p999_us'])} | "
            f"{fmt(r['batch']['qps'])} | {s['n']} | {share(r)} | {', '.join(map(str, la))} "
            f"| {rows} |"
        )
    lines += ["", "</details>", ""]
    lines += load_section(ds, recs, out, figs)
    for r in recs:
        if r.get("kind") == "ablation":
            lines += [
                "### Stage ablation (benchmarks.studies.ablation, one thread, single queries)",
                "",
            ]
            if r.get("error"):
                lines += [f"Ablation failed: {r['error']}", ""]
            lines += [line for line in r["output"].splitlines()] + [""]
    return lines


def load_section(ds: dict, recs: List[dict], out: Path, figs: List[str]) -> List[str]:
    th = [r for r in recs if r.get("kind") == "threads"]
    pr = [r for r in recs if r.get("kind") == "processes"]
    mem = [r for r in recs if r.get("kind") == "memory"]
    sc = [r for r in recs if r.get("kind") == "scaling"]
    if not (th or pr or mem or sc):
        return []
    lines = ["### svve under load (default parameters, single queries)", ""]
    for r in sc:
        lines += [
            f"Parallel speedup on {r['cpus']} CPUs (best of several runs, same process): an "
            f"embarrassingly parallel reference (a pure-CPU loop, 1 process vs {r['cpus']}) "
            f"{r['reference_speedup']:.2f}x; svve `search_batch` over all queries (1 thread "
            f"{fmt(r['svve_batch_qps'][0])} QPS vs {r['cpus']} threads "
            f"{fmt(r['svve_batch_qps'][1])} QPS) {r['svve_speedup']:.2f}x, i.e. "
            f"**{100 * r['efficiency']:.0f} %** of the speedup this machine delivers.",
            "",
        ]
    if th or pr:
        lines += [
            "| load | total QPS | p50 us | p99 us | p99.9 us | queries | CPU share | loadavg |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in th:
            la = r["latency"]
            lines.append(
                f"| {r['threads']} Python thread(s), one engine | {fmt(r['total_qps'])} | "
                f"{fmt(la['p50_us'])} | {fmt(la['p99_us'])} | {fmt(la['p999_us'])} | "
                f"{la['n']:,} | {pct(r.get('cpu_share'))} | "
                f"{', '.join(map(str, r.get('loadavg') or []))} |"
            )
        for r in pr:
            la = r["latency"]
            lines.append(
                f"| {r['processes']} process(es), same file | {fmt(r['total_qps'])} | "
                f"{fmt(la['p50_us'])} | {fmt(la['p99_us'])} | {fmt(la['p999_us'])} | "
                f"{la['n']:,} | {pct(r.get('cpu_share'))} | "
                f"{', '.join(map(str, r.get('loadavg') or []))} |"
            )
        lines += [
            "",
            f"The machine has {ds.get('cores', 'few')} cores: beyond that, threads and "
            "processes queue for CPU, so total QPS flattens and the tail grows by design of "
            "the test, not of the library. CPU share: CPU time the searching threads got "
            "over wall time, per core they could use (100 % = they had their cores to "
            "themselves).",
            "",
        ]
    for r in mem:
        s = r["samples"]
        p = out / f"{ds['dataset']}-memory.png"
        plot_memory(s, f"{ds['dataset']}: svve RSS over {r['total']:,} single queries", p)
        figs.append(p.name)
        last = s[-1]
        lines += [
            f"RSS over {r['total']:,} single queries ({r['seconds']:.0f} s): mean of the first "
            f"10 % of samples {r['rss_first10_mb']:.1f} MiB, last 10 % {r['rss_last10_mb']:.1f} "
            f"MiB (difference {r['rss_last10_mb'] - r['rss_first10_mb']:+.1f} MiB); at the end "
            f"RssFile {last.get('rss_file_mb', 0):.1f} MiB (the mapped index), RssAnon "
            f"{last.get('rss_anon_mb', 0):.1f} MiB.",
            "",
            f"![svve memory]({p.name})",
            "",
        ]
    return lines


def scale_section(all_recs: List[dict], out: Path, figs: List[str]) -> List[str]:
    """QPS and build time against n over the synthetic sets."""
    syn = [r for r in all_recs if str(r.get("dataset", "")).startswith("synthetic-")]
    ns = sorted({r["n"] for r in syn if r.get("kind") == "search"})
    if len(ns) < 2:
        return []
    lines = ["## Scale: synthetic 384-d sets, n = " + ", ".join(f"{n:,}" for n in ns), ""]
    qps: Dict[str, List[tuple]] = defaultdict(list)
    build: Dict[str, List[tuple]] = defaultdict(list)
    table: Dict[str, Dict[int, str]] = defaultdict(dict)
    for n in ns:
        runs = [r for r in syn if r.get("kind") == "search" and r["n"] == n]
        groups: Dict[str, List[dict]] = defaultdict(list)
        for r in runs:
            groups[group_of(r)].append(r)
        for g, rs in groups.items():
            b = best_at(rs, 0.95, single_qps)
            if b:
                qps[g].append((n, single_qps(b)))
            table[g][n] = f"{fmt(single_qps(b))} ({q_label(b)})" if b else "not reached"
        for r in runs:
            if (r["label"], n) not in {(k, p[0]) for k, v in build.items() for p in v}:
                build[r["label"]].append((n, r["build_s"]))
        for r in syn:
            if r.get("kind") == "skip" and r["n"] == n:
                table[group_of(r)].setdefault(n, "skipped")
    p1, p2 = out / "scale-qps.png", out / "scale-build.png"
    plot_scale(qps, "single-query QPS at recall@10 >= 0.95", "QPS vs n (1 thread)", p1)
    plot_scale(build, "build seconds", "build time vs n (all threads)", p2)
    figs += [p1.name, p2.name]
    lines += [
        "Best single-query QPS (one thread) at recall@10 >= 0.95:",
        "",
        "| library | " + " | ".join(f"n={n:,}" for n in ns) + " |",
        "|---|" + "---|" * len(ns),
    ]
    for g in sorted(table, key=lambda g: (g != "svve", g)):
        lines.append(f"| {g} | " + " | ".join(table[g].get(n, "-") for n in ns) + " |")
    lines += [
        "",
        "Build seconds (all threads):",
        "",
        "| build | " + " | ".join(f"n={n:,}" for n in ns) + " |",
        "|---|" + "---|" * len(ns),
    ]
    for lab in sorted(build, key=lambda g: (not g.startswith("svve"), g)):
        d = dict(build[lab])
        lines.append(f"| {lab} | " + " | ".join(fmt(d.get(n), 1) for n in ns) + " |")
    lines += ["", f"![QPS vs n]({p1.name})", "", f"![build time vs n]({p2.name})", ""]
    # svve cost growth at the default parameters
    rows = []
    for n in ns:
        for r in syn:
            if (
                r.get("kind") == "search"
                and r["n"] == n
                and r["adapter"] == "svve"
                and not r.get("query")
            ):
                st = r.get("stats") or {}
                rows.append(
                    (
                        n,
                        r["single"]["p50_us"],
                        r["recall"],
                        st.get("scanned"),
                        st.get("rescored"),
                        st.get("partitions"),
                        r["build_s"],
                    )
                )
    if len(rows) >= 2:
        lines += [
            "svve at its defaults:",
            "",
            "| n | partitions | Tier1 rows scanned | rescored | p50 us | recall@10 | build s |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, p50, rec, sc, rs, parts, bs in rows:
            lines.append(
                f"| {n:,} | {parts} | {fmt(sc)} | {fmt(rs, 1)} | {fmt(p50)} | {rec:.4f} | "
                f"{bs:.1f} |"
            )
        (n0, l0, _, s0, *_), (n1, l1, _, s1, *_) = rows[0], rows[-1]
        grow = math.log(n1 / n0)
        lines += [
            "",
            f"From n={n0:,} to n={n1:,} the p50 latency grows as n^{math.log(l1 / l0) / grow:.2f}"
            + (
                f" and the Tier1 rows scanned as n^{math.log(s1 / s0) / grow:.2f}"
                if s0 and s1
                else ""
            )
            + " (fitted on the two ends; exact search is n^1).",
            "",
        ]
    return lines


def render(out: Path, rel: str = "") -> str:
    recs = load(out)
    figs: List[str] = []
    datasets = [r for r in recs if r.get("kind") == "dataset"]
    lines: List[str] = []
    if datasets:
        m = datasets[0]["machine"]
        lines += [
            f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gb')} GB; {m['os']}; "
            f"Python {m['python']}, numpy {m['numpy']}.",
            "",
            f"Versions: svve-core {m['svve_core']} (commit {m['git_commit']}, kernels "
            f"{m['svve_isa']}, extension sha256 {m['svve_build_sha256']}"
            + (
                f", uncommitted core changes: {'; '.join(m['git_dirty_core'])}"
                if m.get("git_dirty_core")
                else ""
            )
            + "), "
            + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
            + ".",
            "",
            noise_note(recs),
            "",
        ]
    for ds in datasets:
        ds = {**ds, "cores": ds["machine"]["cores"]}
        mine = [r for r in recs if r.get("dataset") == ds["dataset"] and r.get("kind") != "dataset"]
        lines += dataset_section(ds, mine, out, figs)
    lines += scale_section(recs, out, figs)
    text = "\n".join(lines) + "\n"
    if rel:
        for f in figs:
            text = text.replace(f"]({f})", f"]({rel}/{f})")
    return text


def headline(outs: List[Path]) -> str:
    """svve against the best peer at each recall threshold, over every dataset given."""
    lines = [
        "| dataset | recall@10 >= | svve single-query QPS | best peer | svve / peer "
        "| svve batch QPS | best peer (batch) | svve / peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for out in outs:
        recs = load(out)
        for ds in [r for r in recs if r.get("kind") == "dataset"]:
            runs = [r for r in recs if r.get("kind") == "search" and r["dataset"] == ds["dataset"]]
            svve = [r for r in runs if r["adapter"] == "svve"]
            peers = [r for r in runs if r["adapter"] != "svve"]
            for t in (0.95, 0.99):
                cells = [f"{ds['dataset']} ({ds['n']:,})", f"{t:.2f}"]
                for key in (single_qps, batch_qps):
                    s, p = best_at(svve, t, key), best_at(peers, t, key)
                    cells.append(f"{fmt(key(s))} ({setting(s)})" if s else "not reached")
                    cells.append(
                        f"{fmt(key(p))} ({group_of(p)} {setting(p)}; build {p['build_s']:.0f} s)"
                        if p
                        else "none"
                    )
                    cells.append(f"{key(s) / key(p):.2f}x" if s and p else "-")
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(out: Path) -> Path:
    path = out / "report.md"
    path.write_text("# svve-core benchmark report\n\n" + render(out))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--markdown", help="join all reports into this file")
    ap.add_argument("--preamble", help="markdown file to put first (with --markdown)")
    ap.add_argument(
        "--kernels",
        help="output of `cargo bench --bench kernels` to quote verbatim (with --markdown)",
    )
    a = ap.parse_args(argv)
    parts = []
    for r in a.results:
        write(Path(r))
        if a.markdown:
            rel = os.path.relpath(r, Path(a.markdown).resolve().parent)
            parts.append(render(Path(r), rel=rel))
    if a.markdown:
        head = Path(a.preamble).read_text() if a.preamble else ""
        every = [r for p in a.results for r in load(Path(p))]
        summary = "## Headline: svve against the best peer\n\n" + noise_note(every) + "\n\n"
        summary += headline([Path(r) for r in a.results]) + "\n"
        summary += (
            "## Recall targets: `SearchParams(target_recall=t)` on queries the calibration "
            "never saw\n\n"
            "Calibrated at build on rows of each index (leave-one-out); *met* is mean recall "
            ">= t - 0.005; *fixed frontier*: the best single-query QPS of svve's own fixed "
            "sweep (every effort knob set by hand) at a mean recall at least the one reached; "
            "one thread, one query per call, each row from its dataset's run.\n\n"
            + targets_summary([Path(r) for r in a.results])
            + "\n"
        )
        if a.kernels:
            summary += (
                "## Tier1 kernel against memory bandwidth\n\n"
                "Bytes scanned per row: 48 (384-bit code) for the bare popcount kernel, 56 "
                "(plus two f32 factors) for the fused estimate kernel that queries run. "
                "Percentages are of a plain `u64` sum over the same bytes, measured in the "
                f"same run (`{a.kernels}`):\n\n```text\n"
                + Path(a.kernels).read_text().strip()
                + "\n```\n\n"
            )
        Path(a.markdown).write_text(head + summary + "\n".join(parts))
        print(a.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
