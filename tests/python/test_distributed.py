"""Sharded indexes on a local Ray cluster (``ray.init(num_cpus=2)``): the
build's layout, answers against one index over the same rows (exact: equal;
approximate: recall within 0.005), routing, filters, and faults (actors
killed for good or restarted, a shard that stays down)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import svve_core  # noqa: E402
from support import brute_force, clustered  # noqa: E402
from svve_core.distributed import (  # noqa: E402
    ShardedEngine,
    build_sharded,
    layout,
)
from svve_core.exceptions import (  # noqa: E402
    CorruptIndexError,
    InvalidFilterError,
    InvalidParameterError,
    ShardUnavailableError,
)

N, DIM, Q, K = 12_000, 32, 60, 10


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(N + Q, DIM, clusters=40, spread=2.0, seed=7)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, data: np.ndarray, cluster: None) -> Any:
    base = data[:N]
    ids = np.arange(N, dtype=np.int64) * 3 + 100
    attrs = {"tenant": np.arange(N) % 7, "lang": ["en", "de", "fr"] * (N // 3)}
    root = tmp_path_factory.mktemp("sharded")
    info = build_sharded(root / "idx", base, ids, metric="cosine", shards=4, attributes=attrs)
    single = root / "one.svve"
    svve_core.build_index(single, base, ids, metric="cosine", attributes=attrs)
    return root / "idx", single, ids, info


@pytest.fixture(scope="module")
def engine(built: Any) -> Iterator[ShardedEngine]:
    eng = ShardedEngine(built[0], replicas=1)
    yield eng
    eng.close()


def test_layout_every_row_once_in_ordinary_index_files(built: Any) -> None:
    path, _, ids, info = built
    assert info["n"] == N
    assert len(info["shards"]) == 4
    assert sum(s["rows"] for s in info["shards"]) == N
    seen = []
    for s in info["shards"]:
        shard = svve_core.SearchEngine(path / s["file"])  # each opens alone
        seen.append(shard.arrays()["ids"])
        assert shard.info().calibration is not None
    assert np.array_equal(np.sort(np.concatenate(seen)), np.sort(ids))
    manifest = json.loads((path / layout.MANIFEST).read_text())
    assert manifest["format"] == "svve-sharded"
    assert sorted(p for s in manifest["shards"] for p in s["partitions"]) == list(
        range(manifest["partitions"])
    )
    table = manifest["routing"]
    covers = [row[0] for row in table]
    assert covers == sorted(covers)
    for cover, probes, ratio, reached, fanout in table:
        assert reached >= cover  # every rule reached its share on the sample
        assert 1 <= fanout <= 4
        assert 1 <= probes <= manifest["partitions"]
        assert ratio >= 0 or ratio == -1  # -1: no distance limit
    assert table[-1][4] == 4  # reaching every neighbour: every shard
    fanouts = [row[4] for row in table]
    assert fanouts == sorted(fanouts)  # more to reach: more shards


def test_exact_equals_one_index(built: Any, engine: ShardedEngine, data: np.ndarray) -> None:
    _, single, _, _ = built
    one = svve_core.SearchEngine(single)
    exact = svve_core.SearchParams(exact=True)
    queries = data[N:]
    got_ids, got_scores = engine.search_batch(queries, K, exact)
    want_ids, want_scores = one.search_batch(queries, K, exact)
    assert np.array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_scores, want_scores)
    ids, _ = engine.search(queries[0], k=K, params=exact)
    assert np.array_equal(ids, want_ids[0])


@pytest.mark.parametrize(
    "params",
    [None, svve_core.SearchParams(target_recall=0.9), svve_core.SearchParams(nprobe=3)],
    ids=["default", "target-0.9", "nprobe-3"],
)
def test_approximate_recall_within_0005_of_one_index(
    built: Any, engine: ShardedEngine, data: np.ndarray, params: Any
) -> None:
    _, single, ids, _ = built
    queries = data[N:]
    truth = ids[np.argsort(-brute_force(data[:N], queries, "cosine"), axis=1)[:, :K]]
    one = svve_core.SearchEngine(single)
    single_recall = recall(one.search_batch(queries, K, params)[0], truth)
    sharded_recall = recall(engine.search_batch(queries, K, params)[0], truth)
    assert sharded_recall >= single_recall - 0.005, (sharded_recall, single_recall)


def test_routing_touches_few_shards(engine: ShardedEngine, data: np.ndarray) -> None:
    fanout = [len(engine.route(q)) for q in data[N:]]
    assert np.mean(fanout) < 4  # not every shard for every query
    assert engine.route(data[N], svve_core.SearchParams(exact=True)) == [0, 1, 2, 3]


def test_results_have_min_k_n_entries_and_batches(engine: ShardedEngine, data: np.ndarray) -> None:
    ids, scores = engine.search_batch(data[N : N + 5], k=N + 50)
    assert ids.shape == scores.shape == (5, N)
    assert len(set(ids[0].tolist())) == N
    ids, _ = engine.search(data[N], k=1)
    assert ids.shape == (1,)


def test_filters_mean_the_same(built: Any, engine: ShardedEngine, data: np.ndarray) -> None:
    _, single, _, _ = built
    one = svve_core.SearchEngine(single)
    exact = svve_core.SearchParams(exact=True)
    flt = {"tenant": {"$in": [2, 5]}, "lang": {"$ne": "fr"}}
    got = engine.search_batch(data[N : N + 10], K, exact, filter=flt)
    want = one.search_batch(data[N : N + 10], K, exact, filter=flt)
    assert np.array_equal(got[0], want[0])
    with pytest.raises(InvalidFilterError, match="nope"):
        engine.search(data[N], k=3, filter={"nope": 1})


async def test_async(engine: ShardedEngine, data: np.ndarray) -> None:
    ids, _ = await engine.asearch(data[N], k=K)
    assert ids.shape == (K,)
    ids, _ = await engine.asearch_batch(data[N : N + 3], k=K)
    assert ids.shape == (3, K)


def test_info_names_shards_and_actors(engine: ShardedEngine) -> None:
    info = engine.info()
    assert [s["rows"] for s in info["shards"]] == [
        s["rows"] for s in layout.describe(layout.read(Path(info["path"]))[0])["shards"]
    ]
    assert all(a["alive"] and a["node"] and a["pid"] for s in info["shards"] for a in s["actors"])
    assert len(engine.actors) == 4


def test_killed_actor_is_replaced_and_answers_stay_exact(built: Any, data: np.ndarray) -> None:
    path, single, _, _ = built
    exact = svve_core.SearchParams(exact=True)
    want = svve_core.SearchEngine(single).search_batch(data[N:], K, exact)[0]
    with ShardedEngine(path, replicas=2) as eng:
        assert len(eng.actors) == 8
        ray.kill(eng.actors[0])  # for good: no restart by Ray
        ray.kill(eng.actors[3], no_restart=False)  # Ray restarts this one
        for _ in range(3):  # round-robin reaches every replica
            assert np.array_equal(eng.search_batch(data[N:], K, exact)[0], want)


def test_killed_under_load(built: Any, data: np.ndarray) -> None:
    """Actors killed while queries are in flight from several threads: every
    answer is still the exact one."""
    import concurrent.futures

    path, single, _, _ = built
    exact = svve_core.SearchParams(exact=True)
    queries = data[N : N + 20]
    want = svve_core.SearchEngine(single).search_batch(queries, K, exact)[0]
    with ShardedEngine(path) as eng, concurrent.futures.ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(eng.search, q, K, exact) for q in queries for _ in range(3)]
        ray.kill(eng.actors[1])
        ray.kill(eng.actors[2], no_restart=False)
        jobs += [pool.submit(eng.search, q, K, exact) for q in queries]
        for i, job in enumerate(jobs):
            assert np.array_equal(job.result(timeout=120)[0], want[i // 3 if i < 60 else i - 60])


def test_a_shard_that_stays_down_is_named(built: Any, tmp_path: Path, data: np.ndarray) -> None:
    path, _, _, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    with ShardedEngine(copy) as eng:
        (copy / "shard-002.svve").unlink()  # the running actor keeps its mapping
        ray.kill(eng.actors[2])  # its replacement cannot open the file
        with pytest.raises(ShardUnavailableError, match=r"shard 2 \(.*shard-002\.svve\)"):
            eng.search(data[N], k=K, params=svve_core.SearchParams(exact=True))
    with pytest.raises(ShardUnavailableError, match="closed"):
        eng.search(data[N], k=K)


def test_bad_inputs_are_typed(built: Any, tmp_path: Path, data: np.ndarray) -> None:
    path, _, _, _ = built
    with pytest.raises(InvalidParameterError, match="exists"):
        build_sharded(path, data[:100], shards=2)
    with pytest.raises(InvalidParameterError, match="shards"):
        build_sharded(tmp_path / "x", data[:100], shards=0)
    bad = data[:3000].copy()
    bad[2500, 3] = np.nan
    with pytest.raises(svve_core.exceptions.NonFiniteError, match="2500"):
        build_sharded(tmp_path / "y", bad, shards=2)
    with pytest.raises(svve_core.exceptions.IndexNotFoundError):
        ShardedEngine(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    (broken / layout.MANIFEST).write_text("{}")
    with pytest.raises(CorruptIndexError, match=r"sharded\.json"):
        ShardedEngine(broken)


# Ray Data's context warns about its own deprecated options (ray 2.60).
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_built_from_a_ray_dataset(tmp_path: Path, data: np.ndarray, cluster: None) -> None:
    """Streamed batch by batch (the rows staged per shard, then removed)."""
    ds = ray.data.from_numpy(data[:4000])
    info = build_sharded(tmp_path / "idx", ds, metric="ip", shards=2)
    assert info["n"] == 4000
    assert not (tmp_path / "idx" / ".staging").exists()
    with ShardedEngine(tmp_path / "idx") as eng:
        got = eng.search(data[N], k=5, params=svve_core.SearchParams(exact=True))[0]
    want = np.argsort(-brute_force(data[:4000], data[N], "ip")[0])[:5]
    assert np.array_equal(got, want)


def test_built_from_npy_paths(tmp_path: Path, data: np.ndarray) -> None:
    parts = []
    for i, chunk in enumerate(np.array_split(data[:3000], 3)):
        parts.append(tmp_path / f"part{i}.npy")
        np.save(parts[-1], chunk)
    info = build_sharded(tmp_path / "idx", parts, metric="l2", shards=2)
    assert info["n"] == 3000
    with ShardedEngine(tmp_path / "idx") as eng:
        exact = svve_core.SearchParams(exact=True)
        got = eng.search(data[N], k=5, params=exact)[0]
        want = np.argsort(brute_force(data[:3000], data[N], "l2")[0])[:5]
        assert np.array_equal(got, want)


def test_example_server_over_the_sharded_index(
    built: Any, data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/server/sharded.py: the FastAPI app calling a ShardedEngine."""
    import importlib.util

    from fastapi.testclient import TestClient

    here = Path(__file__).resolve().parents[2] / "examples" / "server" / "sharded.py"
    spec = importlib.util.spec_from_file_location("sharded_app", here)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # FastAPI resolves the request models' annotations through sys.modules.
    monkeypatch.setitem(sys.modules, "sharded_app", module)
    spec.loader.exec_module(module)
    monkeypatch.setenv("SVVE_SHARDED", str(built[0]))
    with TestClient(module.app) as client:
        r = client.post("/search", json={"vector": data[N].tolist(), "k": 5})
        assert r.status_code == 200, r.text
        assert len(r.json()["ids"]) == 5
        r = client.post("/search", json={"vector": [1.0, 2.0], "k": 5})
        assert r.status_code == 400
        assert "dimension" in r.json()["detail"]
        assert len(client.get("/info").json()["shards"]) == 4
