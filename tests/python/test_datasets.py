"""svve_core.datasets: the one loader behind `svve demo`, the benchmarks and the studies."""

import json
from pathlib import Path

import numpy as np
import pytest

import svve_core
from svve_core.datasets import dataset_metric, load_dataset, recall


def test_demo_sample() -> None:
    ds = load_dataset()
    assert ds.base is not None
    assert ds.base.dtype == np.float32
    assert ds.base.flags.c_contiguous
    assert ds.queries.dtype == np.float32
    assert ds.base.shape[1] == ds.queries.shape[1]
    assert ds.gt is None
    assert ds.metric == "ip"
    assert load_dataset(with_base=False).base is None


def test_directory_float16_becomes_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "base.npy", rng.standard_normal((50, 8)).astype(np.float16))
    np.save(tmp_path / "queries.npy", rng.standard_normal((3, 8)).astype(np.float16))
    np.save(tmp_path / "gt.npy", np.arange(30, dtype=np.int64).reshape(3, 10))
    (tmp_path / "meta.json").write_text(json.dumps({"metric": "euclidean"}))
    ds = load_dataset(tmp_path)
    assert ds.base is not None
    assert (ds.base.dtype, ds.queries.dtype) == (np.float32, np.float32)
    assert ds.base.flags.c_contiguous
    assert ds.gt is not None
    assert ds.gt.shape == (3, 10)
    assert (ds.metric, ds.name) == ("l2", tmp_path.name)
    # what the loader returns builds an index as is
    info = svve_core.build_index(tmp_path / "x.svve", ds.base, metric=ds.metric)
    assert info.n == 50


@pytest.mark.parametrize(
    ("meta", "metric"),
    [({}, "ip"), ({"metric": "cosine"}, "ip"), ({"metric": "dot"}, "ip"),
     ({"metric": "Angular"}, "ip"), ({"metric": "euclidean"}, "l2"), ({"metric": "l2"}, "l2")],
)  # fmt: skip
def test_dataset_metric(meta: dict, metric: str) -> None:
    assert dataset_metric(meta) == metric


def test_recall() -> None:
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    assert recall(truth, truth, 3) == 1.0
    assert recall(np.array([[1, 9, 8], [6, 5, -1]]), truth, 3) == pytest.approx(0.5)
    assert recall(truth[:1], truth, 2) == 1.0
    assert np.isnan(recall(truth[:0], truth, 3))
