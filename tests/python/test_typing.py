"""The README's calls, as typed in tests/typing/readme_usage.py, also run:
the file CI type-checks (mypy --strict, pyright) is a working program."""

import runpy
from pathlib import Path

import pytest

USAGE = Path(__file__).resolve().parents[1] / "typing" / "readme_usage.py"


def test_readme_usage_runs(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(USAGE))
    assert module["main"]() == 0
    out = capsys.readouterr().out
    assert out.count("one line:") == 3
    assert "one line: k must be at least 1, got 0 True" in out
