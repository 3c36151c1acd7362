"""Property tests (hypothesis) on small random indexes.

- Exact search *is* numpy brute force: on small-integer data (exact float32
  arithmetic for ip and l2, and many ties) scores are bitwise equal and ids
  follow the documented tie rule (lower row first); on general float32 data,
  equal within rounding.
- Results are a function of the set of (row, id) pairs, not of their order:
  shuffling rows together with their ids gives the same scores and the same
  ids (up to exactly tied scores), in exact mode and in the default
  approximate mode with one partition.
- Every answer has ``min(k, n)`` rows, unique ids from the index, scores
  best first (descending for ip/cosine, ascending for l2), and a batch row
  equals the single query.

Deterministic in CI (``derandomize``, no example database); set
``SVVE_HYPOTHESIS_EXAMPLES`` to explore more.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from support import METRICS, best_first, brute_force
from svve_core import IndexConfig, SearchEngine, SearchParams, build_index

EXACT = SearchParams(exact=True)
# Every build fsyncs its file and directory: on tmpfs that costs nothing.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
EXAMPLES = int(os.environ.get("SVVE_HYPOTHESIS_EXAMPLES", "30"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize="SVVE_HYPOTHESIS_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def problems(
    draw: st.DrawFn, integers: bool
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, str, int]:
    """(rows (n, d), unique int64 ids (n,), queries (q, d), metric, k)."""
    metric = draw(st.sampled_from(METRICS))
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 24))
    q = draw(st.integers(1, 3))
    if integers:
        elements = st.integers(-4, 4).map(float)
    else:
        elements = st.floats(-50, 50, width=32, allow_subnormal=True)
    rows = draw(hnp.arrays(np.float32, (n, d), elements=elements))
    queries = draw(hnp.arrays(np.float32, (q, d), elements=elements))
    if metric == "cosine":  # zero vectors have no cosine similarity
        assume(bool((np.abs(rows).sum(1) > 0).all()))
        assume(bool((np.abs(queries).sum(1) > 0).all()))
    ids = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n, unique=True))
    k = draw(st.integers(1, n + 3))
    return rows, np.array(ids, np.int64), queries, metric, k


def _build(root: Path, name: str, rows: np.ndarray, ids: np.ndarray, metric: str) -> SearchEngine:
    path = root / name
    build_index(path, rows, ids=ids, metric=metric, config=IndexConfig(partitions=1))
    return SearchEngine(path)


def _check_answer(ids: np.ndarray, scores: np.ndarray, k: int, n: int, metric: str,
                  known: np.ndarray) -> None:  # fmt: skip
    m = min(k, n)
    assert ids.shape == scores.shape == (m,)
    assert ids.dtype == np.int64
    assert scores.dtype == np.float32
    assert len(set(ids.tolist())) == m, "an id repeats"
    assert set(ids.tolist()) <= set(known.tolist()), "an id that was never indexed"
    assert np.isfinite(scores).all()
    steps = np.diff(scores)
    assert (steps >= 0).all() if metric == "l2" else (steps <= 0).all(), scores


def _tie_groups(scores: np.ndarray) -> List[np.ndarray]:
    """Positions of runs of equal scores (scores are sorted)."""
    if len(scores) == 0:
        return []
    cuts = np.flatnonzero(scores[1:] != scores[:-1]) + 1
    return np.split(np.arange(len(scores)), cuts)


def _assert_same_up_to_ties(a: Tuple[np.ndarray, np.ndarray], b: Tuple[np.ndarray, np.ndarray],
                            full: Tuple[np.ndarray, np.ndarray]) -> None:  # fmt: skip
    """Same scores (bitwise) and the same ids, except that rows whose scores
    tie exactly may come in either order, and the last tied group may be cut
    at k differently (its ids come from the same tied group of ``full``)."""
    (ids_a, sc_a), (ids_b, sc_b) = a, b
    np.testing.assert_array_equal(sc_a, sc_b)
    groups = _tie_groups(sc_a)
    for g in groups[:-1]:
        assert set(ids_a[g].tolist()) == set(ids_b[g].tolist())
    if groups:
        last = groups[-1]
        tied = set(full[0][full[1] == sc_a[last[0]]].tolist())
        assert set(ids_a[last].tolist()) <= tied
        assert set(ids_b[last].tolist()) <= tied


def _tolerance(rows: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """Float32 rounding bound for each row's score against ``q``."""
    x = rows.astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "cosine":
        return np.full(len(rows), 1e-5)
    if metric == "ip":
        return 1e-5 * (1.0 + np.abs(x) @ np.abs(qq))
    return 1e-5 * (1.0 + ((np.abs(x) + np.abs(qq)) ** 2).sum(1))


# --- exact search is brute force ---------------------------------------------------------


@PROPERTY
@given(problems(integers=True))
def test_exact_equals_numpy_bitwise_on_integer_data(problem) -> None:
    rows, ids, queries, metric, k = problem
    assume(metric != "cosine")  # normalisation is not exact: see the float test
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        engine = _build(Path(tmp), "a.svve", rows, ids, metric)
        bf = brute_force(rows, queries, metric)
        for q, want in zip(queries, bf):
            got_ids, got_scores = engine.search(q, k, EXACT)
            _check_answer(got_ids, got_scores, k, len(rows), metric, ids)
            order = best_first(want, metric)[: min(k, len(rows))]  # stable: lower row first
            np.testing.assert_array_equal(got_scores, want[order].astype(np.float32))
            np.testing.assert_array_equal(got_ids, ids[order])


@PROPERTY
@given(problems(integers=False))
def test_exact_equals_numpy_within_rounding(problem) -> None:
    rows, ids, queries, metric, k = problem
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        engine = _build(Path(tmp), "a.svve", rows, ids, metric)
        bf = brute_force(rows, queries, metric)
        row_of = {int(v): r for r, v in enumerate(ids)}
        for q, want in zip(queries, bf):
            got_ids, got_scores = engine.search(q, k, EXACT)
            _check_answer(got_ids, got_scores, k, len(rows), metric, ids)
            tol = _tolerance(rows, q, metric)
            got_rows = np.array([row_of[int(i)] for i in got_ids], dtype=np.int64)
            # each returned score is that row's true score ...
            assert (np.abs(got_scores - want[got_rows]) <= tol[got_rows]).all()
            # ... and no row left out beats the k-th returned one by more than rounding
            order = best_first(want, metric)
            kth = want[got_rows[-1]]
            left_out = np.setdiff1d(order, got_rows)
            if len(left_out):
                better = want[left_out] < kth if metric == "l2" else want[left_out] > kth
                assert not (better & (np.abs(want[left_out] - kth) > 2 * tol[left_out])).any()


# --- permutation invariance -----------------------------------------------------------------


def _check_shuffle(problem, rnd) -> None:
    """Exact mode and the default approximate mode (one partition): the same
    scores and ids whatever the order of the rows."""
    rows, ids, queries, metric, k = problem
    perm = np.array(rnd.sample(range(len(rows)), len(rows)), dtype=np.int64)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        a = _build(Path(tmp), "a.svve", rows, ids, metric)
        b = _build(Path(tmp), "b.svve", rows[perm].copy(), ids[perm].copy(), metric)
        for q in queries:
            full = a.search(q, len(rows), EXACT)
            for params in (EXACT, None):
                ra, rb = a.search(q, k, params), b.search(q, k, params)
                _check_answer(*ra, k, len(rows), metric, ids)
                _assert_same_up_to_ties(ra, rb, full)
        for params in (EXACT, None):
            ba, bb = a.search_batch(queries, k, params), b.search_batch(queries, k, params)
            for i, q in enumerate(queries):
                _assert_same_up_to_ties((ba[0][i], ba[1][i]), (bb[0][i], bb[1][i]),
                                        a.search(q, len(rows), EXACT))  # fmt: skip


@PROPERTY
@given(problems(integers=True), st.randoms(use_true_random=False))
def test_shuffling_rows_with_ids_changes_nothing(problem, rnd) -> None:
    _check_shuffle(problem, rnd)


@PROPERTY
@given(problems(integers=False), st.randoms(use_true_random=False))
def test_shuffling_float_rows_changes_nothing(problem, rnd) -> None:
    rows, ids, queries, metric, k = problem
    perm = np.array(rnd.sample(range(len(rows)), len(rows)), dtype=np.int64)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        a = _build(Path(tmp), "a.svve", rows, ids, metric)
        b = _build(Path(tmp), "b.svve", rows[perm].copy(), ids[perm].copy(), metric)
        for q in queries:
            full = a.search(q, len(rows), EXACT)
            for params in (EXACT, None):
                _assert_same_up_to_ties(a.search(q, k, params), b.search(q, k, params), full)


# --- shape and order of every answer --------------------------------------------------------


@PROPERTY
@given(
    problems(integers=False),
    st.sampled_from([None, EXACT, SearchParams(expansion=False, candidates=1),
                     SearchParams(nprobe=1, expand_probes=1, expand_ratio=0.0),
                     SearchParams(query_bits=1, epsilon=0.0)]),
)  # fmt: skip
def test_every_answer_is_complete_sorted_and_consistent(problem, params) -> None:
    rows, ids, queries, metric, k = problem
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        engine = _build(Path(tmp), "a.svve", rows, ids, metric)
        batch_ids, batch_scores = engine.search_batch(queries, k, params)
        assert batch_ids.shape == (len(queries), min(k, len(rows)))
        for i, q in enumerate(queries):
            got = engine.search(q, k, params)
            _check_answer(*got, k, len(rows), metric, ids)
            np.testing.assert_array_equal(got[0], batch_ids[i])
            np.testing.assert_array_equal(got[1], batch_scores[i])
            stats_ids, _, stats = engine.search_stats(q, k, params)
            np.testing.assert_array_equal(stats_ids, got[0])
            assert stats["rescored"] >= min(k, len(rows))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None)
@given(problems(integers=True), st.randoms(use_true_random=False))
def test_shuffling_rows_long(problem, rnd) -> None:
    _check_shuffle(problem, rnd)
