"""Smoke tests of the benchmark studies that need no peer library: they run
end to end on a small index and print what their docs say they print."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import svve_core


def study(name: str) -> ModuleType:
    """``benchmarks.studies.<name>`` from the repository: the package is not
    installed with the wheel, and the installed-wheel run isolates sys.path."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"benchmarks.studies.{name}")


def test_cost_model_fits_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5000, 32), dtype=np.float32)
    svve_core.build_index(tmp_path / "i.svve", x)
    np.save(tmp_path / "q.npy", rng.standard_normal((20, 32), dtype=np.float32))
    args = [str(tmp_path / "i.svve"), str(tmp_path / "q.npy"), "--queries", "20", "--rounds", "1"]
    code = study("cost_model").main(args)
    out = capsys.readouterr().out
    assert code == 0
    assert "machine:" in out
    fits = [line for line in out.splitlines() if line.startswith("fit:")]
    assert len(fits) == 2
    for stage in ("scanned", "probed", "survivors", "rescored"):
        assert stage in " ".join(fits)
