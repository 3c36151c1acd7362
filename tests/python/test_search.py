"""Search results: exact path vs numpy brute force, round trips, shapes,
batch/async/stats variants and approximate recall."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

import svve_core
from support import (
    assert_matches_brute_force,
    best_first,
    brute_force,
    clustered,
    recall,
    topk_ids,
    without_timing,
)
from svve_core import EngineConfig, IndexInfo, SearchEngine, SearchParams

EXACT = SearchParams(exact=True)
K = 10
STAT_KEYS = {"probed", "scanned", "survivors", "rescored"}


def _descending_is_better(metric: str) -> bool:
    return metric != "l2"


def _assert_sorted(scores: np.ndarray, metric: str) -> None:
    d = np.diff(scores, axis=-1)
    assert (d <= 0).all() if _descending_is_better(metric) else (d >= 0).all()


# --- exact path == brute force ---------------------------------------------


def test_exact_search_equals_brute_force(engine: SearchEngine, metric: str, dataset) -> None:
    bf = brute_force(dataset.data, dataset.queries, metric)
    for q, row in zip(dataset.queries, bf):
        ids, scores = engine.search(q, K, EXACT)
        assert_matches_brute_force(ids, scores, row, metric, K)
        _assert_sorted(scores, metric)


def test_exact_batch_equals_brute_force(engine: SearchEngine, metric: str, dataset) -> None:
    bf = brute_force(dataset.data, dataset.queries, metric)
    ids, scores = engine.search_batch(dataset.queries, K, EXACT)
    for i in range(len(dataset.queries)):
        assert_matches_brute_force(ids[i], scores[i], bf[i], metric, K)


def test_exact_search_of_indexed_rows(engine: SearchEngine, metric: str, dataset) -> None:
    """Each indexed row finds itself first (similarity 1 for cosine, distance 0 for l2)."""
    rows = np.arange(0, len(dataset.data), 97)
    ids, scores = engine.search_batch(dataset.data[rows], 1, EXACT)
    if metric == "ip":  # the row itself need not have the largest inner product
        bf = brute_force(dataset.data, dataset.data[rows], metric)
        np.testing.assert_array_equal(ids[:, 0], bf.argmax(1))
        return
    np.testing.assert_array_equal(ids[:, 0], rows)
    expected = 1.0 if metric == "cosine" else 0.0
    np.testing.assert_allclose(scores[:, 0], expected, atol=1e-4)


def test_cosine_is_scale_invariant(cosine_engine: SearchEngine, dataset) -> None:
    q = dataset.queries[3]
    ids, scores = cosine_engine.search(q, K, EXACT)
    ids2, scores2 = cosine_engine.search((q * np.float32(37.5)).astype(np.float32), K, EXACT)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(scores, scores2, rtol=1e-5)


def test_brute_force_check_catches_wrong_results(dataset) -> None:
    """The comparison helper itself rejects a wrong id, a wrong order and a wrong score."""
    bf = brute_force(dataset.data, dataset.queries[:1], "ip")[0]
    order = best_first(bf, "ip")[:K]
    good_ids, good_scores = order.astype(np.int64), bf[order].astype(np.float32)
    assert_matches_brute_force(good_ids, good_scores, bf, "ip", K)
    wrong_id = good_ids.copy()
    wrong_id[-1] = best_first(bf, "ip")[K + 5]
    swapped = good_ids[[1, 0, *range(2, K)]]
    off_score = good_scores * np.float32(1.001)
    for ids, scores in ((wrong_id, good_scores), (swapped, good_scores), (good_ids, off_score)):
        with pytest.raises(AssertionError):
            assert_matches_brute_force(ids, scores, bf, "ip", K)


# --- round trip with custom ids ---------------------------------------------


def test_build_load_search_round_trip_custom_ids(tmp_path: Path, metric: str, dataset) -> None:
    n = len(dataset.data)
    rng = np.random.default_rng(7)
    ids = rng.choice(np.arange(-(10**15), 10**15, 10**9, dtype=np.int64), n, replace=False)
    ids[0], ids[1] = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    path = tmp_path / "custom.svve"
    info = svve_core.build_index(path, dataset.data, ids=ids, metric=metric)
    assert info.n == n
    engine = SearchEngine(path)
    assert len(engine) == n
    assert engine.info() == info

    bf = brute_force(dataset.data, dataset.queries, metric)
    for q, row in zip(dataset.queries[:20], bf):
        got_ids, scores = engine.search(q, K, EXACT)
        assert_matches_brute_force(got_ids, scores, row, metric, K, ids_of_rows=ids)
        approx_ids, _ = engine.search(q, K)
        assert np.isin(approx_ids, ids).all()

    # every id is stored: the whole index comes back for k = n
    all_ids, _ = engine.search(dataset.queries[0], n, EXACT)
    np.testing.assert_array_equal(np.sort(all_ids), np.sort(ids))

    # querying with indexed rows returns their custom ids (not row numbers)
    if metric != "ip":
        rows = np.array([0, 1, 5, 1999])
        got, _ = engine.search_batch(dataset.data[rows], 1, EXACT)
        np.testing.assert_array_equal(got[:, 0], ids[rows])


def test_rebuild_replaces_index(tmp_path: Path, dataset) -> None:
    path = tmp_path / "re.svve"
    svve_core.build_index(path, dataset.data[:100], metric="l2")
    svve_core.build_index(path, dataset.data[100:350], metric="ip")
    engine = SearchEngine(path)
    assert (len(engine), engine.info().metric) == (250, "ip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["re.svve"]


def test_old_engine_survives_rebuild(tmp_path: Path, dataset) -> None:
    """Files are replaced, never modified, so a loaded engine keeps working."""
    path = tmp_path / "live.svve"
    svve_core.build_index(path, dataset.data[:500], metric="l2")
    old = SearchEngine(path)
    before = old.search(dataset.queries[0], K, EXACT)
    svve_core.build_index(path, dataset.data[500:800], metric="l2")
    after = old.search(dataset.queries[0], K, EXACT)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert len(SearchEngine(path)) == 300


def test_pathlike_and_str_paths(tmp_path: Path, dataset) -> None:
    path = tmp_path / "p.svve"
    svve_core.build_index(str(path), dataset.data[:50])
    a, b = SearchEngine(path), SearchEngine(str(path))
    assert a.info() == b.info()
    assert a.info().path == str(path)


# --- dtypes and shapes --------------------------------------------------------


def test_result_dtypes_and_shapes(engine: SearchEngine, dataset) -> None:
    for params in (None, EXACT):
        ids, scores = engine.search(dataset.queries[0], 7, params)
        assert (ids.dtype, scores.dtype) == (np.int64, np.float32)
        assert ids.shape == scores.shape == (7,)

        ids, scores = engine.search_batch(dataset.queries[:5], 7, params)
        assert (ids.dtype, scores.dtype) == (np.int64, np.float32)
        assert ids.shape == scores.shape == (5, 7)
        assert ids.flags.c_contiguous
        assert scores.flags.c_contiguous


def test_numpy_integer_k(cosine_engine: SearchEngine, dataset) -> None:
    ids, _ = cosine_engine.search(dataset.queries[0], np.int64(4))
    assert ids.shape == (4,)
    ids, _ = cosine_engine.search_batch(dataset.queries[:2], np.int32(3))
    assert ids.shape == (2, 3)


@pytest.mark.parametrize("params", [None, EXACT], ids=["approx", "exact"])
def test_k_larger_than_n_returns_n(tmp_path: Path, metric: str, params) -> None:
    """Results have length min(k, N)."""
    x = np.random.default_rng(3).standard_normal((7, 16)).astype(np.float32)
    path = tmp_path / "tiny.svve"
    svve_core.build_index(path, x, metric=metric)
    engine = SearchEngine(path)
    q = np.random.default_rng(4).standard_normal(16).astype(np.float32)
    for k in (7, 8, 1000, 10**30):
        ids, scores = engine.search(q, k, params)
        assert ids.shape == scores.shape == (7,)
        assert sorted(ids.tolist()) == list(range(7))
        _assert_sorted(scores, metric)
        bids, bscores = engine.search_batch(np.stack([q, -q, q]), k, params)
        assert bids.shape == bscores.shape == (3, 7)
        np.testing.assert_array_equal(bids[0], ids)
        np.testing.assert_array_equal(bids[2], ids)
    exact_ids, _ = engine.search(q, 100, EXACT)
    bf = brute_force(x, q, metric)[0]
    np.testing.assert_array_equal(exact_ids, best_first(bf, metric))


def test_single_row_index(tmp_path: Path) -> None:
    path = tmp_path / "one.svve"
    svve_core.build_index(path, np.ones((1, 5), np.float32), ids=np.array([42], np.int64))
    engine = SearchEngine(path)
    ids, scores = engine.search(np.ones(5, np.float32), 3)
    assert ids.tolist() == [42]
    np.testing.assert_allclose(scores, [1.0], rtol=1e-6)


def test_empty_batch(engine: SearchEngine, dataset) -> None:
    ids, scores = engine.search_batch(np.empty((0, dataset.data.shape[1]), np.float32), 5)
    assert ids.shape == scores.shape == (0, 5)
    assert (ids.dtype, scores.dtype) == (np.int64, np.float32)
    ids, _ = engine.search_batch(np.empty((0, dataset.data.shape[1]), np.float32), 10**6)
    assert ids.shape == (0, len(engine))


# --- batch, strided, async --------------------------------------------------


@pytest.mark.parametrize("params", [None, EXACT, SearchParams(nprobe=2, candidates=50)],
                         ids=["default", "exact", "narrow"])  # fmt: skip
def test_batch_equals_row_by_row(engine: SearchEngine, dataset, params) -> None:
    ids, scores = engine.search_batch(dataset.queries, K, params)
    for i, q in enumerate(dataset.queries):
        one_ids, one_scores = engine.search(q, K, params)
        np.testing.assert_array_equal(ids[i], one_ids)
        np.testing.assert_array_equal(scores[i], one_scores)


def test_single_row_batch(engine: SearchEngine, dataset) -> None:
    ids, scores = engine.search_batch(dataset.queries[:1], K)
    one = engine.search(dataset.queries[0], K)
    np.testing.assert_array_equal(ids[0], one[0])
    np.testing.assert_array_equal(scores[0], one[1])


def test_non_contiguous_queries(engine: SearchEngine, dataset) -> None:
    dim = dataset.queries.shape[1]
    base_ids, base_scores = engine.search_batch(dataset.queries[:6], K)

    wide = np.zeros((6, 2 * dim), np.float32)
    wide[:, ::2] = dataset.queries[:6]
    strided = wide[:, ::2]  # every other column
    assert not strided.flags.c_contiguous
    for i in range(6):
        assert not strided[i].flags.c_contiguous
        ids, scores = engine.search(strided[i], K)
        np.testing.assert_array_equal(ids, base_ids[i])
        np.testing.assert_array_equal(scores, base_scores[i])
    for variant in (strided, np.asfortranarray(dataset.queries[:6]), wide[:, ::2][::1]):
        ids, scores = engine.search_batch(variant, K)
        np.testing.assert_array_equal(ids, base_ids)
        np.testing.assert_array_equal(scores, base_scores)

    every_other_row = dataset.queries[:12:2]
    ids, _ = engine.search_batch(every_other_row, K)
    np.testing.assert_array_equal(ids, engine.search_batch(every_other_row.copy(), K)[0])

    reversed_q = dataset.queries[0][::-1]
    ids, _ = engine.search(reversed_q, K)
    np.testing.assert_array_equal(ids, engine.search(reversed_q.copy(), K)[0])


def test_inputs_are_not_modified(cosine_engine: SearchEngine, dataset, tmp_path: Path) -> None:
    q = dataset.queries[:4].copy()
    cosine_engine.search(q[0], K)
    cosine_engine.search_batch(q, K, EXACT)
    np.testing.assert_array_equal(q, dataset.queries[:4])  # cosine must not normalise in place
    x = dataset.data[:100].copy()
    ids = np.arange(100, dtype=np.int64)[::-1].copy()
    svve_core.build_index(tmp_path / "x.svve", x, ids=ids, metric="cosine")
    np.testing.assert_array_equal(x, dataset.data[:100])
    np.testing.assert_array_equal(ids, np.arange(100)[::-1])


async def test_asearch_equals_search(engine: SearchEngine, dataset) -> None:
    for params in (None, EXACT):
        for q in dataset.queries[:5]:
            ids, scores = await engine.asearch(q, K, params)
            ref_ids, ref_scores = engine.search(q, K, params)
            np.testing.assert_array_equal(ids, ref_ids)
            np.testing.assert_array_equal(scores, ref_scores)


async def test_asearch_concurrent(cosine_engine: SearchEngine, dataset) -> None:
    results = await asyncio.gather(*(cosine_engine.asearch(q, K) for q in dataset.queries))
    for q, (ids, scores) in zip(dataset.queries, results):
        ref_ids, ref_scores = cosine_engine.search(q, K)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(scores, ref_scores)


async def test_asearch_batch_equals_search_batch(engine: SearchEngine, dataset) -> None:
    ids, scores = await engine.asearch_batch(dataset.queries, K)
    ref_ids, ref_scores = engine.search_batch(dataset.queries, K)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)


# --- approximate quality ----------------------------------------------------


def test_default_recall_at_10(engine: SearchEngine, metric: str, dataset) -> None:
    truth = topk_ids(brute_force(dataset.data, dataset.queries, metric), metric, K)
    ids, scores = engine.search_batch(dataset.queries, K)
    r = recall(ids, truth)
    assert r >= 0.9, f"recall@10 {r:.3f} for {metric}"
    _assert_sorted(scores, metric)


def test_approximate_scores_are_exact_scores(engine: SearchEngine, metric: str, dataset) -> None:
    """Tier2 rescoring is exact: whatever the approximate path returns carries
    the true score of that row."""
    bf = brute_force(dataset.data, dataset.queries, metric)
    ids, scores = engine.search_batch(dataset.queries, K)
    np.testing.assert_allclose(scores, np.take_along_axis(bf, ids, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "params",
    [
        SearchParams(nprobe=1, expand_probes=1, candidates=30),
        SearchParams(expansion=False),
        SearchParams(query_bits=1),
        SearchParams(query_bits=8, epsilon=0.0),
        SearchParams(candidates=2000),
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.model_dump(exclude_defaults=True).items()),
)
def test_search_params_variants(engine: SearchEngine, metric: str, dataset, params) -> None:
    truth = topk_ids(brute_force(dataset.data, dataset.queries, metric), metric, K)
    ids, scores = engine.search_batch(dataset.queries, K, params)
    assert ids.shape == (len(dataset.queries), K)
    assert all(len(set(row)) == K for row in ids.tolist())
    _assert_sorted(scores, metric)
    assert recall(ids, truth) >= 0.5


def test_more_candidates_never_hurt(engine: SearchEngine, metric: str, dataset) -> None:
    truth = topk_ids(brute_force(dataset.data, dataset.queries, metric), metric, K)
    full = engine.search_batch(dataset.queries, K, SearchParams(candidates=len(dataset.data),
                                                               expansion=False))  # fmt: skip
    assert recall(full[0], truth) == 1.0


def test_engine_config_default_params(index_paths: Dict[str, Path], dataset) -> None:
    engine = SearchEngine(index_paths["l2"], EngineConfig(params=EXACT))
    q = dataset.queries[0]
    ids, _, stats = engine.search_stats(q, K)
    ref = engine.search(q, K, EXACT)
    np.testing.assert_array_equal(ids, ref[0])
    approx_stats = engine.search_stats(q, K, SearchParams())[2]
    assert approx_stats["scanned"] == len(engine)
    assert stats != approx_stats


# --- stats, len, info ---------------------------------------------------------


def test_search_stats(engine: SearchEngine, dataset) -> None:
    q = dataset.queries[1]
    ids, scores, stats = engine.search_stats(q, K)
    assert isinstance(stats, dict)
    assert set(stats) == STAT_KEYS
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())
    ref_ids, ref_scores = engine.search(q, K)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)
    n = len(engine)
    assert stats["probed"] == 1  # below 10k rows an index has one partition
    assert stats["scanned"] == n
    assert K <= stats["survivors"] <= n
    assert K <= stats["rescored"] <= stats["survivors"]

    _, _, capped = engine.search_stats(q, K, SearchParams(candidates=40, expansion=False))
    assert capped["survivors"] == 40
    assert capped["rescored"] == 40


def test_len_dim_info_repr(engine: SearchEngine, metric: str, dataset, index_paths) -> None:
    n, dim = dataset.data.shape
    assert len(engine) == n
    assert engine.dim == dim
    info = engine.info()
    assert isinstance(info, IndexInfo)
    assert (info.n, info.dim, info.metric) == (n, dim, metric)
    assert info.path == str(index_paths[metric])
    assert info.bytes_file == index_paths[metric].stat().st_size
    r = repr(engine)
    assert r.startswith("SearchEngine(")
    assert f"n={n}" in r
    assert repr(metric) in r


def test_num_threads_setting() -> None:
    before = svve_core.num_threads()
    assert before >= 1
    try:
        svve_core.set_num_threads(1)
        assert svve_core.num_threads() == 1
        svve_core.set_num_threads(3)
        assert svve_core.num_threads() == 3
    finally:
        svve_core.set_num_threads(0)
    assert svve_core.num_threads() == before


def test_batch_with_one_thread_equals_default(cosine_engine: SearchEngine, dataset) -> None:
    ref = cosine_engine.search_batch(dataset.queries, K)
    try:
        svve_core.set_num_threads(1)
        one = cosine_engine.search_batch(dataset.queries, K)
    finally:
        svve_core.set_num_threads(0)
    np.testing.assert_array_equal(one[0], ref[0])
    np.testing.assert_array_equal(one[1], ref[1])


def test_center_false_is_also_exact(tmp_path: Path) -> None:
    x = clustered(500, 32, seed=5)
    q = clustered(5, 32, seed=6)
    path = tmp_path / "nc.svve"
    svve_core.build_index(path, x, metric="l2", config=svve_core.IndexConfig(center=False))
    engine = SearchEngine(path)
    bf = brute_force(x, q, "l2")
    for i in range(5):
        ids, scores = engine.search(q[i], K, EXACT)
        assert_matches_brute_force(ids, scores, bf[i], "l2", K)


@pytest.mark.parametrize("dim", [1, 3, 17, 63, 65, 100, 130])
def test_exact_search_odd_dimensions(tmp_path: Path, metric: str, dim: int) -> None:
    """Kernel tails: dimensions that are not a multiple of the SIMD width or of 64."""
    rows = clustered(420, dim, clusters=8, seed=dim)
    x, q = rows[:400], rows[400:]
    path = tmp_path / f"d{dim}.svve"
    svve_core.build_index(path, x, metric=metric)
    engine = SearchEngine(path)
    assert engine.dim == dim
    bf = brute_force(x, q, metric)
    ids, scores = engine.search_batch(q, K, EXACT)
    for i in range(len(q)):
        assert_matches_brute_force(ids[i], scores[i], bf[i], metric, K)
    approx_ids, approx_scores = engine.search_batch(q, K)
    np.testing.assert_allclose(
        approx_scores, np.take_along_axis(bf, approx_ids, 1), rtol=1e-4, atol=1e-5
    )


def test_non_contiguous_build_inputs(tmp_path: Path, dataset) -> None:
    n = 300
    vectors = np.asfortranarray(dataset.data[:n])
    ids = np.arange(3 * n, dtype=np.int64)[::3]
    assert not vectors.flags.c_contiguous
    assert not ids.flags.c_contiguous
    path = tmp_path / "nc.svve"
    svve_core.build_index(path, vectors, ids=ids, metric="l2")
    engine = SearchEngine(path)
    bf = brute_force(dataset.data[:n], dataset.queries, "l2")
    for i in range(5):
        got, scores = engine.search(dataset.queries[i], K, EXACT)
        assert_matches_brute_force(got, scores, bf[i], "l2", K, ids_of_rows=ids)


def test_search_after_file_is_deleted(tmp_path: Path, dataset) -> None:
    """The engine maps the file: unlinking it does not disturb a loaded engine."""
    path = tmp_path / "gone.svve"
    svve_core.build_index(path, dataset.data[:200], metric="ip")
    engine = SearchEngine(path)
    before = engine.search(dataset.queries[0], K, EXACT)
    path.unlink()
    after = engine.search(dataset.queries[0], K, EXACT)
    np.testing.assert_array_equal(before[0], after[0])
    assert len(engine.search_batch(dataset.queries, K)[0]) == len(dataset.queries)


# --- partitions ---------------------------------------------------------------

PARTS = 16


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory: pytest.TempPathFactory, dataset) -> Dict[str, SearchEngine]:
    """The session data, built with 16 k-means partitions (rows are stored
    grouped by partition, so ids must be mapped back)."""
    root = tmp_path_factory.mktemp("partitioned")
    out = {}
    for metric in ("cosine", "ip", "l2"):
        path = root / f"{metric}.svve"
        config = svve_core.IndexConfig(partitions=PARTS, seed=11)
        info = svve_core.build_index(path, dataset.data, metric=metric, config=config)
        assert info.partitions == PARTS
        assert info.build == config
        out[metric] = SearchEngine(path)
    return out


def test_partitioned_exact_equals_brute_force(partitioned, metric: str, dataset) -> None:
    engine = partitioned[metric]
    bf = brute_force(dataset.data, dataset.queries, metric)
    ids, scores = engine.search_batch(dataset.queries, K, EXACT)
    for i in range(len(dataset.queries)):
        assert_matches_brute_force(ids[i], scores[i], bf[i], metric, K)
    # every default id 0..n-1 is still there
    all_ids, _ = engine.search(dataset.queries[0], len(dataset.data), EXACT)
    np.testing.assert_array_equal(np.sort(all_ids), np.arange(len(dataset.data)))


def test_partitioned_custom_ids(tmp_path: Path, metric: str, dataset) -> None:
    ids = (np.arange(len(dataset.data), dtype=np.int64) * 7919) ^ 0x5A5A5A
    path = tmp_path / "p.svve"
    config = svve_core.IndexConfig(partitions=9)
    svve_core.build_index(path, dataset.data, ids=ids, metric=metric, config=config)
    engine = SearchEngine(path)
    bf = brute_force(dataset.data, dataset.queries, metric)
    got, scores = engine.search_batch(dataset.queries[:10], K, EXACT)
    for i in range(10):
        assert_matches_brute_force(got[i], scores[i], bf[i], metric, K, ids_of_rows=ids)
    approx, approx_scores = engine.search_batch(dataset.queries, K)
    rows = {int(v): r for r, v in enumerate(ids)}
    bf_rows = np.array([[rows[int(v)] for v in row] for row in approx])
    np.testing.assert_allclose(
        approx_scores, np.take_along_axis(bf, bf_rows, 1), rtol=1e-4, atol=1e-5
    )


def test_partitioned_recall(partitioned, metric: str, dataset) -> None:
    engine = partitioned[metric]
    truth = topk_ids(brute_force(dataset.data, dataset.queries, metric), metric, K)
    ids, scores = engine.search_batch(dataset.queries, K)
    assert recall(ids, truth) >= 0.9
    _assert_sorted(scores, metric)
    every, _ = engine.search_batch(dataset.queries, K, SearchParams(nprobe=PARTS))
    assert recall(every, truth) >= 0.9


def test_partitioned_probe_stats(partitioned, metric: str, dataset) -> None:
    engine = partitioned[metric]
    n, q = len(dataset.data), dataset.queries[2]
    _, _, full = engine.search_stats(q, K, SearchParams(nprobe=PARTS))
    assert full["probed"] == PARTS
    spilled = engine.info().spilled
    assert 0 < spilled <= n
    # Every row once; a plan probing more than a quarter of the partitions
    # scans no spilled entries (blueprint 3.4).
    assert full["scanned"] == n
    _, _, one = engine.search_stats(q, K, SearchParams(nprobe=1, expansion=False))
    assert one["probed"] == 1
    assert 0 < one["scanned"] < n
    _, _, auto = engine.search_stats(q, K)
    assert 1 <= auto["probed"] <= PARTS
    assert one["scanned"] <= auto["scanned"] <= n + spilled
    assert set(auto) == STAT_KEYS


@pytest.mark.parametrize(("n", "configured", "expected"), [
    (3_999, 0, 1),  # auto: flat below 4000 rows
    (4_000, 0, 126),  # auto: round(2 sqrt(n))
    (10_000, 0, 200),
    (5, 100, 5),  # never more partitions than rows
    (50, 7, 7),
])  # fmt: skip
def test_partition_count(tmp_path: Path, n: int, configured: int, expected: int) -> None:
    x = np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)
    path = tmp_path / "parts.svve"
    info = svve_core.build_index(path, x, config=svve_core.IndexConfig(partitions=configured))
    assert info.partitions == expected
    assert SearchEngine(path).info().partitions == expected
    ids, _ = SearchEngine(path).search(x[0], 3, EXACT)
    assert ids[0] == 0


def test_builds_are_reproducible(tmp_path: Path, dataset) -> None:
    def build(name: str, seed: int) -> bytes:
        path = tmp_path / name
        config = svve_core.IndexConfig(partitions=12, seed=seed)
        svve_core.build_index(path, dataset.data, metric="l2", config=config)
        return without_timing(path)

    a, b = build("a.svve", 5), build("b.svve", 5)
    # Everything but how long the calibration took, which is recorded too.
    assert a == b, "same data and seed must give the same file"
    assert SearchEngine(tmp_path / "a.svve").info().calibration is not None


def test_engine_config_threads_sizes_the_pool(index_paths, dataset) -> None:
    try:
        engine = SearchEngine(index_paths["ip"], EngineConfig(threads=3))
        engine.search_batch(dataset.queries[:8])
        assert svve_core.num_threads() == 3
    finally:
        svve_core.set_num_threads(0)  # back to one per CPU
