"""Durability and concurrency of live collections.

- SIGKILL at random points of a writer that adds, upserts, deletes,
  commits, checkpoints, merges and compacts (``collection_workload.py``),
  50 times over one collection: after every kill the collection opens (as
  writer and reader) and holds exactly the rows of a committed state: the
  last commit that returned, or the one the kill interrupted (never a
  part of it).
- A full disk fails a commit with a typed error and leaves the last
  committed generation intact (needs a small tmpfs: root only).
- One writer process ingesting and 4 reader processes refreshing and
  searching: no errors, every answer consistent with one committed
  generation, every commit seen by every reader.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import collection_workload as wl
import numpy as np
import pytest

from svve_core import Collection, SearchParams
from svve_core.exceptions import IndexIOError

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

HERE = Path(__file__).parent
EXACT = SearchParams(exact=True)
KILLS = int(os.environ.get("SVVE_COLLECTION_KILLS", "50"))


def contents(col: Collection) -> Dict[int, float]:
    """Every live id with its exact score for a fixed query (so replaced
    vectors show up, not only the id set)."""
    q = np.linspace(-1, 1, wl.DIM).astype(np.float32)
    n = len(col)
    if n == 0:
        return {}
    ids, scores = col.search(q, n, EXACT)
    assert len(ids) == n
    assert len(set(ids.tolist())) == n
    return dict(zip(ids.tolist(), scores.tolist()))


def expected(model: wl.Model) -> Dict[int, float]:
    q = np.linspace(-1, 1, wl.DIM)
    out = {}
    for i, v in model.items():
        v = v.astype(np.float64)
        out[i] = float(q @ v / (np.linalg.norm(q) * np.linalg.norm(v)))
    return out


def same(got: Dict[int, float], want: Dict[int, float]) -> bool:
    return got.keys() == want.keys() and all(abs(got[i] - want[i]) < 1e-4 for i in got)


def test_sigkill_loses_no_commit_and_applies_no_partial_one(tmp_path: Path) -> None:
    d = tmp_path / "col"
    Collection.create(d, dim=wl.DIM, config=wl.CONFIG).close()
    journal = tmp_path / "journal"
    rng = random.Random(5)
    committed = 0
    outcomes = {"interrupted commit applied": 0, "interrupted commit absent": 0, "idle": 0}
    for run in range(KILLS):
        journal.write_text("")
        child = subprocess.Popen(
            [sys.executable, str(HERE / "collection_workload.py"), str(d), str(committed)],
            cwd=HERE,
            stderr=subprocess.PIPE,
        )
        # The kill's moment counts from the first commit begun, not from the
        # start: under load (a build beside the tests) starting Python and
        # importing took most of the old 0.3-1.2 s window, and 50 kills
        # landed after 25 commits.
        started = time.monotonic()
        while "begin" not in journal.read_text() and child.poll() is None:
            if time.monotonic() - started > 120:
                child.kill()
                pytest.fail("the workload began no commit in 120 s")
            time.sleep(0.01)
        time.sleep(rng.uniform(0.3, 1.2))
        if child.poll() is not None:
            pytest.fail(f"workload exited early: {child.stderr.read().decode()[-2000:]}")
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()
        lines = journal.read_text().split()
        begun = [int(x) for k, x in zip(lines[::2], lines[1::2]) if k == "begin"]
        ended = [int(x) for k, x in zip(lines[::2], lines[1::2]) if k == "end"]
        last_end = ended[-1] if ended else committed
        last_begin = begun[-1] if begun else committed
        # The collection opens after every kill, as reader and as writer.
        got = contents(Collection.open(d, readonly=True))
        writer = Collection.open(d)
        assert same(contents(writer), got)
        writer.close()
        del writer
        if same(got, expected(wl.model_after(last_end))):
            committed = last_end
            key = "idle" if last_begin == last_end else "interrupted commit absent"
        elif last_begin > last_end and same(got, expected(wl.model_after(last_begin))):
            committed = last_begin
            key = "interrupted commit applied"
        else:
            pytest.fail(
                f"run {run}: the collection holds {len(got)} rows, matching neither commit "
                f"{last_end} (returned) nor {last_begin} (interrupted)"
            )
        outcomes[key] += 1
    print(f"{KILLS} kills, {committed} commits: {outcomes}")
    assert committed > KILLS, "the workload made too little progress to test anything"
    # Kills landed inside commits, not only between them.
    assert outcomes["interrupted commit applied"] + outcomes["interrupted commit absent"] > 0, (
        outcomes
    )


@pytest.fixture
def small_disk(tmp_path: Path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_keeps_the_last_commit(small_disk: Path) -> None:
    d = small_disk / "col"
    col = Collection.create(d, dim=64, config=wl.CONFIG)
    x = np.random.default_rng(1).standard_normal((2000, 64)).astype(np.float32)
    col.add(x[:40], ids=np.arange(40))
    g = col.commit()
    failed = None
    for i in range(40, 2000, 40):  # until the disk is full
        col.add(x[i : i + 40], ids=np.arange(i, i + 40))
        try:
            g = col.commit()
        except IndexIOError as e:
            failed = e
            break
    assert failed is not None, "the disk never filled up"
    assert "No space left" in str(failed)
    ro = Collection.open(d, readonly=True)
    assert ro.info().generation == g
    n = len(ro)
    assert n >= 40
    assert n % 40 == 0
    assert set(contents_ids(ro)) == set(range(n))
    assert len(col) == n + 40  # the writer still holds the failed commit's rows
    col.close()


def test_read_only_filesystem_keeps_the_last_commit(small_disk: Path) -> None:
    d = small_disk / "col"
    col = Collection.create(d, dim=16, config=wl.CONFIG)
    x = np.random.default_rng(2).standard_normal((200, 16)).astype(np.float32)
    col.add(x[:30])
    g = col.commit()
    r = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot remount read-only here")
    try:
        col.add(x[30:40])
        with pytest.raises(IndexIOError, match="Read-only"):
            col.commit()
        col.add(x[40:200])  # enough for a checkpoint: a new segment file
        with pytest.raises(IndexIOError, match="Read-only"):
            col.commit()
        ro = Collection.open(d, readonly=True)
        assert ro.info().generation == g
        assert len(ro) == 30
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], capture_output=True)
    # Writable again: the writer commits everything it held.
    assert col.commit() > g
    ro = Collection.open(d, readonly=True)
    assert len(ro) == 200
    col.close()


def contents_ids(col: Collection) -> List[int]:
    return col.search(np.ones(col.dim, np.float32), len(col), EXACT)[0].tolist()


_READER = r"""
import os, sys, time, json
import numpy as np
from svve_core import Collection, SearchParams
d, stop, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
ro = Collection.open(d, readonly=True)
open(f"{stop}.ready.{os.getpid()}", "w").close()
exact = SearchParams(exact=True)
rng = np.random.default_rng(0)
data = np.random.default_rng(42).standard_normal((20000, 32)).astype(np.float32)
norm = data / np.linalg.norm(data, axis=1, keepdims=True)
seen, errors, answers = {}, [], 0
# Run until the writer says it is done, then once more: the last pass must
# reach the last commit. The cap only guards against a writer that died.
cap, last = time.time() + 120.0, False
while not last and time.time() < cap:
    last = os.path.exists(stop)
    try:
        if ro.refresh():
            seen[ro.info().generation] = time.time()
        n = len(ro)
        if n % batch:
            errors.append(f"{n} rows: not a whole number of committed batches")
        q = data[rng.integers(len(data))]
        ids, scores = ro.search(q, 10, exact)
        want = np.argsort(-(norm[:n] @ (q / np.linalg.norm(q))), kind="stable")[:10]
        if set(ids.tolist()) != set(want.tolist()) and not np.allclose(
            np.sort(scores), np.sort((norm[:n] @ (q / np.linalg.norm(q)))[want]), atol=1e-5
        ):
            errors.append(f"answer over {n} rows differs from brute force")
        approx, _ = ro.search(q, 10)
        if (approx >= n).any():
            errors.append("an approximate answer holds an uncommitted row")
        answers += 1
        time.sleep(0.005)
    except Exception as e:
        errors.append(repr(e))
print(json.dumps({"seen": seen, "errors": errors[:5], "n_errors": len(errors), "answers": answers}))
"""


def test_writer_and_four_readers_under_ingest(tmp_path: Path) -> None:
    import json

    d = tmp_path / "col"
    batch = 250
    data = np.random.default_rng(42).standard_normal((20000, 32)).astype(np.float32)
    col = Collection.create(d, dim=32)
    col.add(data[:batch], ids=np.arange(batch))
    col.commit()
    stop = tmp_path / "writer-done"
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", _READER, str(d), str(stop), str(batch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    # The writer starts once every reader has opened (imports are slow under load).
    deadline = time.time() + 60.0
    while len(list(tmp_path.glob("writer-done.ready.*"))) < len(readers):
        assert time.time() < deadline, "readers did not open the collection within 60 s"
        time.sleep(0.05)
    committed: Dict[int, float] = {}
    i = batch
    end = time.time() + 4.0
    while time.time() < end and i + batch <= len(data):
        col.add(data[i : i + batch], ids=np.arange(i, i + batch))
        committed[col.commit()] = time.time()
        i += batch
        if len(committed) % 7 == 0:
            committed[col.compact()] = time.time()
        time.sleep(0.05)
    stop.touch()
    outs = []
    for r in readers:
        out, err = r.communicate(timeout=60)
        assert r.returncode == 0, err.decode()[-2000:]
        outs.append(json.loads(out))
    delays = []
    for o in outs:
        assert o["n_errors"] == 0, o["errors"]
        assert o["answers"] > 50
        seen = {int(g): t for g, t in o["seen"].items()}
        # Every commit after the readers' start is reached (a reader may skip
        # a generation that was superseded within one refresh interval).
        assert max(seen) == max(committed)
        # Lag counts from commits after the reader's first look: a reader
        # still importing under load is not a reader that stalls.
        opened = min(seen.values())
        delays += [seen[g] - t for g, t in committed.items() if g in seen and t >= opened]
    # Visibility within 1 s is a target of the benchmark (2 cores shared
    # by 5 processes here); this only catches a reader that stalls.
    assert max(delays) < 5.0, max(delays)
    print(f"visibility delay: median {np.median(delays):.3f} s, max {max(delays):.3f} s")
