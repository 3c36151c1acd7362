"""Pydantic models: defaults, validation, immutability, and their agreement
with the Rust side (search-parameter defaults, manifest, IndexInfo)."""

from __future__ import annotations

import copy
import math
import os
import pickle
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
from pydantic import ValidationError

import svve_core
from support import read_manifest
from svve_core import (
    EngineConfig,
    IndexConfig,
    IndexInfo,
    IndexManifest,
    SearchEngine,
    SearchParams,
    _svve_core,
)
from svve_core.exceptions import InvalidParameterError

REPO = Path(__file__).resolve().parents[2]

SEARCH_DEFAULTS: Dict[str, Any] = {
    "target_recall": 0.95,
    "exact": False,
    "candidates": 0,
    "nprobe": 0,
    "expand_probes": 0,
    "expand_ratio": 0.0,
    "query_bits": 4,
    "expansion": True,
    "epsilon": 3.0,
}


# --- defaults ---------------------------------------------------------------


def test_search_params_defaults() -> None:
    dump = SearchParams().model_dump()
    for name, value in SEARCH_DEFAULTS.items():
        assert dump[name] == value, name
        assert type(dump[name]) is type(value), name


def test_index_config_defaults() -> None:
    config = IndexConfig()
    assert config.center is True
    assert config.partitions == 0  # automatic
    assert config.seed == 0
    assert config.calibrate is True


def test_engine_config_defaults() -> None:
    config = EngineConfig()
    assert config.verify is True
    assert config.params == SearchParams()


def test_engine_config_accepts_nested_dict() -> None:
    config = EngineConfig(params={"exact": True, "candidates": 50})
    assert isinstance(config.params, SearchParams)
    assert config.params.exact is True
    assert config.params.candidates == 50


# --- validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("candidates", -1),
        ("query_bits", 0),
        ("query_bits", 9),
        ("epsilon", -0.5),
        ("epsilon", math.nan),
        ("epsilon", math.inf),
        ("exact", "sometimes"),
        ("candidates", 1.5),
        ("nprobe", -1),
        ("expand_probes", -1),
    ],
)
def test_search_params_out_of_range(field: str, value: Any) -> None:
    with pytest.raises(InvalidParameterError, match=field) as info:
        SearchParams(**{field: value})
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        (IndexConfig, {"center": "maybe"}),
        (IndexConfig, {"partitions": -1}),
        (IndexConfig, {"partitions": 2**32}),
        (IndexConfig, {"seed": -1}),
        (IndexConfig, {"seed": 2**64}),
        (EngineConfig, {"verify": "maybe"}),
        (EngineConfig, {"params": {"query_bits": 9}}),
        (EngineConfig, {"params": "fast"}),
    ],
)
def test_config_invalid_values(model: type, kwargs: Dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError) as info:
        model(**kwargs)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        (SearchParams, {"k": 10}),  # k is an argument of search(), not a parameter
        (SearchParams, {"ef_search": 64}),
        (SearchParams, {"n_probe": 4}),
        (IndexConfig, {"metric": "ip"}),
        (EngineConfig, {"mmap": True}),
        (EngineConfig, {"params": {"ef": 3}}),
    ],
)
def test_extra_fields_rejected(model: type, kwargs: Dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError, match=r"is not a field") as info:
        model(**kwargs)
    assert "\n" not in str(info.value)
    assert "pydantic.dev" not in str(info.value)


@pytest.mark.parametrize(
    ("obj", "field", "value"),
    [
        (SearchParams(), "exact", True),
        (SearchParams(), "epsilon", 1.0),
        (IndexConfig(), "center", False),
        (EngineConfig(), "verify", False),
    ],
)
def test_models_are_frozen(obj: Any, field: str, value: Any) -> None:
    before = obj.model_dump()
    with pytest.raises(InvalidParameterError, match="frozen") as err:
        setattr(obj, field, value)
    assert "\n" not in str(err.value)
    assert obj.model_dump() == before


def test_frozen_models_are_hashable_and_compare_by_value() -> None:
    a, b = SearchParams(candidates=7), SearchParams(candidates=7)
    a.native()  # the cached native object must not affect equality
    assert a == b
    assert hash(a) == hash(b)
    assert SearchParams(candidates=8) != a


# --- Python mirrors Rust ----------------------------------------------------


def test_native_params_round_trip() -> None:
    """Every Python default reaches Rust unchanged."""
    text = repr(_svve_core._Params(**SearchParams().model_dump()))
    for name, value in SearchParams().model_dump().items():
        expected = str(value).lower() if isinstance(value, bool) else repr(value)
        assert f"{name}: {expected}" in text, (name, text)


def test_native_params_custom_values() -> None:
    p = SearchParams(exact=True, candidates=123, nprobe=5, expand_probes=6, expand_ratio=0.5,
                     query_bits=7, expansion=False, epsilon=0.25)  # fmt: skip
    text = repr(p.native())
    for part in ("exact: true", "candidates: 123", "nprobe: 5", "expand_probes: 6",
                 "expand_ratio: 0.5", "query_bits: 7", "expansion: false",
                 "epsilon: 0.25"):  # fmt: skip
        assert part in text, (part, text)


def test_native_is_cached() -> None:
    p = SearchParams()
    assert p.native() is p.native()
    assert SearchParams(nprobe=3).native() is SearchParams(nprobe=3).native()


def test_native_cache_tells_every_knob_apart() -> None:
    """The cache is keyed on the field values: a change to any one knob is a new
    object (several knobs share the value 1 in the base, so a key that lost
    which field holds which value would collide)."""
    base = SearchParams(nprobe=1, candidates=1, expand_probes=1, query_bits=1)
    for name, value in [("nprobe", 2), ("candidates", 2), ("expand_probes", 2),
                        ("query_bits", 2), ("exact", True), ("expansion", False),
                        ("expand_ratio", 1.0), ("epsilon", 1.0),
                        ("target_recall", 0.9)]:  # fmt: skip
        other = base.model_copy(update={name: value})
        assert other.native() is not base.native(), name
        assert f"{name}: {str(value).lower()}" in repr(other.native()), name


def test_native_params_validate_on_their_own() -> None:
    """Rust re-validates, so bypassing pydantic cannot smuggle bad values in."""
    fields = SearchParams().model_dump()
    for name, value in [("query_bits", 0), ("query_bits", 9), ("candidates", -1),
                        ("nprobe", 2**64), ("epsilon", -1.0), ("epsilon", math.inf),
                        ("expand_ratio", 1e39), ("exact", 1), ("nprobe", True),
                        ("candidates", 1.5), ("segments", 1)]:  # fmt: skip
        with pytest.raises(InvalidParameterError, match=name):
            _svve_core._Params(**{**fields, name: value})


_PY_TYPES = {"bool": bool, "int": int, "float": float}


def test_python_fields_are_the_rust_knobs() -> None:
    """SearchParams declares exactly the knobs of `src/core/params.rs`, with
    their types (it only declares them, for type checkers)."""
    spec = {s["name"]: s for s in _svve_core.search_param_spec()}
    assert list(SearchParams.model_fields) == list(spec)
    for name, field in SearchParams.model_fields.items():
        assert field.annotation is _PY_TYPES[spec[name]["type"]], name


def test_python_defaults_and_bounds_come_from_rust() -> None:
    """Defaults, bounds and descriptions are read from the native table."""
    for s in _svve_core.search_param_spec():
        field = SearchParams.model_fields[s["name"]]
        assert field.default == s["default"], s["name"]
        assert type(field.default) is _PY_TYPES[s["type"]], s["name"]
        assert field.description == s["doc"], s["name"]
        bounds = {type(m).__name__: m for m in field.metadata}
        if s["type"] == "bool":
            assert (s["min"], s["max"]) == (None, None), s["name"]
        else:
            assert bounds["Ge"].ge == s["min"], s["name"]
            assert bounds["Le"].le == s["max"], s["name"]
            assert SearchParams(**{s["name"]: s["max"]}).model_dump()[s["name"]] == s["max"]


def test_default_params_behave_like_explicit_defaults(
    cosine_engine: SearchEngine, dataset: Any
) -> None:
    q = dataset.queries[0]
    ids, scores, stats = cosine_engine.search_stats(q, 10)
    ids2, scores2, stats2 = cosine_engine.search_stats(q, 10, SearchParams(**SEARCH_DEFAULTS))
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(scores, scores2)
    assert stats == stats2


# --- manifest ---------------------------------------------------------------


@pytest.fixture
def manifest(index_paths: Dict[str, Path]) -> Dict[str, Any]:
    """A real manifest (of a 2000 x 64 cosine index), as stored in the file."""
    return read_manifest(index_paths["cosine"])


def _manifest(base: Dict[str, Any], **over: Any) -> Dict[str, Any]:
    return {**base, **over}


def test_manifest_as_stored_is_valid(manifest: Dict[str, Any]) -> None:
    m = IndexManifest(**manifest)
    assert m.model_dump() == manifest


@pytest.mark.parametrize(("dim", "words"), [(1, 1), (63, 1), (64, 1), (65, 2), (128, 2), (384, 6)])
def test_manifest_code_words_fit_dim(manifest: Dict[str, Any], dim: int, words: int) -> None:
    assert IndexManifest(**_manifest(manifest, dim=dim, code_words=words)).code_words == words
    for wrong in (words - 1, words + 1):
        with pytest.raises(InvalidParameterError, match="code_words"):
            IndexManifest(**_manifest(manifest, dim=dim, code_words=max(wrong, 0)))


@pytest.mark.parametrize(
    "over",
    [
        {"format": "faiss"},
        {"format_version": 0},
        {"n": 0},
        {"partitions": 0},
        # More partitions than rows is valid (a live collection's segments
        # share a larger one's); more than a u32 holds is not.
        {"partitions": 2**32},
        {"dim": 0},
        {"metric": "hamming"},
        {"build": {"pq": 8}},
        {"extra": 1},
    ],
)
def test_manifest_rejects_bad_values(manifest: Dict[str, Any], over: Dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError):
        IndexManifest(**_manifest(manifest, **over))


def test_manifest_requires_every_field(manifest: Dict[str, Any]) -> None:
    for name in manifest:
        m = dict(manifest)
        del m[name]
        with pytest.raises(InvalidParameterError, match=name):
            IndexManifest(**m)


def test_manifest_of_built_index(index_paths: Dict[str, Path], dataset: Any) -> None:
    for metric, path in index_paths.items():
        m = IndexManifest(**read_manifest(path))
        assert m.format == "svve-core"
        assert m.format_version == 2  # no attributes: a version 2 file
        assert m.library_version == svve_core.__version__
        assert (m.n, m.dim, m.metric) == (*dataset.data.shape, metric)
        assert m.code_words == math.ceil(dataset.data.shape[1] / 64)
        assert m.build == IndexConfig()


# --- IndexInfo --------------------------------------------------------------


@pytest.mark.parametrize(("n", "dim", "center"), [(300, 64, True), (257, 100, False), (1, 3, True)])
def test_index_info_after_build(
    tmp_path: Path, metric: str, n: int, dim: int, center: bool
) -> None:
    x = np.random.default_rng(n + dim).standard_normal((n, dim)).astype(np.float32)
    path = tmp_path / "info.svve"
    info = svve_core.build_index(path, x, metric=metric, config=IndexConfig(center=center))
    assert isinstance(info, IndexInfo)
    words = math.ceil(dim / 64)
    assert info.path == os.fspath(path)
    assert (info.n, info.dim, info.metric) == (n, dim, metric)
    # Without attributes or spilled entries (one partition: nowhere to
    # spill to) a build writes a version 2 file, which older builds read;
    # version 3 adds the attribute section, version 4 the spill.
    assert info.format_version == 2
    assert svve_core.FORMAT_VERSION == 4
    assert info.library_version == svve_core.__version__
    assert info.build == IndexConfig(center=center)
    assert info.partitions == 1  # automatic: flat below 10k rows
    assert info.bytes_tier2 == n * dim * 4
    assert info.bytes_ids == n * 8
    # codes + per-row factors + at least one centroid
    assert info.bytes_tier1 >= n * words * 8 + 3 * n * 4 + dim * 4
    assert info.bytes_file == path.stat().st_size
    assert info.bytes_file >= info.bytes_tier1 + info.bytes_tier2 + info.bytes_ids
    assert info.calibration is not None
    assert info.warnings == []
    targets = [p.target for p in info.calibration.points]
    assert targets == sorted(targets)
    assert isinstance(info.isa, str)
    assert info.isa
    assert info.isa == _svve_core.isa()
    assert SearchEngine(path).info() == info
    with pytest.raises(InvalidParameterError, match=r"IndexInfo\.n cannot be changed"):
        info.n = 5  # type: ignore[misc]


# --- copying and pickling ---------------------------------------------------


def test_pickle_and_copy_fresh_params() -> None:
    p = SearchParams(exact=True, candidates=9)
    assert pickle.loads(pickle.dumps(p)) == p
    assert copy.deepcopy(p) == p
    assert p.model_copy(update={"candidates": 10}).candidates == 10


def test_model_copy_after_use_gets_its_own_native(index_paths, dataset) -> None:
    engine = SearchEngine(index_paths["ip"])
    p = SearchParams()
    engine.search(dataset.queries[0], 10, p)  # caches p.native()
    exact = p.model_copy(update={"exact": True})
    assert exact.exact is True
    assert "exact: true" in repr(exact.native())
    # an exact search scans no codes and scores every row
    stats = engine.search_stats(dataset.queries[0], 10, exact)[2]
    assert stats["scanned"] == 0
    assert stats["rescored"] == len(engine)


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "model_copy-deep", "engine-config"])
def test_used_params_can_be_pickled_and_deep_copied(how: str, index_paths) -> None:
    p = SearchParams(candidates=33)
    p.native()
    if how == "pickle":
        assert pickle.loads(pickle.dumps(p)) == p
    elif how == "deepcopy":
        assert copy.deepcopy(p) == p
    elif how == "model_copy-deep":
        assert p.model_copy(deep=True) == p
    else:
        config = EngineConfig(params=SearchParams(candidates=33))
        SearchEngine(index_paths["l2"], config)  # caches config.params.native()
        assert pickle.loads(pickle.dumps(config)) == config


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SearchParams(candidates=-5), "SearchParams.candidates must be >= 0, got -5"),
        (lambda: SearchParams(query_bits=9), "SearchParams.query_bits must be <= 8, got 9"),
        (lambda: SearchParams(nprobe="x"), "SearchParams.nprobe must be an integer, got 'x'"),
        (lambda: IndexConfig(partitions=-1), "IndexConfig.partitions must be >= 0, got -1"),
        (
            lambda: EngineConfig(params={"ef": 3}),
            "EngineConfig.params: SearchParams.ef is not a field",
        ),
    ],
)
def test_errors_are_one_line_naming_the_field_and_rule(build: Any, message: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        build()
    assert str(info.value) == message


@pytest.mark.parametrize(
    "build",
    [
        lambda: SearchParams.model_validate({"candidates": -5}),
        lambda: SearchParams.model_validate_json('{"candidates": -5}'),
        lambda: SearchParams.model_validate_strings({"candidates": "-5"}),
        lambda: SearchParams().model_copy(update={"candidates": -5}),
        lambda: EngineConfig.model_validate({"params": {"candidates": -5}}),
        lambda: EngineConfig().model_copy(update={"params": {"candidates": -5}}),
    ],
    ids=["validate", "validate_json", "validate_strings", "copy", "nested", "nested_copy"],
)
def test_every_construction_path_raises_the_librarys_type(build: Any) -> None:
    # pydantic's model_copy(update=) skips validation: before, candidates=-5
    # got through and failed at search time with an OverflowError.
    with pytest.raises(InvalidParameterError, match=r"candidates must be >= 0, got '?-5'?$") as err:
        build()
    assert not isinstance(err.value, ValidationError)
    assert "\n" not in str(err.value)
    assert "https://" not in str(err.value)


def test_model_copy_with_update_validates_and_keeps_the_rest() -> None:
    p = SearchParams(candidates=9, exact=True)
    q = p.model_copy(update={"nprobe": 4})
    assert (q.candidates, q.exact, q.nprobe) == (9, True, 4)
    assert p.model_copy() == p
