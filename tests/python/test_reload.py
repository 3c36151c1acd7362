"""Hot reload: SearchEngine.reload swaps index versions atomically while
other threads search, and a failed reload keeps the old index in service."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from svve_core import SearchEngine, SearchParams, build_index
from svve_core.exceptions import CorruptIndexError, IndexNotFoundError


def _two_versions(tmp_path: Path, dataset):
    """Two index files whose answers differ: v2 holds the rows reversed,
    with different ids."""
    v1, v2 = tmp_path / "v1.svve", tmp_path / "v2.svve"
    n = len(dataset.data)
    build_index(v1, dataset.data, ids=np.arange(n, dtype=np.int64), metric="ip")
    build_index(
        v2, dataset.data[::-1].copy(), ids=np.arange(n, dtype=np.int64) + 10_000, metric="ip"
    )
    return v1, v2


def test_reload_switches_to_the_new_file(tmp_path: Path, dataset) -> None:
    v1, v2 = _two_versions(tmp_path, dataset)
    engine = SearchEngine(v1)
    q = dataset.queries[0]
    ids1, _ = engine.search(q)
    engine.reload(v2)
    ids2, _ = engine.search(q)
    assert (ids1 < 10_000).all()
    assert (ids2 >= 10_000).all()
    assert engine.info().path == os.fspath(v2)


def test_reload_same_path_after_rebuild(tmp_path: Path, dataset) -> None:
    path = tmp_path / "live.svve"
    build_index(path, dataset.data[:500], metric="l2")
    engine = SearchEngine(path)
    assert len(engine) == 500
    build_index(path, dataset.data, metric="l2")  # atomic rename over the live file
    assert len(engine) == 500, "the engine keeps its mapping until reloaded"
    engine.reload()
    assert len(engine) == len(dataset.data)


def test_failed_reload_keeps_the_old_index(tmp_path: Path, dataset) -> None:
    v1, _ = _two_versions(tmp_path, dataset)
    engine = SearchEngine(v1)
    before = engine.search(dataset.queries[1])
    with pytest.raises(IndexNotFoundError):
        engine.reload(tmp_path / "missing.svve")
    garbage = tmp_path / "garbage.svve"
    garbage.write_bytes(b"not an index" * 100)
    with pytest.raises(CorruptIndexError):
        engine.reload(garbage)
    after = engine.search(dataset.queries[1])
    np.testing.assert_array_equal(before[0], after[0])
    assert engine.info().path == os.fspath(v1)


def test_reload_under_load_answers_wholly_from_one_version(tmp_path: Path, dataset) -> None:
    v1, v2 = _two_versions(tmp_path, dataset)
    engine = SearchEngine(v1)
    queries = dataset.queries
    # Exact search makes each version's answer unique and deterministic.
    exact = SearchParams(exact=True)
    expected = {}
    for version in (v1, v2):
        e = SearchEngine(version)
        expected[version] = [tuple(e.search(q, 10, exact)[0]) for q in queries]
    stop = threading.Event()
    errors: list = []
    seen = {v1: 0, v2: 0}

    def searcher() -> None:
        i = 0
        while not stop.is_set():
            qi = i % len(queries)
            try:
                ids = tuple(engine.search(queries[qi], 10, exact)[0])
            except Exception as e:  # any error fails the test
                errors.append(e)
                return
            if ids == expected[v1][qi]:
                seen[v1] += 1
            elif ids == expected[v2][qi]:
                seen[v2] += 1
            else:
                errors.append(AssertionError(f"query {qi}: answer from neither version: {ids}"))
                return
            i += 1

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for t in threads:
        t.start()
    for r in range(40):
        engine.reload(v2 if r % 2 == 0 else v1)
        time.sleep(0.002)  # let the searchers run against each version
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:3]
    assert seen[v1] > 0
    assert seen[v2] > 0


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_old_mapping_is_released_after_reload(tmp_path: Path, dataset) -> None:
    v1, v2 = _two_versions(tmp_path, dataset)
    engine = SearchEngine(v1)
    engine.search(dataset.queries[0])

    def mapped(path: Path) -> bool:
        return os.fspath(path) in Path("/proc/self/maps").read_text()

    assert mapped(v1)
    engine.reload(v2)
    gc.collect()
    assert not mapped(v1), "no query uses v1 any more, so its mapping is gone"
    assert mapped(v2)
