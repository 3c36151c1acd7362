"""Crash safety of builds: a build killed with SIGKILL at any point never
leaves anything that loads as a valid index at the target path; the index
that was there stays byte-for-byte intact, loads and answers as before, and
engines that had it open keep working. The only debris a kill can leave is
a stray temporary file (``.<name>.tmp-<pid>-<nanos>``): partial ones never
load (the header is written last); one killed between fsync and rename is
the complete new index under the temporary name.

A child process builds a deterministic index; the parent kills it after a
delay (spread over the whole build, measured first) or as soon as the
temporary file reaches a given size. The default run kills 6 builds; the
slow one 40, at random points.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import pytest

from support import without_timing
from svve_core import EngineConfig, SearchEngine, SearchParams, build_index
from svve_core import exceptions as exc

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import svve_core
    path, n = sys.argv[1], int(sys.argv[2])
    x = np.random.default_rng(7).standard_normal((n, 64), dtype=np.float32)
    print("building", flush=True)
    t = time.perf_counter()
    svve_core.build_index(path, x, metric="ip")
    print(f"done {time.perf_counter() - t:.4f}", flush=True)
    """
)
EXACT = SearchParams(exact=True)


def _sha(path: Path) -> str:
    """Digest of the file, less the calibration's wall-clock time (the one
    field in which two builds of the same data differ)."""
    return hashlib.sha256(without_timing(path)).hexdigest()


def _spawn(path: Path, n: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, os.fspath(path), str(n)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SVVE_NUM_THREADS": "2"},
    )  # fmt: skip


def _readline(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"child {proc.pid} said nothing for {timeout} s"
    return proc.stdout.readline().strip()


class Reference(NamedTuple):
    n: int
    seconds: float  # how long the child's build_index takes
    new_sha: str  # the complete file the child writes
    size: int  # its length


def _reference(root: Path, n: int) -> Reference:
    path = root / "reference.svve"
    proc = _spawn(path, n)
    assert _readline(proc) == "building"
    done = _readline(proc, 300)
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    _close(proc)
    return Reference(n, float(done.split()[1]), _sha(path), path.stat().st_size)


def _close(proc: subprocess.Popen) -> None:
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class Outcome(NamedTuple):
    target: str  # "old", "new" or "absent"
    strays: int  # temporary files left behind


def _kill_build(target: Path, n: int, *, delay: Optional[float] = None,
                temp_fraction: Optional[float] = None, expected_size: int = 0) -> None:  # fmt: skip
    """Starts a build of ``target`` and SIGKILLs it after ``delay`` seconds
    (from the start of build_index) or once its temporary file holds
    ``temp_fraction`` of the final size."""
    proc = _spawn(target, n)
    try:
        assert _readline(proc) == "building"
        if delay is not None:
            time.sleep(delay)
        else:
            assert temp_fraction is not None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                temps = [p for p in target.parent.iterdir() if ".tmp-" in p.name]
                if temps and _size(temps[0]) >= temp_fraction * expected_size:
                    break
                time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _close(proc)


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return -1


def _inspect(target: Path, old_sha: Optional[str], ref: Reference) -> Outcome:
    """Checks the directory after a kill; returns what it found."""
    strays = [p for p in target.parent.iterdir() if p != target]
    for p in strays:
        assert p.name.startswith(f".{target.name}.tmp-"), f"unexpected file {p.name}"
        # A partial temporary file never loads (the header is written last).
        # One killed between its fsync and the rename is the complete new
        # index under the temporary name, byte for byte.
        try:
            SearchEngine(p, EngineConfig(verify=False))
        except exc.CorruptIndexError:
            pass
        else:
            assert _sha(p) == ref.new_sha, "a stray temporary file loads but is not complete"
        p.unlink()
    if not target.exists():
        assert old_sha is None, "the old index disappeared"
        return Outcome("absent", len(strays))
    sha = _sha(target)
    SearchEngine(target)  # loads, every checksum verified
    if sha == old_sha:
        return Outcome("old", len(strays))
    # the rename happened before the kill: then it is the complete new file
    assert sha == ref.new_sha, "the target is neither the old index nor the complete new one"
    return Outcome("new", len(strays))


def _run_kills(tmp: Path, ref: Reference, plans: List[Dict[str, float]]) -> Counter:
    data = np.random.default_rng(3).standard_normal((400, 64), dtype=np.float32)
    target = tmp / "live.svve"
    outcomes: Counter = Counter()
    for i, plan in enumerate(plans):
        fresh = i % 4 == 3  # every 4th kill: no previous index at the target
        if target.exists():
            target.unlink()
        old_sha = None
        engine = before = None
        if not fresh:
            build_index(target, data, metric="l2")
            old_sha = _sha(target)
            engine = SearchEngine(target)
            before = engine.search(data[5], 10, EXACT)
        _kill_build(target, ref.n, expected_size=ref.size, **plan)
        outcome = _inspect(target, old_sha, ref)
        outcomes[outcome.target] += 1
        outcomes["strays"] += outcome.strays
        if engine is not None and before is not None:
            # the engine that had the old file open never noticed
            after = engine.search(data[5], 10, EXACT)
            np.testing.assert_array_equal(after[0], before[0])
            if outcome.target == "old":
                again = SearchEngine(target).search(data[5], 10, EXACT)
                np.testing.assert_array_equal(again[0], before[0])
    return outcomes


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return _reference(tmp_path_factory.mktemp("crash-ref"), 60_000)


def test_killed_builds_never_leave_a_loadable_partial_index(tmp_path: Path, reference) -> None:
    t = reference.seconds
    plans: List[Dict[str, float]] = [{"delay": f * t} for f in (0.05, 0.5, 0.95, 1.1)] + [
        {"temp_fraction": f} for f in (0.0, 0.9)
    ]
    outcomes = _run_kills(tmp_path, reference, plans)
    assert outcomes["old"] + outcomes["new"] + outcomes["absent"] == len(plans)
    assert outcomes["old"] >= 2, outcomes  # the early kills land before the rename
    print(f"\nkilled builds ({reference.seconds:.2f} s each): {dict(outcomes)}")


@pytest.mark.slow
def test_killed_builds_at_random_points(tmp_path_factory: pytest.TempPathFactory) -> None:
    ref = _reference(tmp_path_factory.mktemp("crash-ref-big"), 150_000)
    rnd = random.Random(20240601)
    plans: List[Dict[str, float]] = [
        {"delay": rnd.uniform(0, 1.2 * ref.seconds)} for _ in range(32)
    ]
    plans += [{"temp_fraction": rnd.uniform(0, 1)} for _ in range(8)]
    outcomes = _run_kills(tmp_path_factory.mktemp("crash-big"), ref, plans)
    assert outcomes["old"] + outcomes["new"] + outcomes["absent"] == 40
    print(f"\nkilled builds ({ref.seconds:.2f} s each): {dict(outcomes)}")
