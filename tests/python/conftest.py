"""Shared fixtures: seeded in-memory data and one built index per metric.

The native extension is imported first, so a missing or stale build fails
the whole run loudly instead of skipping tests one by one.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path
from typing import Dict, NamedTuple

import numpy as np
import pytest

# Under `uv run pytest` (the README's test command) Ray 2.60 starts each
# worker with `uv run` in a copy of the project, which builds the Rust
# extension again per worker: workers then miss Ray's registration timeout
# and every test on a local cluster errors. The workers run in this
# environment instead. Read when ray is imported, so set before any test does.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import svve_core._svve_core as _native  # before anything else of ours: a missing build fails here

# Everything the Python layer calls on the extension; an extension built from
# older sources that lacks one of these is stale.
_REQUIRED = {
    _native: ("__version__", "FORMAT_VERSION", "_Engine", "_Params", "build_index",
              "search_param_spec", "set_num_threads", "num_threads", "isa"),
    _native._Engine: ("search", "search_stats", "search_batch", "manifest_json",
                      "section_bytes", "arrays", "path", "isa", "dim",
                      "calibration_json", "recalibrate"),
}  # fmt: skip
_missing = [
    f"{getattr(owner, '__name__', owner)}.{name}"
    for owner, names in _REQUIRED.items()
    for name in names
    if not hasattr(owner, name)
]
try:
    _dist_version = importlib.metadata.version("svve-core")
except importlib.metadata.PackageNotFoundError:  # running from a bare checkout
    _dist_version = _native.__version__
if _missing or _native.__version__ != _dist_version:
    raise ImportError(
        f"svve_core._svve_core ({_native.__file__}, version {_native.__version__}, "
        f"package {_dist_version}) is stale or incomplete (missing: {_missing}); "
        "rebuild it with `uv sync --dev` (or `uv run pytest`)"
    )

import svve_core  # noqa: E402

if os.environ.get("SVVE_TEST_INSTALLED") == "1":
    # .ci/test-installed: the suite must exercise the installed wheel, not a
    # source tree that happens to be importable.
    _home = Path(svve_core.__file__).resolve().parent
    if "site-packages" not in _home.parts or Path(_native.__file__).resolve().parent != _home:
        raise ImportError(f"SVVE_TEST_INSTALLED=1 but svve_core was imported from {_home}")
from support import METRICS, clustered  # noqa: E402

N = 2000  # indexed rows
Q = 50  # held-out queries
DIM = 64


class Dataset(NamedTuple):
    """Indexed rows and held-out queries drawn from the same distribution."""

    data: np.ndarray  # (N, DIM) float32, C-contiguous
    queries: np.ndarray  # (Q, DIM) float32, C-contiguous


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    rows = clustered(N + Q, DIM, clusters=20, spread=1.0, seed=1234)
    data, queries = np.ascontiguousarray(rows[:N]), np.ascontiguousarray(rows[N:])
    data.flags.writeable = False  # shared by every test: nobody may change it
    queries.flags.writeable = False
    return Dataset(data, queries)


@pytest.fixture(scope="session")
def index_paths(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Dict[str, Path]:
    """One index file per metric, built once. Never modify these files:
    copy them first (see ``index_copy``)."""
    root = tmp_path_factory.mktemp("indexes")
    paths = {}
    for metric in METRICS:
        path = root / f"{metric}.svve"
        svve_core.build_index(path, dataset.data, metric=metric)
        paths[metric] = path
    return paths


@pytest.fixture(scope="session")
def engines(index_paths: Dict[str, Path]) -> Dict[str, svve_core.SearchEngine]:
    """A loaded engine per metric (engines are immutable and thread-safe)."""
    return {metric: svve_core.SearchEngine(path) for metric, path in index_paths.items()}


@pytest.fixture(params=METRICS)
def metric(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def engine(engines: Dict[str, svve_core.SearchEngine], metric: str) -> svve_core.SearchEngine:
    """The session engine of the parametrized ``metric``."""
    return engines[metric]


@pytest.fixture
def cosine_engine(engines: Dict[str, svve_core.SearchEngine]) -> svve_core.SearchEngine:
    return engines["cosine"]


@pytest.fixture
def index_copy(index_paths: Dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the cosine index that a test may damage."""
    dst = tmp_path / "copy.svve"
    shutil.copyfile(index_paths["cosine"], dst)
    return dst
