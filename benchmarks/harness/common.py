"""Measurement helpers of the harness: latency, memory, machine facts, report tees.

Datasets and recall live in the package (:mod:`svve_core.datasets`), shared
with ``svve demo``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional

import numpy as np

# Percentiles kept per run for latency plots (0.1 % steps in the tail).
LAT_QUANTILES = [*range(0, 100), 99.5, 99.9, 100]


def latency_summary(lat_s: np.ndarray) -> Dict[str, object]:
    us = np.asarray(lat_s, dtype=np.float64) * 1e6
    return {
        "n": len(us),
        "qps": float(len(us) / (us.sum() / 1e6)) if len(us) else 0.0,
        "mean_us": float(us.mean()),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "p999_us": float(np.percentile(us, 99.9)),
        "max_us": float(us.max()),
        "quantiles_us": [round(float(v), 1) for v in np.percentile(us, LAT_QUANTILES)],
    }


def memory() -> Dict[str, float]:
    """This process's resident memory in MiB: total, file-backed vs anonymous
    (from /proc/self/status), and PSS split from /proc/self/smaps_rollup."""
    out: Dict[str, float] = {}
    want = {"VmRSS": "rss_mb", "RssAnon": "rss_anon_mb", "RssFile": "rss_file_mb"}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in want:
                out[want[key]] = int(line.split()[1]) / 1024
        roll = {"Pss": "pss_mb", "Pss_Anon": "pss_anon_mb", "Pss_File": "pss_file_mb"}
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            key = line.split(":")[0]
            if key in roll:
                out[roll[key]] = int(line.split()[1]) / 1024
    except OSError:  # not Linux
        import resource

        out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loadavg() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def dir_bytes(path: str) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parents[2]  # the repository
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# The distributions whose versions every record carries (the peers, and matplotlib).
PEER_DISTRIBUTIONS = (
    "faiss-cpu",
    "hnswlib",
    "usearch",
    "scann",
    "pyglass-portable",
    "rabitqlib",
    "zvec",
    "pyvsag",
    "matplotlib",
)


def machine_info(command: Optional[str] = None) -> dict:
    """What a reader needs to judge the figures: CPU, cores, memory, versions, commit."""
    import svve_core

    mem_gb = None
    with contextlib.suppress(ValueError, OSError):
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    dirty = _git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock", "svve_core")
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "svve_core": svve_core.__version__,
        "svve_isa": svve_core.isa(),
        "svve_build_sha256": svve_core.build_id(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty_core": [line for line in dirty.splitlines() if line],
        "versions": {d: _version(d) for d in PEER_DISTRIBUTIONS},
        "command": command or " ".join([Path(sys.executable).name, *sys.argv]),
    }


class Tee:
    """stdout, copied to a file as it is written (a study's report)."""

    def __init__(self, path: Optional[Path]) -> None:
        self.file = path.open("w") if path else None

    def write(self, s: str) -> int:
        sys.__stdout__.write(s)
        if self.file:
            self.file.write(s)
        return len(s)

    def flush(self) -> None:
        sys.__stdout__.flush()
        if self.file:
            self.file.flush()
