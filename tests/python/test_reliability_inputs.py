"""The input matrix: every public call against every kind of bad (or merely
unusual) input. Each case expects either one exact class from
``svve_core.exceptions`` or the documented result: ``min(k, n)`` rows per
query, int64 ids, float32 scores, best first, and for a valid input in an
unusual layout (strided, reversed, Fortran, unaligned, read-only) exactly the
answer of its contiguous copy.

``test_errors.py`` holds one trigger per class and the messages; this module
applies the same triggers uniformly to *every* call (search, search_stats,
asearch, search_batch, asearch_batch, build_index, SearchEngine, reload,
info), adds the cases it lacks, and pins the fixes found while writing it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, Union

import numpy as np
import pytest

from support import METRICS, without_timing
from svve_core import EngineConfig, IndexConfig, SearchEngine, SearchParams, build_index
from svve_core import exceptions as exc

OK = None  # expected outcome: a documented result, no exception
Expect = Optional[Type[BaseException]]
EXACT = SearchParams(exact=True)


# --- the calls ----------------------------------------------------------------


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


ONE: Dict[str, Callable[..., Tuple[np.ndarray, np.ndarray]]] = {
    "search": lambda e, q, k=10, p=None: e.search(q, k, p),
    "search_stats": lambda e, q, k=10, p=None: e.search_stats(q, k, p)[:2],
    "asearch": lambda e, q, k=10, p=None: _run(e.asearch(q, k, p)),
}
BATCH: Dict[str, Callable[..., Tuple[np.ndarray, np.ndarray]]] = {
    "search_batch": lambda e, q, k=10, p=None: e.search_batch(q, k, p),
    "asearch_batch": lambda e, q, k=10, p=None: _run(e.asearch_batch(q, k, p)),
}
EVERY = {**ONE, **BATCH}


def _check_result(ids: np.ndarray, scores: np.ndarray, shape: Tuple[int, ...], metric: str) -> None:
    assert ids.dtype == np.int64
    assert scores.dtype == np.float32
    assert ids.shape == scores.shape == shape
    assert np.isfinite(scores).all()
    rows_ids = ids.reshape(-1, shape[-1]) if shape[-1] else ids.reshape(0, 0)
    rows_scores = scores.reshape(rows_ids.shape)
    for i, s in zip(rows_ids, rows_scores):
        assert len(set(i.tolist())) == len(i), "an id appears twice in one answer"
        steps = np.diff(s)
        assert (steps >= 0).all() if metric == "l2" else (steps <= 0).all(), s


# --- one query: every case x every 1-D call x every metric -----------------------


def _unaligned(q: np.ndarray) -> np.ndarray:
    buf = np.zeros(q.nbytes + 1, np.uint8)
    out = buf[1:].view(np.float32)
    out[:] = q
    assert out.ctypes.data % 4 != 0
    return out


def _readonly(q: np.ndarray) -> np.ndarray:
    out = q.copy()
    out.flags.writeable = False
    return out


def _strided(q: np.ndarray) -> np.ndarray:
    wide = np.zeros(2 * len(q), np.float32)
    wide[::2] = q
    return wide[::2]


def _at(q: np.ndarray, i: int, value: float) -> np.ndarray:
    out = q.copy()
    out[i] = value
    return out


# name -> (make(q), expected, valid layout of the same values?)
QUERY_CASES: Dict[str, Tuple[Callable[[np.ndarray], Any], Union[Expect, Dict[str, Expect]]]] = {
    # dtype
    "float64": (lambda q: q.astype(np.float64), exc.InvalidDTypeError),
    "float16": (lambda q: q.astype(np.float16), exc.InvalidDTypeError),
    "int32": (lambda q: q.astype(np.int32), exc.InvalidDTypeError),
    "int64": (lambda q: q.astype(np.int64), exc.InvalidDTypeError),
    "uint8": (lambda q: q.astype(np.uint8), exc.InvalidDTypeError),
    "bool": (lambda q: q > 0, exc.InvalidDTypeError),
    "complex64": (lambda q: q.astype(np.complex64), exc.InvalidDTypeError),
    "object": (lambda q: q.astype(object), exc.InvalidDTypeError),
    "big-endian f4": (lambda q: q.astype(">f4"), exc.InvalidDTypeError),
    "list": (lambda q: q.tolist(), exc.InvalidDTypeError),
    "tuple": (lambda q: tuple(q.tolist()), exc.InvalidDTypeError),
    "None": (lambda q: None, exc.InvalidDTypeError),
    "str": (lambda q: "query", exc.InvalidDTypeError),
    "python float": (lambda q: 1.0, exc.InvalidDTypeError),
    "numpy scalar": (lambda q: np.float32(1.0), exc.InvalidDTypeError),
    # rank
    "0-D": (lambda q: np.array(q[0]), exc.InvalidShapeError),
    "2-D (1, dim)": (lambda q: q[None, :], exc.InvalidShapeError),
    "2-D (dim, 1)": (lambda q: q[:, None], exc.InvalidShapeError),
    "3-D": (lambda q: q[None, None, :], exc.InvalidShapeError),
    # dimension
    "dim - 1": (lambda q: q[:-1].copy(), exc.DimensionMismatchError),
    "dim + 1": (lambda q: np.append(q, np.float32(0.5)), exc.DimensionMismatchError),
    "empty": (lambda q: q[:0].copy(), exc.DimensionMismatchError),
    "2 * dim": (lambda q: np.concatenate([q, q]), exc.DimensionMismatchError),
    # values
    "NaN first": (lambda q: _at(q, 0, np.nan), exc.NonFiniteError),
    "NaN last": (lambda q: _at(q, -1, np.nan), exc.NonFiniteError),
    "+inf": (lambda q: _at(q, 7, np.inf), exc.NonFiniteError),
    "-inf": (lambda q: _at(q, 9, -np.inf), exc.NonFiniteError),
    "all NaN": (lambda q: np.full_like(q, np.nan), exc.NonFiniteError),
    "zero vector": (
        lambda q: np.zeros_like(q),
        {"cosine": exc.InvalidVectorError, "ip": OK, "l2": OK},
    ),
    "negative zero vector": (
        lambda q: -np.zeros_like(q),
        {"cosine": exc.InvalidVectorError, "ip": OK, "l2": OK},
    ),
    "one non-zero": (lambda q: _at(np.zeros_like(q), 3, 1.0), OK),
    "subnormal": (lambda q: np.full_like(q, 1e-40), OK),
    "large (1e13)": (lambda q: q * np.float32(1e13), OK),
    # squared norm above 2^100: scores would overflow float32
    "over the norm limit (1e16)": (lambda q: q * np.float32(1e16), exc.InvalidVectorError),
    "3e38": (lambda q: _at(q, 1, 3e38), exc.InvalidVectorError),
    # layouts of valid values: same answer as the contiguous copy
    "strided": (_strided, OK),
    "reversed": (lambda q: q[::-1].copy()[::-1], OK),
    "unaligned": (_unaligned, OK),
    "read-only": (_readonly, OK),
    "row of a Fortran matrix": (lambda q: np.asfortranarray(np.stack([q, q]))[1], OK),
}


def _expected(spec: Union[Expect, Dict[str, Expect]], metric: str) -> Expect:
    return spec.get(metric) if isinstance(spec, dict) else spec


@pytest.mark.parametrize("call", list(ONE))
@pytest.mark.parametrize("case", list(QUERY_CASES))
def test_query_matrix(engines, dataset, metric: str, call: str, case: str) -> None:
    engine = engines[metric]
    q = dataset.queries[0].copy()
    make, spec = QUERY_CASES[case]
    expected = _expected(spec, metric)
    arg = make(q)
    if expected is not OK:
        with pytest.raises(expected) as info:
            ONE[call](engine, arg)
        assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
        assert str(info.value)
        return
    ids, scores = ONE[call](engine, arg)
    _check_result(ids, scores, (10,), metric)
    want = engine.search(np.ascontiguousarray(np.asarray(arg, dtype=np.float32)), 10)
    np.testing.assert_array_equal(ids, want[0])
    np.testing.assert_array_equal(scores, want[1])


# --- batches: every case x every 2-D call x every metric --------------------------


def _with_row(qs: np.ndarray, row: int, value: Any) -> np.ndarray:
    out = qs.copy()
    out[row] = value
    return out


def _transposed(qs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(qs.T).T


BATCH_CASES: Dict[str, Tuple[Callable[[np.ndarray], Any], Union[Expect, Dict[str, Expect]]]] = {
    "float64": (lambda qs: qs.astype(np.float64), exc.InvalidDTypeError),
    "float16": (lambda qs: qs.astype(np.float16), exc.InvalidDTypeError),
    "int32": (lambda qs: qs.astype(np.int32), exc.InvalidDTypeError),
    "object": (lambda qs: qs.astype(object), exc.InvalidDTypeError),
    "big-endian f4": (lambda qs: qs.astype(">f4"), exc.InvalidDTypeError),
    "list of arrays": (lambda qs: list(qs), exc.InvalidDTypeError),
    "nested list": (lambda qs: qs.tolist(), exc.InvalidDTypeError),
    "None": (lambda qs: None, exc.InvalidDTypeError),
    "1-D": (lambda qs: qs[0].copy(), exc.InvalidShapeError),
    "0-D": (lambda qs: np.array(qs[0, 0]), exc.InvalidShapeError),
    "3-D": (lambda qs: qs[None], exc.InvalidShapeError),
    "dim - 1": (lambda qs: qs[:, :-1].copy(), exc.DimensionMismatchError),
    "dim + 1": (lambda qs: np.pad(qs, ((0, 0), (0, 1))), exc.DimensionMismatchError),
    "(0, dim - 1)": (lambda qs: qs[:0, :-1].copy(), exc.DimensionMismatchError),
    "(b, 0)": (lambda qs: qs[:, :0].copy(), exc.DimensionMismatchError),
    "NaN in last row": (lambda qs: _with_row(qs, -1, np.nan), exc.NonFiniteError),
    "inf in first row": (lambda qs: _with_row(qs, 0, np.inf), exc.NonFiniteError),
    "zero row": (
        lambda qs: _with_row(qs, 2, 0.0),
        {"cosine": exc.InvalidVectorError, "ip": OK, "l2": OK},
    ),
    "row over the norm limit": (lambda qs: _with_row(qs, 1, 1e19), exc.InvalidVectorError),
    "empty (0, dim)": (lambda qs: qs[:0].copy(), OK),
    "one row": (lambda qs: qs[:1].copy(), OK),
    "every other row": (lambda qs: qs[::2], OK),
    "reversed rows": (lambda qs: qs[::-1], OK),
    "reversed columns": (lambda qs: qs[:, ::-1].copy()[:, ::-1], OK),
    "strided columns": (lambda qs: np.repeat(qs, 2, axis=1)[:, ::2], OK),
    "Fortran order": (np.asfortranarray, OK),
    "transposed view": (_transposed, OK),
    "read-only": (lambda qs: _readonly(qs), OK),
    "broadcast rows": (lambda qs: np.broadcast_to(qs[0], (4, qs.shape[1])), OK),
}


@pytest.mark.parametrize("call", list(BATCH))
@pytest.mark.parametrize("case", list(BATCH_CASES))
def test_batch_matrix(engines, dataset, metric: str, call: str, case: str) -> None:
    engine = engines[metric]
    qs = dataset.queries[:6].copy()
    make, spec = BATCH_CASES[case]
    expected = _expected(spec, metric)
    arg = make(qs)
    if expected is not OK:
        with pytest.raises(expected) as info:
            BATCH[call](engine, arg)
        assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
        return
    ids, scores = BATCH[call](engine, arg)
    plain = np.array(arg, dtype=np.float32, order="C", copy=True)
    _check_result(ids, scores, (len(plain), 10), metric)
    for i, q in enumerate(plain):
        one = engine.search(q, 10)
        np.testing.assert_array_equal(ids[i], one[0])
        np.testing.assert_array_equal(scores[i], one[1])


# --- k: every call ----------------------------------------------------------------

BAD_K = {
    "0": 0,
    "-1": -1,
    "-2**63": -(2**63),
    "np.int64(0)": np.int64(0),
    "np.int8(-1)": np.int8(-1),
    "1.5": 1.5,
    "10.0": 10.0,
    "np.float32(3)": np.float32(3),
    "'10'": "10",
    "None": None,
    "True": True,
    "np.bool_(True)": np.bool_(True),
    "[10]": [10],
    "array([10])": np.array([10]),
}
HUGE_K = {
    "n": None,  # filled in with len(engine)
    "n + 1": 1,
    "2**31": 2**31,
    "2**62": 2**62,
    "2**63 - 1": 2**63 - 1,
    "2**63": 2**63,
    "2**64": 2**64,
    "10**30": 10**30,
    "np.uint64 max": np.uint64(2**64 - 1),
    "np.int64 max": np.int64(2**63 - 1),
}


@pytest.mark.parametrize("call", list(EVERY))
@pytest.mark.parametrize("k", list(BAD_K))
def test_bad_k_every_call(cosine_engine: SearchEngine, dataset, call: str, k: str) -> None:
    arg = dataset.queries[:3] if call in BATCH else dataset.queries[0]
    with pytest.raises(exc.InvalidParameterError):
        EVERY[call](cosine_engine, arg, BAD_K[k])


@pytest.mark.parametrize("call", list(EVERY))
@pytest.mark.parametrize("k", list(HUGE_K))
@pytest.mark.parametrize("params", [None, EXACT], ids=["approx", "exact"])
def test_huge_k_every_call(engines, dataset, metric, call: str, k: str, params) -> None:
    """k > n (up to 2**64 and beyond) returns all n rows, ranked."""
    engine = engines[metric]
    n = len(engine)
    value = HUGE_K[k]
    value = n if value is None else (n + 1 if k == "n + 1" else value)
    if call in BATCH:
        ids, scores = EVERY[call](engine, dataset.queries[:2], value, params)
        _check_result(ids, scores, (2, n), metric)
        assert sorted(ids[0].tolist()) == list(range(n))
    else:
        ids, scores = EVERY[call](engine, dataset.queries[0], value, params)
        _check_result(ids, scores, (n,), metric)
        assert sorted(ids.tolist()) == list(range(n))


def test_empty_batch_with_huge_k(cosine_engine: SearchEngine, dataset) -> None:
    empty = dataset.queries[:0]
    for k in (1, len(cosine_engine) + 1, 2**63, 2**64):
        ids, scores = cosine_engine.search_batch(empty, k)
        assert ids.shape == scores.shape == (0, min(k, len(cosine_engine)))
        ids, _ = _run(cosine_engine.asearch_batch(empty, k))
        assert ids.shape == (0, min(k, len(cosine_engine)))


# --- params: every call -----------------------------------------------------------

BAD_PARAMS = {
    "dict": {"exact": True},
    "EngineConfig": EngineConfig(),
    "IndexConfig": IndexConfig(),
    "str": "exact",
    "int": 1,
    "native _Params": SearchParams().native(),
}


@pytest.mark.parametrize("call", list(EVERY))
@pytest.mark.parametrize("params", list(BAD_PARAMS))
def test_bad_params_every_call(cosine_engine, dataset, call: str, params: str) -> None:
    arg = dataset.queries[:3] if call in BATCH else dataset.queries[0]
    with pytest.raises(exc.InvalidParameterError):
        EVERY[call](cosine_engine, arg, 10, BAD_PARAMS[params])


USIZE_MAX = 2**64 - 1
F32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize(
    "kwargs",
    [
        # Regression: these constructed fine and then raised a builtin
        # OverflowError (or, for floats, a late error) at search time.
        {"candidates": USIZE_MAX + 1},
        {"nprobe": 2**70},
        {"expand_probes": USIZE_MAX + 1},
        {"epsilon": 1e300},
        {"expand_ratio": 1e39},
        # and the plain out-of-range values
        {"candidates": -1},
        {"query_bits": 0},
        {"query_bits": 9},
        {"segments": 1},  # removed with dimension-group voting: an unknown knob
        {"epsilon": float("nan")},
        {"expand_ratio": float("inf")},
    ],
    ids=repr,
)
def test_out_of_range_params_fail_at_construction(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(exc.InvalidParameterError):
        SearchParams(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"candidates": USIZE_MAX},
        {"nprobe": USIZE_MAX, "expand_probes": USIZE_MAX},
        {"epsilon": F32_MAX, "expand_ratio": F32_MAX},
        {"epsilon": 0.0, "expand_ratio": 0.0},
        {"expansion": False, "nprobe": 1},
        {"query_bits": 1, "candidates": 1},
    ],
    ids=repr,
)
def test_extreme_but_valid_params_search(engines, dataset, metric, kwargs) -> None:
    engine = engines[metric]
    params = SearchParams(**kwargs)
    for call, fn in EVERY.items():
        arg = dataset.queries[:3] if call in BATCH else dataset.queries[0]
        ids, scores = fn(engine, arg, 10, params)
        _check_result(ids, scores, (3, 10) if call in BATCH else (10,), metric)


# --- build_index --------------------------------------------------------------------


def _vec_at(x: np.ndarray, at: Tuple[Any, ...], value: float) -> np.ndarray:
    out = x.copy()
    out[at] = value
    return out


BUILD_VECTOR_CASES: Dict[
    str, Tuple[Callable[[np.ndarray], Any], Union[Expect, Dict[str, Expect]]]
] = {
    "float64": (lambda x: x.astype(np.float64), exc.InvalidDTypeError),
    "float16": (lambda x: x.astype(np.float16), exc.InvalidDTypeError),
    "int64": (lambda x: x.astype(np.int64), exc.InvalidDTypeError),
    "object": (lambda x: x.astype(object), exc.InvalidDTypeError),
    "big-endian f4": (lambda x: x.astype(">f4"), exc.InvalidDTypeError),
    "list": (lambda x: x.tolist(), exc.InvalidDTypeError),
    "None": (lambda x: None, exc.InvalidDTypeError),
    "1-D": (lambda x: x[0].copy(), exc.InvalidShapeError),
    "3-D": (lambda x: x[None], exc.InvalidShapeError),
    "0-D": (lambda x: np.array(x[0, 0]), exc.InvalidShapeError),
    "dim 0": (lambda x: x[:, :0].copy(), exc.InvalidVectorError),
    "N = 0": (lambda x: x[:0].copy(), exc.InvalidParameterError),
    "N = 0, dim 0": (lambda x: np.zeros((0, 0), np.float32), exc.InvalidVectorError),
    "NaN": (lambda x: _vec_at(x, (5, 2), np.nan), exc.NonFiniteError),
    "+inf last": (lambda x: _vec_at(x, (-1, -1), np.inf), exc.NonFiniteError),
    "-inf": (lambda x: _vec_at(x, (0, 0), -np.inf), exc.NonFiniteError),
    "zero row": (
        lambda x: _vec_at(x, (4, slice(None)), 0.0),
        {"cosine": exc.InvalidVectorError, "ip": OK, "l2": OK},
    ),
    # Regression: finite rows whose float32 scores overflow made approximate
    # search return short (l2: 0 rows at 1e30) and exact scores infinite.
    "huge row (1e19)": (lambda x: _vec_at(x, (3, slice(None)), 1e19), exc.InvalidVectorError),
    "huge value (3e38)": (lambda x: _vec_at(x, (3, 1), 3e38), exc.InvalidVectorError),
    "large row (1e14)": (lambda x: _vec_at(x, (3, slice(None)), 1e14), OK),
    "N = 1": (lambda x: x[:1].copy(), OK),
    "dim 1": (lambda x: x[:, :1].copy(), OK),
    "subnormal rows": (lambda x: _vec_at(x, (slice(0, 3), slice(None)), 1e-40), OK),
    "every other row": (lambda x: x[::2], OK),
    "reversed rows": (lambda x: x[::-1], OK),
    "reversed columns": (lambda x: x[:, ::-1], OK),
    "Fortran order": (np.asfortranarray, OK),
    "read-only": (_readonly, OK),
    "duplicate rows": (lambda x: np.repeat(x[:10], 3, axis=0), OK),
}


@pytest.mark.parametrize("case", list(BUILD_VECTOR_CASES))
def test_build_vector_matrix(tmp_path: Path, dataset, metric: str, case: str) -> None:
    x = dataset.data[:60].copy()
    make, spec = BUILD_VECTOR_CASES[case]
    expected = _expected(spec, metric)
    arg = make(x)
    path = tmp_path / "b.svve"
    if expected is not OK:
        with pytest.raises(expected) as info:
            build_index(path, arg, metric=metric)
        assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
        assert list(tmp_path.iterdir()) == [], "a refused build wrote something"
        return
    info = build_index(path, arg, metric=metric)
    plain = np.array(arg, dtype=np.float32, order="C", copy=True)
    assert (info.n, info.dim) == plain.shape
    # Layout does not matter: the file equals the one built from a C copy.
    build_index(tmp_path / "c.svve", plain, metric=metric)
    assert without_timing(path) == without_timing(tmp_path / "c.svve")
    engine = SearchEngine(path)
    q = plain[0] if np.linalg.norm(plain[0]) > 0 else plain[-1]
    for params in (None, EXACT):
        ids, scores = engine.search(q, 10, params)
        assert ids.shape == (min(10, len(plain)),)
        assert np.isfinite(scores).all()


BUILD_ID_CASES: Dict[str, Tuple[Callable[[int], Any], Expect]] = {
    "int32": (lambda n: np.arange(n, dtype=np.int32), exc.InvalidDTypeError),
    "uint64": (lambda n: np.arange(n, dtype=np.uint64), exc.InvalidDTypeError),
    "float64": (lambda n: np.arange(n, dtype=np.float64), exc.InvalidDTypeError),
    "object": (lambda n: np.arange(n).astype(object), exc.InvalidDTypeError),
    "bool": (lambda n: np.ones(n, bool), exc.InvalidDTypeError),
    "big-endian i8": (lambda n: np.arange(n, dtype=">i8"), exc.InvalidDTypeError),
    "list": (lambda n: list(range(n)), exc.InvalidDTypeError),
    "(n, 1)": (lambda n: np.arange(n, dtype=np.int64)[:, None], exc.InvalidShapeError),
    "(1, n)": (lambda n: np.arange(n, dtype=np.int64)[None, :], exc.InvalidShapeError),
    "n - 1": (lambda n: np.arange(n - 1, dtype=np.int64), exc.InvalidShapeError),
    "n + 1": (lambda n: np.arange(n + 1, dtype=np.int64), exc.InvalidShapeError),
    "0-D": (lambda n: np.array(5, np.int64), exc.InvalidShapeError),
    "duplicate first/last": (
        lambda n: np.r_[7, np.arange(100, 100 + n - 2), 7].astype(np.int64),
        exc.InvalidParameterError,
    ),
    "all equal": (lambda n: np.zeros(n, np.int64), exc.InvalidParameterError),
    "duplicate extremes": (
        lambda n: np.r_[np.iinfo(np.int64).min, np.arange(n - 2), np.iinfo(np.int64).min].astype(
            np.int64
        ),
        exc.InvalidParameterError,
    ),
    "int64 extremes": (
        lambda n: np.r_[np.iinfo(np.int64).min, np.iinfo(np.int64).max, np.arange(n - 2)].astype(
            np.int64
        ),
        OK,
    ),
    "negative": (lambda n: -np.arange(1, n + 1, dtype=np.int64), OK),
    "strided": (lambda n: np.arange(2 * n, dtype=np.int64)[::2] * 3, OK),
    "reversed": (lambda n: np.arange(n, dtype=np.int64)[::-1] + 10**15, OK),
}


@pytest.mark.parametrize("case", list(BUILD_ID_CASES))
def test_build_id_matrix(tmp_path: Path, dataset, case: str) -> None:
    x = dataset.data[:40]
    make, expected = BUILD_ID_CASES[case]
    ids = make(len(x))
    path = tmp_path / "ids.svve"
    if expected is not OK:
        with pytest.raises(expected) as info:
            build_index(path, x, ids=ids, metric="ip")
        assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
        assert list(tmp_path.iterdir()) == []
        return
    build_index(path, x, ids=ids, metric="ip")
    engine = SearchEngine(path)
    got, _ = engine.search(x[0], len(x), EXACT)
    assert sorted(got.tolist()) == sorted(np.asarray(ids).tolist())
    for row in (0, 17, len(x) - 1):  # each row finds itself under its own id (l2 would be exact)
        found, _ = engine.search_batch(x[row : row + 1], len(x), EXACT)
        assert int(ids[row]) in found[0].tolist()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"metric": "euclid"}, exc.InvalidParameterError),
        ({"metric": "COSINE"}, exc.InvalidParameterError),
        ({"metric": "cosine "}, exc.InvalidParameterError),
        ({"metric": None}, exc.InvalidParameterError),
        ({"metric": 2}, exc.InvalidParameterError),
        ({"metric": ["ip"]}, exc.InvalidParameterError),
        # Regression: a dict config raised AttributeError, a non-callable
        # progress a TypeError from inside the build.
        ({"config": {"partitions": 2}}, exc.InvalidParameterError),
        ({"config": EngineConfig()}, exc.InvalidParameterError),
        ({"config": "default"}, exc.InvalidParameterError),
        ({"progress": 5}, exc.InvalidParameterError),
        ({"progress": "log"}, exc.InvalidParameterError),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else "",
)
def test_build_bad_arguments(tmp_path: Path, dataset, kwargs, expected) -> None:
    with pytest.raises(expected):
        build_index(tmp_path / "a.svve", dataset.data[:20], **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", [None, 3, 2.5, ["a.svve"]], ids=repr)
def test_paths_of_the_wrong_type_are_type_errors(dataset, path) -> None:
    """As for ``open()``: a path that is not str/PathLike is a TypeError."""
    with pytest.raises(TypeError):
        build_index(path, dataset.data[:5])
    with pytest.raises(TypeError):
        SearchEngine(path)


# --- SearchEngine and reload: paths that are not (valid) indexes ----------------------


def _mkfifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


PATH_CASES: Dict[str, Tuple[Callable[[Path, Path], Any], Expect]] = {
    "missing": (lambda tmp, good: tmp / "missing.svve", exc.IndexNotFoundError),
    "missing parent": (lambda tmp, good: tmp / "no" / "x.svve", exc.IndexNotFoundError),
    "empty string": (lambda tmp, good: "", exc.IndexNotFoundError),
    "directory": (lambda tmp, good: tmp, exc.CorruptIndexError),
    "empty file": (lambda tmp, good: _write(tmp / "e.svve", b""), exc.CorruptIndexError),
    "text file": (lambda tmp, good: _write(tmp / "t.txt", b"hello\n" * 50), exc.CorruptIndexError),
    "npy file": (lambda tmp, good: _save_npy(tmp / "v.npy"), exc.CorruptIndexError),
    "/dev/null": (lambda tmp, good: "/dev/null", exc.CorruptIndexError),
    "/dev/zero": (lambda tmp, good: "/dev/zero", exc.CorruptIndexError),
    "/proc/self/status": (lambda tmp, good: "/proc/self/status", exc.CorruptIndexError),
    # Regression: opening a FIFO blocked forever (File::open waits for a writer).
    "fifo": (lambda tmp, good: _mkfifo(tmp / "pipe.svve"), exc.CorruptIndexError),
    "symlink to fifo": (
        lambda tmp, good: _symlink(tmp / "l.svve", _mkfifo(tmp / "p2.svve")),
        exc.CorruptIndexError,
    ),
    "dangling symlink": (
        lambda tmp, good: _symlink(tmp / "d.svve", tmp / "gone.svve"),
        exc.IndexNotFoundError,
    ),
    "NUL in path": (lambda tmp, good: str(tmp / "a\0b.svve"), exc.IndexIOError),
    "symlink to index": (lambda tmp, good: _symlink(tmp / "ok.svve", good), OK),
    "relative path": (lambda tmp, good: os.path.relpath(good), OK),
    "str path": (lambda tmp, good: str(good), OK),
}


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def _save_npy(p: Path) -> Path:
    np.save(p, np.ones((100, 64), np.float32))
    return p


def _symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _open_with_timeout(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Runs ``fn`` in a daemon thread: a regression that blocks fails the test."""
    box: List[Any] = []

    def target() -> None:
        try:
            box.append(("ok", fn()))
        except BaseException as e:
            box.append(("err", e))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"the call blocked for {timeout} s")
    kind, value = box[0]
    if kind == "err":
        raise value
    return value


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs and /dev")
@pytest.mark.parametrize("case", list(PATH_CASES))
def test_open_and_reload_path_matrix(tmp_path: Path, index_paths, dataset, case: str) -> None:
    good = index_paths["ip"]
    make, expected = PATH_CASES[case]
    target = make(tmp_path, good)
    live = SearchEngine(index_paths["l2"])
    before = live.search(dataset.queries[0], 10)
    if expected is not OK:
        with pytest.raises(expected) as info:
            _open_with_timeout(lambda: SearchEngine(target))
        assert type(info.value) is expected
        if os.fspath(target) and "\0" not in os.fspath(target):
            assert os.fspath(target) in str(info.value), "the error names the path"
        with pytest.raises(expected):
            _open_with_timeout(lambda: live.reload(target))
        # a failed reload leaves the old index in service
        after = live.search(dataset.queries[0], 10)
        np.testing.assert_array_equal(before[0], after[0])
        assert live.info().metric == "l2"
        return
    engine = _open_with_timeout(lambda: SearchEngine(target))
    assert engine.info().metric == "ip"
    live.reload(target)
    assert live.info().metric == "ip"
    np.testing.assert_array_equal(
        live.search(dataset.queries[0])[0], engine.search(dataset.queries[0])[0]
    )


@pytest.mark.parametrize(
    "config", [{"verify": False}, IndexConfig(), SearchParams(), "fast", 1], ids=repr
)
def test_engine_config_of_the_wrong_type(index_paths, config) -> None:
    """Regression: a dict (or any non-EngineConfig) raised AttributeError."""
    with pytest.raises(exc.InvalidParameterError):
        SearchEngine(index_paths["ip"], config)
    engine = SearchEngine(index_paths["ip"])
    with pytest.raises(exc.InvalidParameterError):
        engine.reload(config=config)
    assert len(engine) > 0


# --- N = 1, and info() -------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_row(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp("one")
    out = {}
    for metric in METRICS:
        p = root / f"{metric}.svve"
        build_index(p, np.array([[0.5, -1.0, 2.0]], np.float32), ids=np.array([-7], np.int64),
                    metric=metric)  # fmt: skip
        out[metric] = p
    return out


@pytest.mark.parametrize("call", list(EVERY))
@pytest.mark.parametrize("k", [1, 2, 2**63])
@pytest.mark.parametrize("params", [None, EXACT], ids=["approx", "exact"])
def test_single_row_index_every_call(one_row, metric, call, k, params) -> None:
    engine = SearchEngine(one_row[metric])
    q = np.array([1.0, 1.0, 1.0], np.float32)
    arg = np.stack([q, -q]) if call in BATCH else q
    ids, scores = EVERY[call](engine, arg, k, params)
    assert ids.tolist() == ([[-7], [-7]] if call in BATCH else [-7])
    assert np.isfinite(scores).all()
    empty_ids, _ = engine.search_batch(np.empty((0, 3), np.float32), k, params)
    assert empty_ids.shape == (0, 1)


def test_info_is_consistent(one_row, index_paths) -> None:
    for path in [*one_row.values(), *index_paths.values()]:
        engine = SearchEngine(path)
        info = engine.info()
        assert info.path == os.fspath(path)
        assert info.bytes_file == os.path.getsize(path)
        assert info.n == len(engine)
        assert info.dim == engine.dim
        assert 1 <= info.partitions <= info.n
        assert info.bytes_tier2 == 4 * info.n * info.dim
        assert info.bytes_ids == 8 * info.n
        assert info.format_version == 2  # no attributes: a version 2 file
    # info follows a reload
    engine = SearchEngine(one_row["ip"])
    engine.reload(index_paths["l2"])
    assert engine.info().path == os.fspath(index_paths["l2"])
    assert engine.info().n == len(engine) > 1


def test_build_returns_info_equal_to_engine_info(tmp_path: Path, dataset) -> None:
    path = tmp_path / "i.svve"
    built = build_index(path, dataset.data[:100], metric="l2")
    assert built == SearchEngine(path).info()
