"""SearchEngine.arrays(): read-only, zero-copy views of what the index stores."""

import gc

import numpy as np
import pytest

import svve_core


def test_arrays_hold_the_stored_rows(engine: svve_core.SearchEngine, dataset) -> None:
    a = engine.arrays()
    n = len(engine)
    parts = engine.info().partitions
    assert a["centroids"].shape == (parts, engine.dim)
    assert a["centroids"].dtype == np.float32
    assert a["offsets"].dtype == np.uint64
    assert a["offsets"].shape == (parts + 1,)
    assert (a["offsets"][0], a["offsets"][-1]) == (0, n)
    assert (np.diff(a["offsets"].astype(np.int64)) >= 0).all()
    assert a["vectors"].shape == (n, engine.dim)
    assert a["ids"].dtype == np.int64
    # Default ids are the input rows, so the stored order is a permutation of them.
    order = a["ids"]
    assert sorted(order.tolist()) == list(range(n))
    want = dataset.data[order]
    if engine.info().metric == "cosine":
        want = want / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(a["vectors"], want, rtol=1e-6, atol=1e-6)


def test_arrays_are_read_only_and_outlive_the_engine(index_copy) -> None:
    engine = svve_core.SearchEngine(index_copy)
    a = engine.arrays()
    for name, arr in a.items():
        assert not arr.flags.writeable, name
        assert not arr.flags.owndata, name
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0
        # The pages are mapped read-only: numpy must not let a write through.
        with pytest.raises(ValueError, match="WRITEABLE"):
            arr.setflags(write=True)
    first = a["vectors"][0].copy()
    del engine
    gc.collect()
    # The views keep the mapping alive.
    np.testing.assert_array_equal(a["vectors"][0], first)


def test_public_build_identity() -> None:
    assert svve_core.isa() == svve_core._svve_core.isa()
    build = svve_core.build_id()
    assert len(build) == 16
    int(build, 16)
