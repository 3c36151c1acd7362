"""Recall calibration from Python: info() reports it, target_recall selects
it, explicit knobs override it, and ``engine.calibrate(queries)`` rewrites the
file with a calibration measured on the user's own queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import svve_core
from support import brute_force, clustered, topk_ids
from svve_core import EngineConfig, IndexConfig, SearchEngine, SearchParams
from svve_core import exceptions as exc

DIM = 32


@pytest.fixture(scope="module")
def data():
    x = clustered(6200, DIM, clusters=40, spread=3.0, seed=9)
    return x[:6000], x[6000:]  # base, 200 held-out queries


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, data):
    path = tmp_path_factory.mktemp("cal") / "idx.svve"
    svve_core.build_index(path, data[0], metric="cosine")
    return path


def _recall(engine: SearchEngine, base, queries, params: SearchParams) -> float:
    found, _ = engine.search_batch(queries, 10, params)
    truth = topk_ids(brute_force(base, queries, "cosine"), "cosine", 10)
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


def test_info_reports_the_calibration(built: Path) -> None:
    info = SearchEngine(built).info()
    cal = info.calibration
    assert cal is not None
    assert info.format_version == 4  # partitioned: spilled entries
    assert cal.k == 10
    assert cal.queries == 300
    assert cal.seconds > 0
    assert "leave-one-out" in cal.source
    assert [p.target for p in cal.points] == [0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995]
    for p in cal.points:
        assert p.exact or p.recall >= p.target


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99])
def test_targets_are_met_on_held_out_queries(built: Path, data, target: float) -> None:
    recall = _recall(SearchEngine(built), *data, SearchParams(target_recall=target))
    assert recall >= target - 0.02, recall


def test_higher_targets_do_more_work(built: Path, data) -> None:
    engine = SearchEngine(built)
    scanned = []
    for target in (0.8, 0.95, 0.995):
        stats = [engine.search_stats(q, 10, SearchParams(target_recall=target))[2] for q in data[1]]
        scanned.append(np.mean([s["scanned"] + s["rescored"] for s in stats]))
    assert scanned == sorted(scanned)
    assert scanned[0] < scanned[-1]


def test_target_one_is_exact_and_knobs_override(built: Path, data) -> None:
    engine = SearchEngine(built)
    q = data[1][:20]
    exact = engine.search_batch(q, 10, SearchParams(exact=True))
    one = engine.search_batch(q, 10, SearchParams(target_recall=1.0))
    np.testing.assert_array_equal(exact[0], one[0])
    # An explicit knob overrides the calibrated choice (here: one probe, few survivors).
    _, _, stats = engine.search_stats(q[0], 10, SearchParams(target_recall=1.0, nprobe=1))
    assert stats["rescored"] < len(engine)


def test_invalid_targets_are_refused() -> None:
    for bad in (0.0, -0.5, 1.01, float("nan"), "high"):
        with pytest.raises(exc.InvalidParameterError, match="target_recall"):
            SearchParams(target_recall=bad)


def test_uncalibrated_builds_warn_and_use_fixed_rules(tmp_path: Path, data) -> None:
    path = tmp_path / "plain.svve"
    svve_core.build_index(path, data[0], metric="cosine", config=IndexConfig(calibrate=False))
    engine = SearchEngine(path)
    info = engine.info()
    assert info.calibration is None
    assert "target_recall is ignored" in info.warnings[0]
    a = engine.search_batch(data[1], 10, SearchParams(target_recall=0.8))
    b = engine.search_batch(data[1], 10, SearchParams(target_recall=0.99))
    np.testing.assert_array_equal(a[0], b[0])


def test_calibrate_on_own_queries_writes_a_new_file(tmp_path: Path, built: Path, data) -> None:
    _, held_out = data
    engine = SearchEngine(built)
    before = engine.info().calibration
    out = tmp_path / "recal.svve"
    info = engine.calibrate(held_out[:100], out=out)
    assert info.path == str(out)
    assert info.calibration is not None
    assert info.calibration.queries == 100
    assert "given by the user" in info.calibration.source
    # The source is untouched; the copy answers exactly like it under fixed knobs.
    assert SearchEngine(built).info().calibration == before
    fixed = SearchParams(nprobe=3, candidates=50, expand_ratio=0.5, expand_probes=2)
    np.testing.assert_array_equal(
        SearchEngine(out).search_batch(held_out, 10, fixed)[0],
        engine.search_batch(held_out, 10, fixed)[0],
    )


def test_calibrate_in_place_reloads(tmp_path: Path, data) -> None:
    path = tmp_path / "inplace.svve"
    svve_core.build_index(path, data[0], metric="cosine", config=IndexConfig(calibrate=False))
    engine = SearchEngine(path, EngineConfig(verify=False))
    info = engine.calibrate(data[1][:60])
    assert info.calibration is not None
    assert info.warnings == []
    assert engine.info().calibration == info.calibration
    assert SearchEngine(path).info().format_version == 4  # spilled entries; checksums verified


@pytest.mark.parametrize(
    ("queries", "error"),
    [
        (np.ones((10, DIM), np.float32), exc.InvalidParameterError),  # too few
        (np.ones((60, DIM + 1), np.float32), exc.DimensionMismatchError),
        (np.full((60, DIM), np.nan, np.float32), exc.NonFiniteError),
        (np.zeros((60, DIM), np.float32), exc.InvalidVectorError),  # zero vector, cosine
    ],
)
def test_calibrate_refuses_bad_queries(tmp_path: Path, built: Path, queries, error) -> None:
    out = tmp_path / "never.svve"
    with pytest.raises(error):
        SearchEngine(built).calibrate(queries, out=out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_asearch_takes_the_target_like_search(built: Path, data) -> None:
    import asyncio

    engine = SearchEngine(built)
    params = SearchParams(target_recall=0.8)
    q = data[1][:5]

    async def run():
        one = [await engine.asearch(x, 10, params) for x in q]
        batch = await engine.asearch_batch(q, 10, params)
        return one, batch

    one, batch = asyncio.run(run())
    for i, x in enumerate(q):
        np.testing.assert_array_equal(one[i][0], engine.search(x, 10, params)[0])
        np.testing.assert_array_equal(batch[0][i], engine.search(x, 10, params)[0])
