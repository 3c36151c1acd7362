"""Live collections (``svve_core.Collection``): behaviour against a numpy model.

- Exact search equals numpy brute force over the live rows after every kind
  of change, committed or not, across checkpoints, merges and compaction.
- Readers see exactly the committed generation they refreshed to; the writer
  sees its own uncommitted changes; a reopen keeps what was committed only.
- Bad input raises the library's typed errors and changes nothing.
- Damaged files are refused with an error naming the file.

The model-based (hypothesis stateful) test is at the end.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from support import METRICS, brute_force, clustered
from svve_core import Collection, CollectionConfig, IndexConfig, SearchEngine, SearchParams
from svve_core.exceptions import (
    CollectionClosedError,
    CollectionExistsError,
    CollectionLockedError,
    CollectionNotFoundError,
    CorruptIndexError,
    DimensionMismatchError,
    DuplicateIdError,
    IndexIOError,
    InvalidDTypeError,
    InvalidParameterError,
    InvalidShapeError,
    InvalidVectorError,
    NonFiniteError,
    ReadOnlyCollectionError,
    SVVEError,
)

EXACT = SearchParams(exact=True)
DIM = 16
# Small checkpoints and merges, so a few hundred rows exercise all of them.
SMALL = CollectionConfig(fresh_rows=40, merge_factor=2)


def model_top(model: Dict[int, np.ndarray], q: np.ndarray, metric: str, k: int):
    """Top-k (ids, scores) of ``q`` over ``model`` by numpy brute force."""
    if not model:
        return np.empty(0, np.int64), np.empty(0)
    ids = np.array(sorted(model), dtype=np.int64)
    rows = np.stack([model[i] for i in ids])
    s = brute_force(rows, q, metric)[0]
    key = s if metric == "l2" else -s
    order = np.lexsort((ids, key))[:k]
    return ids[order], s[order]


def assert_exact(col: Collection, model: Dict[int, np.ndarray], q: np.ndarray, metric: str, k=10):
    ids, scores = col.search(q, k, EXACT)
    want_ids, want_scores = model_top(model, q, metric, k)
    assert len(ids) == min(k, len(model))
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)
    # Each score is its own row's (a right score under a wrong id fails).
    if len(ids):
        own = brute_force(np.stack([model[i] for i in ids.tolist()]), q, metric)[0]
        np.testing.assert_allclose(scores, own, rtol=1e-4, atol=1e-4)
    # Ids may differ only where scores tie within rounding.
    diff = ids != want_ids
    if diff.any():
        np.testing.assert_allclose(scores[diff], want_scores[diff], rtol=1e-5, atol=1e-5)
        assert set(ids[~diff]) <= set(want_ids)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path / "col"


def rows(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    return clustered(n, dim, clusters=5, seed=seed)


# -- API and visibility ------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_exact_search_follows_every_change(tmp: Path, metric: str) -> None:
    col = Collection.create(tmp, dim=DIM, metric=metric, config=SMALL)
    model: Dict[int, np.ndarray] = {}
    x = rows(300, 1)
    ids = col.add(x[:100])
    assert ids.dtype == np.int64
    assert list(ids) == list(range(100))
    model.update(zip(ids.tolist(), x[:100]))
    col.commit()
    more = col.add(x[100:200], ids=np.arange(1000, 1100))
    model.update(zip(more.tolist(), x[100:200]))
    assert col.delete(np.array([0, 5, 1050, 424242])) == 3
    for i in (0, 5, 1050):
        del model[i]
    col.upsert(x[200:210], ids=np.arange(10, 20))
    model.update(zip(range(10, 20), x[200:210]))
    qs = rows(5, 99)
    for q in qs:
        assert_exact(col, model, q, metric)
    col.commit()
    for q in qs:
        assert_exact(col, model, q, metric)
    assert len(col) == len(model)
    col.compact()
    info = col.info()
    assert len(info.segments) == 1
    assert info.fresh == 0
    assert info.segments[0].deleted == 0
    for q in qs:
        assert_exact(col, model, q, metric)
    # Batches agree with single queries.
    b_ids, b_scores = col.search_batch(qs, 7, EXACT)
    for q, i, s in zip(qs, b_ids, b_scores):
        one_i, one_s = col.search(q, 7, EXACT)
        np.testing.assert_array_equal(i, one_i)
        np.testing.assert_allclose(s, one_s, rtol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_many_fresh_rows_are_scored_exactly(tmp: Path, metric: str) -> None:
    # More fresh rows than one kernel call scores (64), and not a multiple.
    col = Collection.create(tmp, dim=DIM, metric=metric)
    x = rows(150, 11)
    col.add(x)
    assert col.info().fresh == 150
    model = dict(enumerate(x))
    for q in rows(5, 12):
        assert_exact(col, model, q, metric, k=10)
        assert_exact(col, model, q, metric, k=150)
        assert np.array_equal(col.search(q, 10)[0], col.search(q, 10, EXACT)[0])


def test_results_have_min_k_live_rows(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM, config=SMALL)
    q = rows(1, 3)[0]
    assert col.search(q, 5)[0].shape == (0,)
    assert col.search_batch(rows(2, 4), 5)[0].shape == (2, 0)
    col.add(rows(200, 5))
    col.commit()
    col.delete(np.arange(197))
    for params in (None, EXACT, SearchParams(target_recall=0.8)):
        ids, _ = col.search(q, 10, params)
        assert sorted(ids.tolist()) == [197, 198, 199]
    col.commit()
    col.delete(np.arange(200))
    assert col.search(q, 10)[0].shape == (0,)
    assert len(col) == 0


def test_search_stats_count_segments_and_fresh_rows(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM, config=SMALL)
    col.add(rows(300, 6))
    col.commit()
    q = rows(1, 7)[0]
    ids, _, stats = col.search_stats(q, 10)
    assert set(stats) == {"probed", "scanned", "survivors", "rescored"}
    assert np.array_equal(ids, col.search(q, 10)[0])
    segment_rows = stats["rescored"]
    assert 10 <= segment_rows <= len(col)
    assert stats["scanned"] <= len(col)
    # Fresh rows are scored exactly: each one counts as rescored.
    col.add(rows(7, 8), ids=np.arange(1000, 1007))
    assert col.search_stats(q, 10)[2]["rescored"] == segment_rows + 7
    _, _, exact = col.search_stats(q, 10, EXACT)
    assert exact["rescored"] == len(col)
    assert exact["scanned"] == 0


def test_readers_see_committed_generations_only(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM, config=SMALL)
    ro = Collection.open(tmp, readonly=True)
    assert len(ro) == 0
    assert ro.readonly
    assert not col.readonly
    col.add(rows(50, 1))
    assert len(col) == 50
    assert col.info().uncommitted
    assert ro.refresh() is False
    assert len(ro) == 0
    g = col.commit()
    assert not col.info().uncommitted
    assert len(ro) == 0
    assert ro.refresh() is True
    assert len(ro) == 50
    assert ro.info().generation == g
    assert ro.refresh() is False
    # A reader opened later starts at the newest generation.
    col.delete(np.arange(10))
    col.commit()
    assert len(Collection.open(tmp, readonly=True)) == 40
    # Many commits with checkpoints and merges in between: the reader follows.
    for i in range(6):
        col.add(rows(30, 10 + i))
        col.commit()
        assert ro.refresh() is True
        assert len(ro) == len(col)
    with pytest.raises(ReadOnlyCollectionError):
        ro.add(rows(1, 1))
    with pytest.raises(ReadOnlyCollectionError):
        ro.commit()


def test_reopen_keeps_only_committed(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM, config=SMALL)
    col.add(rows(100, 1))
    col.commit()
    col.add(rows(10, 2))
    col.delete(np.arange(50))
    col.close()
    del col
    col = Collection.open(tmp)
    assert len(col) == 100
    # Automatic ids never reuse one ever handed out, even uncommitted ones
    # that were lost are fine to reuse, but committed ones never are.
    new = col.add(rows(3, 3))
    assert new.min() >= 100


def test_closed_handles_say_so(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM)
    col.add(rows(3, 1))
    assert col.commit() == col.generation == 1
    col.close()
    assert "closed" in repr(col)
    for call in (lambda: len(col), col.info, col.commit, lambda: col.search(rows(1, 2)[0])):
        with pytest.raises(CollectionClosedError, match="closed"):
            call()
    with Collection.open(tmp) as again:  # the lock was released
        assert len(again) == 3


def test_one_writer(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM)
    with pytest.raises(CollectionLockedError, match="readonly=True"):
        Collection.open(tmp)
    with pytest.raises(CollectionExistsError):
        Collection.create(tmp, dim=DIM)
    col.close()
    del col
    Collection.open(tmp).close()
    with pytest.raises(CollectionNotFoundError):
        Collection.open(tmp.parent / "nothing-here")
    with pytest.raises(CollectionNotFoundError):
        Collection.open(tmp.parent / "nothing-here", readonly=True)


def test_ids_and_vectors_are_checked(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM)
    x = rows(4, 1)
    col.add(x, ids=[1, 2, 3, 4])
    col.commit()
    cases = [
        (lambda: col.add(x, ids=[5, 6, 7, 5]), DuplicateIdError),
        (lambda: col.add(x, ids=[5, 6, 7, 1]), DuplicateIdError),
        (lambda: col.upsert(x, ids=[5, 5, 6, 7]), DuplicateIdError),
        (lambda: col.delete([9, 9]), DuplicateIdError),
        (lambda: col.add(x, ids=[2**63, 6, 7, 8]), InvalidParameterError),
        (
            lambda: col.add(x, ids=np.array([2**63, 1, 2, 3], dtype=np.uint64)),
            InvalidParameterError,
        ),
        (lambda: col.add(x, ids=np.array([1.0, 2, 3, 4])), InvalidDTypeError),
        (lambda: col.add(x, ids=[5, 6]), InvalidShapeError),
        (lambda: col.add(x.astype(np.float64)), InvalidDTypeError),
        (lambda: col.add(x[:, :8].copy()), DimensionMismatchError),
        (lambda: col.add(np.full((1, DIM), np.nan, np.float32)), NonFiniteError),
        (lambda: col.add(np.zeros((1, DIM), np.float32)), InvalidVectorError),
        (lambda: col.search(x[0][:3], 3), DimensionMismatchError),
        (lambda: col.search(x[0], 0), InvalidParameterError),
        (lambda: Collection.create(tmp.parent / "c2", dim=0), InvalidParameterError),
        (
            lambda: Collection.create(tmp.parent / "c3", dim=4, metric="cosin"),
            InvalidParameterError,
        ),
    ]
    for call, err in cases:
        with pytest.raises(err) as e:
            call()
        assert isinstance(e.value, SVVEError)
        assert "\n" not in str(e.value)
    # (Pydantic's messages span lines: issue 16 shortens every model's.)
    with pytest.raises(InvalidParameterError, match="merge_factor"):
        CollectionConfig(merge_factor=1)
    # Nothing above changed the collection.
    assert len(col) == 4
    assert not col.info().uncommitted
    np.testing.assert_array_equal(np.sort(col.search(x[0], 10, EXACT)[0]), [1, 2, 3, 4])


def test_approximate_search_reaches_the_target(tmp: Path) -> None:
    # Queries are held-out rows: calibration measures on rows like them.
    x = clustered(6200, 32, clusters=40, seed=7)
    x, q = x[:6000], x[6000:]
    col = Collection.create(tmp, dim=32, config=CollectionConfig(fresh_rows=1000, merge_factor=3))
    for i in range(6):
        col.add(x[i * 1000 : (i + 1) * 1000])
        col.commit()
    dead = np.arange(0, 6000, 7)
    col.delete(dead)
    col.commit()
    live = np.setdiff1d(np.arange(6000), dead)
    truth = brute_force(x[live], q, "cosine")
    want = live[np.argsort(-truth, axis=1)[:, :10]]
    for target in (0.9, 0.99):
        got, _ = col.search_batch(q, 10, SearchParams(target_recall=target))
        r = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
        assert r >= target - 0.02, (target, r, col.info())
        assert not np.isin(got, dead).any()


def test_a_grown_stack_is_calibrated_as_one(tmp: Path) -> None:
    x = clustered(20200, 16, clusters=60, seed=5)
    x, q = x[:20000], x[20000:]
    col = Collection.create(tmp, dim=16, config=CollectionConfig(fresh_rows=2000))
    col.add(x[:8000])
    col.commit()  # the base, calibrated on its 8000 rows
    assert col.info().calibration is None
    for i in range(8000, 20000, 2000):
        col.add(x[i : i + 2000])
        col.commit()  # segments on the base's partitions
    info = col.info()
    assert len(info.segments) > 1
    stack = info.calibration  # measured on the segments as one stack
    assert stack is not None
    assert stack.source.startswith("collection rows")
    base = SearchEngine(sorted(tmp.glob("seg-*.svve"))[0]).info().calibration
    assert [p.target for p in stack.points] == [p.target for p in base.points]
    truth = brute_force(x, q, "cosine")
    want = np.argsort(-truth, axis=1)[:, :10]
    for target in (0.9, 0.95, 0.99):
        got, _ = col.search_batch(q, 10, SearchParams(target_recall=target))
        r = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
        assert r >= target - 0.02, (target, r)
    # A reader uses the same calibration.
    assert Collection.open(tmp, readonly=True).info().calibration == stack


def test_searches_run_while_the_writer_compacts(tmp: Path) -> None:
    import threading

    x = clustered(30000, 32, clusters=50, seed=3)
    col = Collection.create(tmp, dim=32, config=CollectionConfig(fresh_rows=2000))
    col.add(x[:10000])
    col.commit()
    # Changes no search has seen yet: the compaction (which commits them,
    # then retrains everything) must publish them before it starts working.
    col.add(x[10000:])
    compaction = threading.Thread(target=col.compact)
    compaction.start()
    time.sleep(0.1)
    answers = []
    while compaction.is_alive():
        answers.append(col.search(x[20007], 5)[0][0])
    compaction.join()
    assert len(answers) >= 5, "searches waited for the compaction"
    assert all(i == 20007 for i in answers)
    assert len(col.info().segments) == 1


def test_segments_are_ordinary_index_files(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM, config=CollectionConfig(fresh_rows=50))
    x = rows(5000, 1)
    col.add(x[:4500])
    col.commit()  # the base: trained partitions, calibrated
    col.add(x[4500:4560])
    col.commit()  # a segment on the base's partitions: more partitions than rows
    base, delta = (SearchEngine(p) for p in sorted(tmp.glob("seg-*.svve")))
    assert len(base) == 4500
    assert base.info().calibration is not None
    assert len(delta) == 60
    assert delta.info().partitions == base.info().partitions > 60
    np.testing.assert_array_equal(delta.arrays()["centroids"], base.arrays()["centroids"])
    ids, _ = delta.search(x[4510], 5, EXACT)
    assert ids[0] == 4510


def test_drifted_rows_retrain_the_partitions(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM, metric="l2", config=CollectionConfig(fresh_rows=100))
    col.add(rows(1000, 1))
    col.commit()
    assert [s.rows for s in col.info().segments] == [1000]
    col.add(rows(150, 2))  # same distribution: a segment on the base's partitions
    col.commit()
    assert [s.rows for s in col.info().segments] == [1000, 150]
    far = rows(150, 3) + 100.0  # far from every centroid
    col.add(far)
    col.commit()
    assert [s.rows for s in col.info().segments] == [1300], "drift did not retrain"
    ids, _ = col.search(far[0], 3)
    assert ids[0] == 1150


# -- files on disk -------------------------------------------------------------


def _with_log_records(tmp: Path) -> Collection:
    col = Collection.create(tmp, dim=DIM, config=CollectionConfig(fresh_rows=40, merge_factor=10))
    col.add(rows(60, 1))
    col.commit()  # a segment
    col.add(rows(5, 2))
    col.delete([1, 2])
    col.commit()  # log records
    return col


def test_damaged_manifest_is_refused_naming_it(tmp: Path) -> None:
    _with_log_records(tmp).close()
    newest = sorted(tmp.glob("gen-*"))[-1]
    data = bytearray(newest.read_bytes())
    data[10] ^= 0x01
    newest.write_bytes(bytes(data))
    for readonly in (True, False):
        with pytest.raises(CorruptIndexError, match=newest.name):
            Collection.open(tmp, readonly=readonly)


def test_truncated_log_is_refused_naming_it(tmp: Path) -> None:
    _with_log_records(tmp).close()
    (log,) = [p for p in tmp.glob("wal-*") if p.stat().st_size > 16]
    log.write_bytes(log.read_bytes()[:-3])
    with pytest.raises(CorruptIndexError, match=log.name):
        Collection.open(tmp, readonly=True)


def test_damaged_deletion_file_is_refused(tmp: Path) -> None:
    col = _with_log_records(tmp)
    col.add(rows(60, 3))
    col.commit()  # checkpoint: the deletes go into a deletion file
    col.close()
    del col
    (d,) = tmp.glob("del-*")
    data = bytearray(d.read_bytes())
    data[-6] ^= 0xFF
    d.write_bytes(bytes(data))
    with pytest.raises(CorruptIndexError, match=d.name):
        Collection.open(tmp, readonly=True)


def test_uncommitted_log_bytes_are_ignored(tmp: Path) -> None:
    col = _with_log_records(tmp)
    n = len(col)
    col.close()
    del col
    (log,) = [p for p in tmp.glob("wal-*") if p.stat().st_size > 16]
    with open(log, "ab") as f:  # what a commit killed before its manifest leaves
        f.write(b"\x07" * 50)
    assert len(Collection.open(tmp, readonly=True)) == n
    col = Collection.open(tmp)
    assert len(col) == n
    col.add(rows(2, 9))
    col.commit()
    assert len(Collection.open(tmp, readonly=True)) == n + 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_keeps_the_committed_state(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM, config=SMALL)
    col.add(rows(10, 1))
    g = col.commit()
    os.chmod(tmp, stat.S_IRUSR | stat.S_IXUSR)
    try:
        col.add(rows(100, 2))
        with pytest.raises(IndexIOError):
            col.commit()
    finally:
        os.chmod(tmp, stat.S_IRWXU)
    assert Collection.open(tmp, readonly=True).info().generation == g
    assert len(Collection.open(tmp, readonly=True)) == 10
    # The writer kept its changes and commits them once it can.
    assert col.commit() > g
    assert len(Collection.open(tmp, readonly=True)) == 110


def test_unreferenced_files_are_removed(tmp: Path) -> None:
    col = Collection.create(tmp, dim=DIM, config=SMALL)
    for i in range(8):
        col.add(rows(45, i))
        col.commit()
    col.compact()
    col.add(rows(1, 99))
    col.commit()  # the compacted generation is now the previous one
    names = sorted(p.name for p in tmp.iterdir())
    assert len([n for n in names if n.startswith("gen-")]) == 2
    assert len([n for n in names if n.startswith("seg-")]) == 1, names
    assert len([n for n in names if n.startswith("wal-")]) == 1, names
    (tmp / ".seg-000099.svve.tmp-1-1").write_bytes(b"junk")  # a killed build's leftover
    (tmp / "notes.txt").write_text("user file")
    col.close()
    del col
    Collection.open(tmp).close()
    assert not (tmp / ".seg-000099.svve.tmp-1-1").exists()
    assert (tmp / "notes.txt").exists()


# -- model-based ---------------------------------------------------------------


class CollectionModel(RuleBasedStateMachine):
    """Random add / upsert / delete / commit / compact / reopen / refresh
    against a dict model of the working and the committed rows."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.dir = Path(tempfile.mkdtemp(dir=base)) / "c"
        self.metric = "cosine"
        self.col = Collection.create(
            self.dir,
            dim=8,
            metric=self.metric,
            config=CollectionConfig(
                fresh_rows=12, merge_factor=2, segment=IndexConfig(calibrate=False)
            ),
        )
        self.reader = Collection.open(self.dir, readonly=True)
        self.work: Dict[int, np.ndarray] = {}
        self.committed: Dict[int, np.ndarray] = {}
        self.seen: Dict[int, np.ndarray] = {}  # what the reader refreshed to
        self.rng = np.random.default_rng(0)

    def _rows(self, n: int) -> np.ndarray:
        return clustered(n, 8, clusters=3, seed=int(self.rng.integers(1 << 30)))

    @rule(n=st.integers(1, 15))
    def add(self, n: int) -> None:
        x = self._rows(n)
        ids = self.col.add(x)
        self.work.update(zip(ids.tolist(), x))

    @rule(n=st.integers(1, 6), data=st.data())
    def upsert(self, n: int, data: st.DataObject) -> None:
        pool = sorted(self.work) + [10_000 + i for i in range(5)]
        ids = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=n, unique=True))
        x = self._rows(len(ids))
        self.col.upsert(x, ids=np.array(ids, dtype=np.int64))
        self.work.update(zip(ids, x))

    @precondition(lambda self: len(self.work) > 0)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        pool = [*sorted(self.work), -1, 99999]
        ids = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=10, unique=True))
        n = self.col.delete(ids)
        assert n == sum(i in self.work for i in ids)
        for i in ids:
            self.work.pop(i, None)

    @rule()
    def commit(self) -> None:
        self.col.commit()
        self.committed = dict(self.work)

    @rule()
    def compact(self) -> None:
        self.col.compact()
        self.committed = dict(self.work)
        assert len(self.col.info().segments) <= 1

    @rule()
    def reopen(self) -> None:
        self.col.close()
        self.col = Collection.open(self.dir)
        self.work = dict(self.committed)

    @rule()
    def refresh(self) -> None:
        self.reader.refresh()
        self.seen = dict(self.committed)

    @invariant()
    def exact_answers_match_the_model(self) -> None:
        q = clustered(1, 8, clusters=3, seed=len(self.work))[0]
        assert len(self.col) == len(self.work)
        assert len(self.reader) == len(self.seen)
        assert_exact(self.col, self.work, q, self.metric, k=6)
        assert_exact(self.reader, self.seen, q, self.metric, k=6)
        # Approximate answers come from the live rows only, and reach the
        # default recall target (0.95) against the model's exact top-k.
        qs = clustered(5, 8, clusters=3, seed=1000 + len(self.work))
        found = 0
        for q in qs:
            ids, _ = self.col.search(q, 6)
            assert set(ids.tolist()) <= set(self.work)
            assert len(ids) == min(6, len(self.work))
            want, _ = model_top(self.work, q, self.metric, 6)
            found += len(set(ids.tolist()) & set(want.tolist()))
        if self.work:
            assert found / (len(qs) * min(6, len(self.work))) >= 0.95

    def teardown(self) -> None:
        self.col.close()


TestCollectionModel = CollectionModel.TestCase
TestCollectionModel.settings = settings(
    max_examples=int(os.environ.get("SVVE_HYPOTHESIS_EXAMPLES", "25")),
    stateful_step_count=30,
    deadline=None,
    database=None,
    derandomize="SVVE_HYPOTHESIS_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow],
)
