"""The ``svve`` command: build, search (with ``--recall``) and info."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from support import brute_force, clustered, topk_ids
from svve_core import SearchEngine, SearchParams
from svve_core.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("cli")
    data = clustered(5000, 32, clusters=30, seed=4)
    queries = clustered(6, 32, clusters=30, seed=4)
    np.save(tmp / "base.npy", data)
    np.save(tmp / "queries.npy", queries)
    assert main(["build", str(tmp / "base.npy"), str(tmp / "idx.svve"), "--metric", "l2"]) == 0
    return tmp, data, queries


def _search(capsys: pytest.CaptureFixture[str], *args: str) -> list:
    capsys.readouterr()
    assert main(["search", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_recall_one_is_exact(files, capsys: pytest.CaptureFixture[str]) -> None:
    tmp, data, queries = files
    rows = _search(capsys, str(tmp / "idx.svve"), str(tmp / "queries.npy"), "--recall", "1")
    want = topk_ids(brute_force(data, queries, "l2"), "l2", 10)
    assert [r["ids"] for r in rows] == want.tolist()


def test_recall_picks_the_calibrated_settings(files, capsys: pytest.CaptureFixture[str]) -> None:
    tmp, _, queries = files
    engine = SearchEngine(tmp / "idx.svve")
    for recall in ("0.8", "0.95"):
        rows = _search(capsys, str(tmp / "idx.svve"), str(tmp / "queries.npy"), "--recall", recall)
        want = engine.search_batch(queries, 10, SearchParams(target_recall=float(recall)))[0]
        assert [r["ids"] for r in rows] == want.tolist()


def test_bad_recall_is_a_one_line_error(files, capsys: pytest.CaptureFixture[str]) -> None:
    tmp, _, _ = files
    capsys.readouterr()
    code = main(["search", str(tmp / "idx.svve"), str(tmp / "queries.npy"), "--recall", "1.5"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("svve: error:")
    assert "target_recall" in err


def test_info_shows_the_calibration(files, capsys: pytest.CaptureFixture[str]) -> None:
    tmp, _, _ = files
    capsys.readouterr()
    assert main(["info", str(tmp / "idx.svve")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["calibration"]["queries"] == 300
    assert [p["target"] for p in info["calibration"]["points"]][:2] == [0.8, 0.85]


def test_build_without_calibration(tmp_path: Path, files, capsys) -> None:
    tmp, _, _ = files
    out = tmp_path / "plain.svve"
    assert main(["build", str(tmp / "base.npy"), str(out), "--no-calibrate"]) == 0
    info = SearchEngine(out).info()
    assert info.calibration is None
    assert "no recall calibration" in info.warnings[0]


def test_attributes_and_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = clustered(2000, 16, clusters=10, seed=1)
    np.save(tmp_path / "base.npy", data)
    np.save(tmp_path / "q.npy", data[:3])
    lang = np.array(["en", "de"])[np.arange(2000) % 2]
    np.savez(tmp_path / "attrs.npz", lang=lang, price=np.arange(2000) / 10)
    (tmp_path / "attrs.json").write_text(json.dumps({"lang": lang.tolist()}))
    for attrs in ("attrs.npz", "attrs.json"):
        idx = str(tmp_path / f"{attrs}.svve")
        argv = ["build", str(tmp_path / "base.npy"), idx, "--attributes", str(tmp_path / attrs)]
        assert main(argv) == 0
        rows = _search(capsys, idx, str(tmp_path / "q.npy"), "--filter", '{"lang": "de"}')
        assert all(i % 2 == 1 for r in rows for i in r["ids"])
        assert len(rows) == 3
    capsys.readouterr()
    idx = str(tmp_path / "attrs.npz.svve")
    assert main(["search", idx, str(tmp_path / "q.npy"), "--filter", '{"lang": 1}']) == 2
    err = capsys.readouterr().err
    assert err.startswith("svve: error:")
    assert 'filter["lang"]' in err
    assert main(["search", idx, str(tmp_path / "q.npy"), "--filter", "{bad"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
