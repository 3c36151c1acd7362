"""The ``svve`` command: build, search (every knob), info, demo; user errors as one line."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
from pydantic import BaseModel, Field

import svve_core
from support import brute_force, clustered, topk_ids
from svve_core import IndexConfig, SearchEngine, SearchParams, _svve_core, cli
from svve_core.cli import _add_model_options, main, model_from, parser


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


# --- issue 16: one-line errors, --version, every knob, progress, output checks, dtypes ---


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small inputs, good and bad, and one index built from them."""
    d = tmp_path_factory.mktemp("cli-small")
    v = clustered(400, 8, clusters=4, seed=2)
    np.save(d / "v.npy", v)
    np.save(d / "v64.npy", v.astype(np.float64))
    np.save(d / "vint.npy", np.arange(400 * 8, dtype=np.int32).reshape(400, 8))
    np.save(d / "v1d.npy", v[0])
    np.save(d / "q.npy", v[:3])
    np.save(d / "q64.npy", v[:3].astype(np.float64))
    np.save(d / "q3d.npy", v[:4].reshape(2, 2, 8))
    np.save(d / "qdim.npy", v[:3, :4].copy())
    nan = v.copy()
    nan[7, 2] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "qnan.npy", nan[5:9])
    np.save(d / "huge64.npy", np.full((4, 8), 1e300))
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with open(d / "pickled.npy", "wb") as f:
        pickle.dump(v, f)
    (d / "text.npy").write_text("hello\n")
    np.savez(d / "arch.npz", v=v)
    np.save(d / "ids_float.npy", np.arange(400, dtype=np.float64))
    np.save(d / "ids_bool.npy", np.ones(400, bool))
    np.save(d / "ids_2d.npy", np.arange(400).reshape(200, 2))
    np.save(d / "ids_short.npy", np.arange(300))
    np.save(d / "ids_dup.npy", np.zeros(400, np.int64))
    np.save(d / "ids_huge.npy", np.full(400, 2**64 - 1, np.uint64))
    np.save(d / "ids_u16.npy", np.arange(400, dtype=np.uint16) + 1000)
    np.save(d / "ids_i8.npy", (np.arange(400) % 100).astype(np.int8))  # duplicates: rejected
    (d / "bad.json").write_text("{bad")
    (d / "list.json").write_text("[1, 2]")
    (d / "short.json").write_text(json.dumps({"lang": ["en"] * 3}))
    (d / "latin1.json").write_bytes(b"\xff\xfe{")
    np.savez(d / "objattr.npz", a=np.array([{}] * 400, dtype=object))
    (d / "notzip.npz").write_text("no")
    (d / "adir").mkdir()
    assert main(["build", str(d / "v.npy"), str(d / "idx.svve"), "--no-calibrate"]) == 0
    return d


def _fails(capsys: pytest.CaptureFixture[str], argv: List[str], *words: str) -> str:
    """``argv`` exits 2 with one line on stderr naming ``words``, and no traceback."""
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert err.startswith("svve: error: "), err
    assert err.count("\n") == 1, err
    assert err.endswith("\n"), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    return err


BAD_BUILDS = [
    (["missing.npy", "o.svve"], ["vectors", "no such file"]),
    (["text.npy", "o.svve"], ["not a .npy file"]),
    (["pickled.npy", "o.svve"], ["not a .npy file"]),
    (["obj.npy", "o.svve"], ["Python objects"]),
    (["arch.npz", "o.svve"], [".npz archive"]),
    (["adir", "o.svve"], ["is a directory"]),
    (["v64.npy", "o.svve"], ["float32", "float64", "--cast"]),
    (["vint.npy", "o.svve", "--cast"], ["float32", "int32"]),
    (["huge64.npy", "o.svve", "--cast"], ["beyond float32"]),
    (["v1d.npy", "o.svve"], ["2-D"]),
    (["nan.npy", "o.svve"], ["non-finite", "row 7"]),
    (["v.npy", "o.svve", "--ids", "ids_float.npy"], ["integers", "float64"]),
    (["v.npy", "o.svve", "--ids", "ids_bool.npy"], ["integers", "bool"]),
    (["v.npy", "o.svve", "--ids", "ids_2d.npy"], ["1-D"]),
    (["v.npy", "o.svve", "--ids", "ids_short.npy"], ["300 ids for 400"]),
    (["v.npy", "o.svve", "--ids", "ids_dup.npy"], ["more than once"]),
    (["v.npy", "o.svve", "--ids", "ids_i8.npy"], ["more than once"]),
    (["v.npy", "o.svve", "--ids", "ids_huge.npy"], ["2**63-1"]),
    (["v.npy", "o.svve", "--ids", "missing.npy"], ["--ids", "no such file"]),
    (["v.npy", "o.svve", "--attributes", "bad.json"], ["--attributes", "JSON"]),
    (["v.npy", "o.svve", "--attributes", "list.json"], ["JSON object"]),
    (["v.npy", "o.svve", "--attributes", "latin1.json"], ["--attributes"]),
    (["v.npy", "o.svve", "--attributes", "short.json"], ["lang", "3 values"]),
    (["v.npy", "o.svve", "--attributes", "objattr.npz"], ["--attributes"]),
    (["v.npy", "o.svve", "--attributes", "notzip.npz"], ["--attributes", ".npz"]),
    (["v.npy", "o.svve", "--attributes", "missing.json"], ["no such file"]),
    (["v.npy", "o.svve", "--attributes", "adir"], ["is a directory"]),
    (["v.npy", "nodir/o.svve"], ["does not exist"]),
    (["v.npy", "adir"], ["is a directory"]),
    (["v.npy", "o.svve", "--partitions", "-1"], ["IndexConfig.partitions"]),
    (["v.npy", "o.svve", "--metric", "hamming"], ["--metric"]),
    (["v.npy", "o.svve", "--seed", "x"], ["--seed", "invalid int"]),
    (["v.npy"], ["required"]),
]


@pytest.mark.parametrize(("args", "words"), BAD_BUILDS, ids=lambda x: str(x)[:40])
def test_bad_build_input_is_one_line(
    small: Path, capsys: pytest.CaptureFixture[str], args: List[str], words: List[str]
) -> None:
    paths = [str(small / a) if "." in a or a == "adir" else a for a in args]  # file names
    argv = ["build", *paths]
    _fails(capsys, argv, *words)
    assert not (small / "o.svve").exists()


BAD_SEARCHES = [
    (["missing.svve", "q.npy"], ["not found"]),
    (["v.npy", "q.npy"], ["not an svve index"]),
    (["adir", "q.npy"], ["directory"]),
    (["idx.svve", "missing.npy"], ["queries", "no such file"]),
    (["idx.svve", "obj.npy"], ["Python objects"]),
    (["idx.svve", "text.npy"], ["not a .npy file"]),
    (["idx.svve", "q64.npy"], ["float32", "float64", "--cast"]),
    (["idx.svve", "q3d.npy"], ["2-D"]),
    (["idx.svve", "qdim.npy"], ["dimensions"]),
    (["idx.svve", "qnan.npy"], ["non-finite"]),
    (["idx.svve", "q.npy", "--filter", "{bad"], ["not valid JSON"]),
    (["idx.svve", "q.npy", "--filter", "[1]"], ["filter"]),
    (["idx.svve", "q.npy", "--filter", '{"nope": 1}'], ["nope"]),
    (["idx.svve", "q.npy", "-k", "0"], ["k must be at least 1"]),
    (["idx.svve", "q.npy", "--query-bits", "9"], ["SearchParams.query_bits"]),
    (["idx.svve", "q.npy", "--recall", "nan"], ["SearchParams.target_recall"]),
    (["idx.svve", "q.npy", "--candidates", "-1"], ["SearchParams.candidates"]),
    (["idx.svve", "q.npy", "--nprobe", "1.5"], ["--nprobe", "invalid int"]),
    (["idx.svve", "q.npy", "--exact=yes"], ["--exact"]),
    (["idx.svve", "q.npy", "--no-such-knob", "1"], ["unrecognized"]),
]


@pytest.mark.parametrize(("args", "words"), BAD_SEARCHES, ids=lambda x: str(x)[:40])
def test_bad_search_input_is_one_line(
    small: Path, capsys: pytest.CaptureFixture[str], args: List[str], words: List[str]
) -> None:
    argv = ["search", str(small / args[0]), str(small / args[1]), *args[2:]]
    _fails(capsys, argv, *words)


def test_other_bad_inputs_are_one_line(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(capsys, ["info", str(small / "missing.svve")], "not found")
    _fails(capsys, ["info", str(small / "v.npy")], "not an svve index")
    _fails(capsys, [], "COMMAND")
    _fails(capsys, ["frobnicate"], "invalid choice")
    _fails(capsys, ["demo", "--dataset", str(small / "nodir")], "no such directory")
    _fails(capsys, ["demo", "--dataset", str(small / "adir")], "base.npy", "no such file")
    _fails(capsys, ["demo", "-k", "0"], "at least 1")


def test_bad_dataset_directories_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every way a dataset directory can be broken: one line naming the file
    (the loader raises the typed error itself, for demo and benchmarks alike)."""
    good = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)

    def make(name: str, **files: Any) -> str:
        d = tmp_path / name
        d.mkdir()
        np.save(d / "base.npy", good)
        np.save(d / "queries.npy", good[:5])
        for fname, content in files.items():
            target = d / fname.replace("_", ".")
            if isinstance(content, bytes):
                target.write_bytes(content)
            elif isinstance(content, str):
                target.write_text(content)
            else:
                np.save(target, content)
        return str(d)

    truncated = make("truncated")
    raw = (Path(truncated) / "base.npy").read_bytes()
    (Path(truncated) / "base.npy").write_bytes(raw[: len(raw) // 2])
    cases = [
        (truncated, "base.npy"),
        (make("strings", base_npy=np.array([["a", "b"]])), "2-D float matrix"),
        (make("badgt", gt_npy=np.zeros((3, 2), np.float32)), "gt.npy"),
        (make("metalist", meta_json="[1, 2]"), "JSON object"),
        (make("metabad", meta_json="{nope"), "not valid JSON"),
    ]
    for directory, words in cases:
        _fails(capsys, ["demo", "--dataset", directory], words)


def test_a_real_process_prints_no_traceback(small: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "svve_core.cli", "build", str(small / "obj.npy"), "x.svve"],
        capture_output=True,
        text=True,
        cwd=small,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("svve: error:")
    assert run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    want = f"svve {svve_core.__version__} (build {svve_core.build_id()}, {svve_core.isa()})\n"
    assert out == want


def _non_default(spec: Dict[str, Any]) -> Tuple[List[str], Any]:
    """Command-line words setting knob ``spec`` to a value other than its default."""
    flag = "--" + spec["name"].replace("_", "-")
    if spec["type"] == "bool":
        value = not spec["default"]
        return [flag if value else "--no-" + flag[2:]], value
    if spec["type"] == "int":
        value = spec["default"] + 1 if spec["default"] + 1 <= spec["max"] else spec["min"]
        return [flag, str(value)], value
    value = (spec["default"] + spec["min"]) / 2 if spec["default"] > spec["min"] else 0.5
    return [flag, repr(value)], value


def test_every_search_knob_reaches_search_params() -> None:
    specs = _svve_core.search_param_spec()
    assert {s["name"] for s in specs} == set(SearchParams.model_fields)
    argv, want = ["search", "i.svve", "q.npy"], {}
    for spec in specs:
        words, want[spec["name"]] = _non_default(spec)
        argv += words
    got = model_from(parser().parse_args(argv), SearchParams)
    assert got == SearchParams(**want)
    assert all(getattr(got, n) != f.default for n, f in SearchParams.model_fields.items())
    # unset knobs keep the model's defaults; --recall is --target-recall
    plain = model_from(parser().parse_args(["search", "i.svve", "q.npy"]), SearchParams)
    assert plain == SearchParams()
    for flag in ("--recall", "--target-recall"):
        ns = parser().parse_args(["search", "i", "q", flag, "0.7", "--exact"])
        assert model_from(ns, SearchParams) == SearchParams(target_recall=0.7, exact=True)


def test_options_are_generated_from_the_model() -> None:
    class Knobs(BaseModel):
        new_knob: int = Field(default=3, description="a knob added later")
        turbo: bool = Field(default=False, description="go fast")

    p = argparse.ArgumentParser()
    _add_model_options(p, Knobs, "knobs")
    assert "--new-knob" in p.format_help()
    assert "a knob added later" in p.format_help()
    assert model_from(p.parse_args(["--new-knob", "5", "--turbo"]), Knobs) == Knobs(
        new_knob=5, turbo=True
    )


def test_build_options_reach_index_config(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.svve"
    argv = ["build", str(small / "v.npy"), str(out), "--partitions", "3", "--seed", "7"]
    assert main([*argv, "--no-center", "--no-calibrate"]) == 0
    build = SearchEngine(out).info().build
    assert build == IndexConfig(partitions=3, seed=7, center=False, calibrate=False)


def test_progress_only_on_a_terminal(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    def err_of(*extra: str) -> str:
        capsys.readouterr()
        argv = ["build", str(small / "v.npy"), str(tmp_path / "o.svve"), "--no-calibrate"]
        assert main([*argv, *extra]) == 0
        return capsys.readouterr().err

    assert err_of() == ""  # captured stderr is not a terminal
    assert "build [" in err_of("--progress")
    assert err_of("--progress").endswith("100%\n")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert "build [" in err_of()
    assert err_of("--no-progress") == ""


def test_output_is_checked_before_building(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    def never(*args: Any, **kw: Any) -> None:
        raise AssertionError("build_index must not run")

    monkeypatch.setattr(cli, "build_index", never)
    monkeypatch.setattr(cli, "_read_floats", never)  # not even the vectors are read
    vectors = str(small / "v.npy")
    _fails(capsys, ["build", vectors, str(tmp_path / "nodir" / "o.svve")], "does not exist")
    _fails(capsys, ["build", vectors, str(tmp_path)], "is a directory")
    _fails(capsys, ["build", vectors, str(small / "v.npy" / "o.svve")], "does not exist")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root: the kernel would let us write anyway
            real = os.access
            monkeypatch.setattr(
                os, "access", lambda p, m: False if str(p) == str(locked) else real(p, m)
            )
        _fails(capsys, ["build", vectors, str(locked / "o.svve")], "not writable")
    finally:
        locked.chmod(0o700)


def test_cast_converts_float64_like_the_api(small: Path, tmp_path: Path, capsys) -> None:
    assert main(["build", str(small / "v64.npy"), str(tmp_path / "c.svve"), "--cast"]) == 0
    a, b = SearchEngine(tmp_path / "c.svve"), SearchEngine(small / "idx.svve")
    assert a.info().n == 400
    rows = _search(capsys, str(tmp_path / "c.svve"), str(small / "q64.npy"), "--cast", "--exact")
    want = b.search_batch(np.load(small / "q.npy"), 10, SearchParams(exact=True))[0]
    assert [r["ids"] for r in rows] == want.tolist()


def test_integer_ids_of_any_width_are_kept(small: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "ids.svve")
    argv = ["build", str(small / "v.npy"), out, "--ids", str(small / "ids_u16.npy")]
    assert main([*argv, "--no-calibrate"]) == 0
    rows = _search(capsys, out, str(small / "q.npy"), "--exact", "-k", "1")
    assert [r["ids"] for r in rows] == [[1000], [1001], [1002]]


def test_one_query_vector_and_knobs(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _search(
        capsys,
        str(small / "idx.svve"),
        str(small / "v1d.npy"),
        "-k",
        "3",
        "--nprobe",
        "2",
        "--no-expansion",
        "--query-bits",
        "2",
    )
    assert len(rows) == 1
    assert rows[0]["ids"][0] == 0
    assert len(rows[0]["ids"]) == 3


def test_demo_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v = clustered(300, 8, clusters=3, seed=5)
    np.save(tmp_path / "base.npy", v)
    np.save(tmp_path / "queries.npy", v[:5])
    assert main(["demo", "--dataset", str(tmp_path), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "recall@3" in out
    assert "300 x 8" in out


def test_docs_list_every_option() -> None:
    """docs/cli.md names every generated option (its tables are written by hand)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    for model in (SearchParams, IndexConfig):
        for name in model.model_fields:
            assert "--" + name.replace("_", "-") in text, name
