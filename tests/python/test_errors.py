"""Every exception class is raised for real, by the trigger it documents;
failed builds leave nothing behind and never damage an existing index."""

from __future__ import annotations

import hashlib
import inspect
import struct
import zlib
from pathlib import Path
from typing import Any, Callable, List, NamedTuple, Tuple, Type

import numpy as np
import pytest

import svve_core
from support import HEADER_LEN, flip_bit, reseal, sections
from svve_core import EngineConfig, SearchEngine, SearchParams, build_index
from svve_core import exceptions as exc

BASES = (exc.SVVEError, exc.InvalidInputError, exc.InvalidVectorError, exc.IndexFormatError)
CONCRETE = tuple(
    cls
    for _, cls in inspect.getmembers(exc, inspect.isclass)
    if issubclass(cls, exc.SVVEError) and cls not in BASES
)


class Env(NamedTuple):
    engine: SearchEngine  # cosine, session-wide: never damage it
    l2: SearchEngine
    data: np.ndarray
    q: np.ndarray
    tmp: Path
    index: Path  # a private copy of the cosine index, free to damage


@pytest.fixture
def env(engines, dataset, tmp_path: Path, index_copy: Path) -> Env:
    return Env(engines["cosine"], engines["l2"], dataset.data, dataset.queries[0].copy(),
               tmp_path, index_copy)  # fmt: skip


# --- triggers ---------------------------------------------------------------


def _with(arr: np.ndarray, at: Tuple[int, ...], value: float) -> np.ndarray:
    out = np.array(arr, dtype=np.float32, copy=True)
    out[at] = value
    return out


def _raise_in_callback(error: BaseException) -> Callable[[int, int], None]:
    def progress(done: int, total: int) -> None:
        raise error

    return progress


def _garbage(e: Env) -> None:
    e.index.write_bytes(np.random.default_rng(0).bytes(4096))
    SearchEngine(e.index)


def _empty_file(e: Env) -> None:
    e.index.write_bytes(b"")
    SearchEngine(e.index)


def _short_file(e: Env) -> None:
    e.index.write_bytes(e.index.read_bytes()[:40])
    SearchEngine(e.index)


def _truncated(e: Env) -> None:
    raw = e.index.read_bytes()
    e.index.write_bytes(raw[: len(raw) - 1000])
    SearchEngine(e.index)


def _extended(e: Env) -> None:
    with open(e.index, "ab") as f:
        f.write(b"\0" * 64)
    SearchEngine(e.index)


def _flip_in(tag: str) -> Callable[[Env], None]:
    def trigger(e: Env) -> None:
        offset, length = sections(e.index)[tag]
        flip_bit(e.index, offset + length // 2, bit=3)
        SearchEngine(e.index)  # default EngineConfig verifies every CRC

    trigger.__name__ = f"flip_in_{tag.lower()}"
    return trigger


def _flip_header(e: Env) -> None:
    flip_bit(e.index, 24)  # file_len, without fixing the header CRC
    SearchEngine(e.index)


def _patch_u16(e: Env, at: int, value: int) -> None:
    buf = bytearray(e.index.read_bytes())
    struct.pack_into("<H", buf, at, value)
    reseal(buf, at - at % HEADER_LEN)
    e.index.write_bytes(bytes(buf))


def _file_version(value: int) -> Callable[[Env], None]:
    def trigger(e: Env) -> None:
        _patch_u16(e, 8, value)
        SearchEngine(e.index)

    return trigger


def _section_version(e: Env) -> None:
    _patch_u16(e, HEADER_LEN + 8, 5)  # version of the first section table entry
    SearchEngine(e.index)


def _manifest_says(e: Env, old: bytes, new: bytes) -> None:
    """Rewrites bytes inside the manifest, fixing its section CRC (so that
    only the manifest's meaning is wrong)."""
    offset, length = sections(e.index)["MANI"]
    buf = bytearray(e.index.read_bytes())
    text = bytes(buf[offset : offset + length])
    assert old in text
    assert len(old) == len(new)
    buf[offset : offset + length] = text.replace(old, new)
    # section entry 0 is the manifest: store the new payload CRC and reseal it
    struct.pack_into("<I", buf, HEADER_LEN + 48, zlib.crc32(buf[offset : offset + length]))
    reseal(buf, HEADER_LEN)
    e.index.write_bytes(bytes(buf))
    SearchEngine(e.index)


def _collection(write: bool = True) -> svve_core.Collection:
    """A fresh collection of 3 rows of 4 (outside ``env.tmp``, which must
    stay empty), opened as its writer or read-only."""
    import tempfile

    d = Path(tempfile.mkdtemp()) / "c"
    col = svve_core.Collection.create(d, dim=4)
    col.add(np.eye(3, 4, dtype=np.float32), ids=[1, 2, 3])
    col.commit()
    return col if write else svve_core.Collection.open(d, readonly=True)


def _second_writer(e: Env) -> None:
    col = _collection()
    svve_core.Collection.open(col.info().path)


def _closed(e: Env) -> None:
    col = _collection()
    col.close()
    len(col)


def _shard_down(e: Env) -> None:
    """A closed ShardedEngine (a local Ray cluster, started and stopped here
    unless one is running)."""
    ray = pytest.importorskip("ray")
    import tempfile

    from svve_core.distributed import ShardedEngine, build_sharded

    where = Path(tempfile.mkdtemp()) / "sharded"  # not env.tmp: it must stay empty
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        build_sharded(where, e.data[:400], shards=2)
        engine = ShardedEngine(where)
        engine.close()
        engine.search(e.q)
    finally:
        if started:
            ray.shutdown()


TRIGGERS: List[Tuple[Type[BaseException], str, Callable[[Env], Any]]] = [
    # InvalidDTypeError: not a float32 ndarray / not int64 ids
    (exc.InvalidDTypeError, "float64 query", lambda e: e.engine.search(e.q.astype(np.float64))),
    (exc.InvalidDTypeError, "float16 query", lambda e: e.engine.search(e.q.astype(np.float16))),
    (exc.InvalidDTypeError, "list query", lambda e: e.engine.search(e.q.tolist())),
    (exc.InvalidDTypeError, "int query", lambda e: e.engine.search(e.q.astype(np.int32))),
    (exc.InvalidDTypeError, "big-endian query", lambda e: e.engine.search(e.q.astype(">f4"))),
    (exc.InvalidDTypeError, "numpy scalar query", lambda e: e.engine.search(np.float32(1.0))),
    (exc.InvalidDTypeError, "float64 batch",
     lambda e: e.engine.search_batch(e.data[:3].astype(np.float64))),
    (exc.InvalidDTypeError, "list batch", lambda e: e.engine.search_batch(e.data[:3].tolist())),
    (exc.InvalidDTypeError, "float64 stats query",
     lambda e: e.engine.search_stats(e.q.astype(np.float64))),
    (exc.InvalidDTypeError, "float64 vectors",
     lambda e: build_index(e.tmp / "x", e.data.astype(np.float64))),
    (exc.InvalidDTypeError, "list vectors", lambda e: build_index(e.tmp / "x", [[1.0, 2.0]])),
    (exc.InvalidDTypeError, "int32 ids",
     lambda e: build_index(e.tmp / "x", e.data[:5], ids=np.arange(5, dtype=np.int32))),
    (exc.InvalidDTypeError, "uint64 ids",
     lambda e: build_index(e.tmp / "x", e.data[:5], ids=np.arange(5, dtype=np.uint64))),
    (exc.InvalidDTypeError, "list ids",
     lambda e: build_index(e.tmp / "x", e.data[:5], ids=[0, 1, 2, 3, 4])),
    # InvalidShapeError
    (exc.InvalidShapeError, "2-D query", lambda e: e.engine.search(e.data[:2])),
    (exc.InvalidShapeError, "0-D query", lambda e: e.engine.search(np.ones((), np.float32))),
    (exc.InvalidShapeError, "1-D batch", lambda e: e.engine.search_batch(e.q)),
    (exc.InvalidShapeError, "3-D batch",
     lambda e: e.engine.search_batch(e.data[:4].reshape(2, 2, -1))),
    (exc.InvalidShapeError, "1-D vectors", lambda e: build_index(e.tmp / "x", e.q)),
    (exc.InvalidShapeError, "ids too short",
     lambda e: build_index(e.tmp / "x", e.data[:5], ids=np.arange(4, dtype=np.int64))),
    (exc.InvalidShapeError, "ids too long",
     lambda e: build_index(e.tmp / "x", e.data[:5], ids=np.arange(6, dtype=np.int64))),
    (exc.InvalidShapeError, "2-D ids",
     lambda e: build_index(e.tmp / "x", e.data[:4], ids=np.zeros((2, 2), np.int64))),
    # DimensionMismatchError
    (exc.DimensionMismatchError, "short query", lambda e: e.engine.search(e.q[:-1])),
    (exc.DimensionMismatchError, "long query", lambda e: e.engine.search(np.append(e.q, e.q))),
    (exc.DimensionMismatchError, "empty query", lambda e: e.engine.search(e.q[:0])),
    (exc.DimensionMismatchError, "batch dim", lambda e: e.engine.search_batch(e.data[:3, :32])),
    (exc.DimensionMismatchError, "empty batch dim",
     lambda e: e.engine.search_batch(np.empty((0, 5), np.float32))),
    (exc.DimensionMismatchError, "stats dim", lambda e: e.engine.search_stats(e.q[:10])),
    # NonFiniteError
    (exc.NonFiniteError, "NaN query", lambda e: e.engine.search(_with(e.q, (5,), np.nan))),
    (exc.NonFiniteError, "inf query", lambda e: e.engine.search(_with(e.q, (0,), np.inf))),
    (exc.NonFiniteError, "-inf query l2", lambda e: e.l2.search(_with(e.q, (63,), -np.inf))),
    (exc.NonFiniteError, "NaN exact query",
     lambda e: e.l2.search(_with(e.q, (1,), np.nan), params=SearchParams(exact=True))),
    (exc.NonFiniteError, "NaN batch row",
     lambda e: e.engine.search_batch(_with(e.data[:8], (6, 2), np.nan))),
    (exc.NonFiniteError, "NaN vectors",
     lambda e: build_index(e.tmp / "x", _with(e.data[:100], (42, 7), np.nan))),
    (exc.NonFiniteError, "inf vectors l2",
     lambda e: build_index(e.tmp / "x", _with(e.data[:100], (99, 63), np.inf), metric="l2")),
    # InvalidParameterError
    (exc.InvalidParameterError, "k=0", lambda e: e.engine.search(e.q, 0)),
    (exc.InvalidParameterError, "k=-1", lambda e: e.engine.search(e.q, -1)),
    (exc.InvalidParameterError, "k=1.5", lambda e: e.engine.search(e.q, 1.5)),
    (exc.InvalidParameterError, "k=True", lambda e: e.engine.search(e.q, True)),
    (exc.InvalidParameterError, "k='10'", lambda e: e.engine.search(e.q, "10")),
    (exc.InvalidParameterError, "k=None", lambda e: e.engine.search(e.q, None)),
    (exc.InvalidParameterError, "np k=0", lambda e: e.engine.search(e.q, np.int64(0))),
    (exc.InvalidParameterError, "batch k=0", lambda e: e.engine.search_batch(e.data[:2], 0)),
    (exc.InvalidParameterError, "empty batch k=0",
     lambda e: e.engine.search_batch(e.data[:0], 0)),
    (exc.InvalidParameterError, "stats k=-3", lambda e: e.engine.search_stats(e.q, -3)),
    (exc.InvalidParameterError, "bad metric",
     lambda e: build_index(e.tmp / "x", e.data[:5], metric="euclidean")),
    (exc.InvalidParameterError, "metric case",
     lambda e: build_index(e.tmp / "x", e.data[:5], metric="L2")),
    (exc.InvalidParameterError, "bad SearchParams field", lambda e: SearchParams(query_bits=9)),
    (exc.InvalidParameterError, "unknown SearchParams field", lambda e: SearchParams(ef_search=4)),
    (exc.InvalidParameterError, "params dict",
     lambda e: e.engine.search(e.q, 10, {"exact": True})),
    (exc.InvalidParameterError, "params dict batch",
     lambda e: e.engine.search_batch(e.data[:2], 10, {"exact": True})),
    (exc.InvalidParameterError, "duplicate ids",
     lambda e: build_index(e.tmp / "x", e.data[:5], ids=np.array([1, 2, 3, 2, 5], np.int64))),
    (exc.InvalidParameterError, "zero rows", lambda e: build_index(e.tmp / "x", e.data[:0])),
    (exc.InvalidParameterError, "bad IndexConfig",
     lambda e: build_index(e.tmp / "x", e.data[:5], config=svve_core.IndexConfig(center=None))),
    (exc.InvalidParameterError, "bad EngineConfig", lambda e: EngineConfig(verify="perhaps")),
    # InvalidVectorError itself
    (exc.InvalidVectorError, "zero cosine query", lambda e: e.engine.search(np.zeros_like(e.q))),
    (exc.InvalidVectorError, "zero cosine exact query",
     lambda e: e.engine.search(np.zeros_like(e.q), params=SearchParams(exact=True))),
    (exc.InvalidVectorError, "zero cosine batch row",
     lambda e: e.engine.search_batch(_with(e.data[:4], (2, slice(None)), 0.0))),
    (exc.InvalidVectorError, "zero cosine row at build",
     lambda e: build_index(e.tmp / "x", _with(e.data[:50], (17, slice(None)), 0.0))),
    (exc.InvalidVectorError, "zero dimensions",
     lambda e: build_index(e.tmp / "x", np.zeros((5, 0), np.float32))),
    # IndexNotFoundError
    (exc.IndexNotFoundError, "missing file", lambda e: SearchEngine(e.tmp / "missing.svve")),
    (exc.IndexNotFoundError, "missing dir", lambda e: SearchEngine(e.tmp / "no" / "x.svve")),
    # CorruptIndexError
    (exc.CorruptIndexError, "garbage", _garbage),
    (exc.CorruptIndexError, "empty file", _empty_file),
    (exc.CorruptIndexError, "shorter than header", _short_file),
    (exc.CorruptIndexError, "truncated", _truncated),
    (exc.CorruptIndexError, "extended", _extended),
    (exc.CorruptIndexError, "header bit flip", _flip_header),
    (exc.CorruptIndexError, "vectors bit flip", _flip_in("VECS")),
    (exc.CorruptIndexError, "codes bit flip", _flip_in("CODE")),
    (exc.CorruptIndexError, "factors bit flip", _flip_in("FACT")),
    (exc.CorruptIndexError, "ids bit flip", _flip_in("IDS")),
    (exc.CorruptIndexError, "centroid bit flip", _flip_in("CENT")),
    (exc.CorruptIndexError, "manifest bit flip", _flip_in("MANI")),
    (exc.CorruptIndexError, "manifest code_words",
     lambda e: _manifest_says(e, b'"code_words":1', b'"code_words":2')),
    (exc.CorruptIndexError, "manifest metric",
     lambda e: _manifest_says(e, b'"metric":"cosine"', b'"metric":"cosinX"')),
    (exc.CorruptIndexError, "directory", lambda e: SearchEngine(e.tmp)),
    # InvalidFilterError
    (exc.InvalidFilterError, "unknown attribute",
     lambda e: e.engine.search(e.q, 5, filter={"tenant": 1})),
    (exc.InvalidFilterError, "bad operator",
     lambda e: e.engine.search(e.q, 5, filter={"id": {"$near": 1}})),
    (exc.InvalidFilterError, "filter not a dict", lambda e: e.engine.search(e.q, 5, filter=[1])),
    # VersionMismatchError
    (exc.VersionMismatchError, "file version 5", _file_version(5)),
    (exc.VersionMismatchError, "file version 0", _file_version(0)),
    (exc.VersionMismatchError, "section version 5", _section_version),
    # IndexIOError
    (exc.IndexIOError, "parent dir missing",
     lambda e: build_index(e.tmp / "no" / "such" / "dir.svve", e.data[:5])),
    (exc.IndexIOError, "target is a directory",
     lambda e: build_index(_mkdir(e.tmp / "occupied"), e.data[:5])),
    (exc.IndexIOError, "parent is a file",
     lambda e: build_index(e.index / "x.svve", e.data[:5])),
    # BuildCancelledError: raised by the library when the progress callback
    # returns exactly False (src/api/build.rs).
    (exc.BuildCancelledError, "callback returns False",
     lambda e: build_index(e.tmp / "x", e.data[:50], progress=lambda d, t: False)),
    # Live collections
    (exc.DuplicateIdError, "add an id that is live",
     lambda e: _collection().add(np.ones((1, 4), np.float32), ids=[2])),
    (exc.DuplicateIdError, "an id twice in one call", lambda e: _collection().delete([5, 5])),
    (exc.CollectionNotFoundError, "no collection",
     lambda e: svve_core.Collection.open(e.tmp / "n")),
    (exc.CollectionExistsError, "create over one",
     lambda e: svve_core.Collection.create(_collection().info().path, dim=4)),
    (exc.CollectionLockedError, "second writer", _second_writer),
    (exc.ReadOnlyCollectionError, "write to a reader", lambda e: _collection(False).delete([1])),
    (exc.CollectionClosedError, "closed handle", _closed),
    (exc.ShardUnavailableError, "closed sharded engine", _shard_down),
    # InternalError: a Rust panic is caught at the boundary (src/api/gil.rs);
    # the native test hook panics on purpose.
    (exc.InternalError, "rust panic", lambda e: svve_core._svve_core._debug_panic()),
]  # fmt: skip


def _mkdir(p: Path) -> Path:
    p.mkdir()
    return p


@pytest.mark.parametrize(("cls", "trigger"), [(c, t) for c, _, t in TRIGGERS],
                         ids=[f"{c.__name__}-{name}" for c, name, _ in TRIGGERS])  # fmt: skip
def test_trigger_raises_exact_class(env: Env, cls: Type[BaseException], trigger) -> None:
    with pytest.raises(cls) as info:
        trigger(env)
    assert type(info.value) is cls, f"expected exactly {cls.__name__}, got {info.type.__name__}"
    assert str(info.value), "errors carry a message"
    # no failed build leaves a file (or a temporary file) in the directory
    leftovers = sorted(p.name for p in env.tmp.iterdir() if p.name not in ("copy.svve", "occupied"))
    assert leftovers == []


def test_every_concrete_class_is_triggered() -> None:
    triggered = {cls for cls, _, _ in TRIGGERS}
    assert set(CONCRETE) <= triggered, set(CONCRETE) - triggered
    assert exc.InvalidVectorError in triggered


def test_module_exports_every_class() -> None:
    assert set(exc.__all__) == {c.__name__ for c in (*CONCRETE, *BASES)}


# --- hierarchy --------------------------------------------------------------


def test_hierarchy() -> None:
    for cls in (*CONCRETE, *BASES):
        assert issubclass(cls, exc.SVVEError)
    for cls in (exc.InvalidVectorError, exc.InvalidParameterError):
        assert issubclass(cls, exc.InvalidInputError)
    for cls in (exc.InvalidDTypeError, exc.InvalidShapeError, exc.DimensionMismatchError,
                exc.NonFiniteError):  # fmt: skip
        assert issubclass(cls, exc.InvalidVectorError)
    for cls in (exc.CorruptIndexError, exc.VersionMismatchError):
        assert issubclass(cls, exc.IndexFormatError)
    assert issubclass(exc.InvalidInputError, ValueError)
    assert issubclass(exc.InvalidDTypeError, TypeError)
    assert issubclass(exc.IndexNotFoundError, FileNotFoundError)
    assert issubclass(exc.IndexIOError, OSError)
    assert not issubclass(exc.IndexFormatError, ValueError)
    assert not issubclass(exc.BuildCancelledError, (ValueError, OSError))


def test_base_classes_catch_their_members(env: Env) -> None:
    """The grouping classes (and builtins) catch their members (spot checks)."""
    with pytest.raises(exc.InvalidInputError):
        env.engine.search(env.q, 0)
    with pytest.raises(exc.IndexFormatError):
        _garbage(env)
    with pytest.raises(ValueError, match="dimension"):
        env.engine.search(env.q[:3])


# --- messages ---------------------------------------------------------------


def test_not_found_message_and_builtin(env: Env) -> None:
    path = env.tmp / "nope.svve"
    with pytest.raises(FileNotFoundError, match=r"nope\.svve"):
        SearchEngine(path)


@pytest.mark.parametrize(
    "trigger", [_garbage, _truncated, _flip_in("VECS"), _flip_header, _empty_file],
    ids=["garbage", "truncated", "flip", "header", "empty"],
)  # fmt: skip
def test_corrupt_message_names_file(env: Env, trigger) -> None:
    with pytest.raises(exc.CorruptIndexError) as info:
        trigger(env)
    assert str(env.index) in str(info.value)


def test_payload_flip_names_section(env: Env) -> None:
    with pytest.raises(exc.CorruptIndexError, match="tier2 vectors section checksum"):
        _flip_in("VECS")(env)


def test_verify_false_skips_payload_checksums(env: Env) -> None:
    offset, length = sections(env.index)["VECS"]
    flip_bit(env.index, offset + length - 1, bit=0)  # last byte of the last vector
    with pytest.raises(exc.CorruptIndexError):
        SearchEngine(env.index)
    engine = SearchEngine(env.index, EngineConfig(verify=False))
    assert len(engine) == len(env.data)
    engine.search(env.q, 5)


def test_verify_false_still_checks_structure(env: Env) -> None:
    buf = bytearray(env.index.read_bytes())
    buf[0] ^= 0xFF  # first magic byte
    env.index.write_bytes(bytes(buf))
    with pytest.raises(exc.CorruptIndexError, match="magic"):
        SearchEngine(env.index, EngineConfig(verify=False))


def test_version_mismatch_message(env: Env) -> None:
    with pytest.raises(exc.VersionMismatchError) as info:
        _file_version(5)(env)
    msg = str(info.value)
    assert str(env.index) in msg
    assert "version 5" in msg
    assert f"reads version {svve_core.FORMAT_VERSION}" in msg
    assert not isinstance(info.value, exc.CorruptIndexError)


def test_version_patch_without_crc_is_corruption(env: Env) -> None:
    buf = bytearray(env.index.read_bytes())
    struct.pack_into("<H", buf, 8, 3)
    env.index.write_bytes(bytes(buf))
    with pytest.raises(exc.CorruptIndexError, match="checksum"):
        SearchEngine(env.index)


def test_non_finite_message_locates_value(env: Env) -> None:
    with pytest.raises(exc.NonFiniteError, match=r"row 42, column 7"):
        build_index(env.tmp / "x", _with(env.data[:100], (42, 7), np.nan))
    with pytest.raises(exc.NonFiniteError, match=r"row 6, column 2"):
        env.engine.search_batch(_with(env.data[:8], (6, 2), np.nan))
    with pytest.raises(exc.NonFiniteError, match=r"column 5"):
        env.engine.search(_with(env.q, (5,), np.nan))


def test_dimension_mismatch_message(env: Env) -> None:
    with pytest.raises(exc.DimensionMismatchError, match="63") as info:
        env.engine.search(env.q[:-1])
    assert "64" in str(info.value)


def test_duplicate_ids_message(env: Env) -> None:
    with pytest.raises(exc.InvalidParameterError, match="id 2 appears more than once"):
        build_index(env.tmp / "x", env.data[:5], ids=np.array([1, 2, 3, 2, 5], np.int64))


def test_io_error_names_directory(env: Env) -> None:
    parent = env.tmp / "no" / "such"
    with pytest.raises(exc.IndexIOError) as info:
        build_index(parent / "dir.svve", env.data[:5])
    assert isinstance(info.value, OSError)
    assert str(parent) in str(info.value)
    assert not parent.exists()


async def test_async_errors_propagate(env: Env) -> None:
    with pytest.raises(exc.DimensionMismatchError):
        await env.engine.asearch(env.q[:3])
    with pytest.raises(exc.InvalidParameterError):
        await env.engine.asearch(env.q, 0)
    with pytest.raises(exc.NonFiniteError):
        await env.engine.asearch_batch(_with(env.data[:3], (0, 0), np.nan))


# --- progress callback --------------------------------------------------------


class BoomError(Exception):
    pass


@pytest.mark.parametrize("partitions", [1, 4])
def test_progress_reports_every_phase(tmp_path: Path, dataset, partitions: int) -> None:
    calls: List[Tuple[int, int]] = []
    build_index(
        tmp_path / "p.svve",
        dataset.data,
        config=svve_core.IndexConfig(partitions=partitions),
        progress=lambda d, t: calls.append((d, t)),
    )
    n = len(dataset.data)
    assert calls, "progress was never called"
    assert all(t == 4 * n for _, t in calls)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones)
    assert dones[-1] == 4 * n
    assert any(d <= n for d in dones)  # assignment to partitions
    assert any(n < d <= 2 * n for d in dones)  # encoding
    assert any(2 * n < d <= 3 * n for d in dones)  # writing
    assert any(d > 3 * n for d in dones)  # calibration


@pytest.mark.parametrize("fail_at", [1, 2, 3], ids=["assign-phase", "encode-phase", "write-phase"])
def test_raising_callback_propagates_and_leaves_no_file(tmp_path: Path, dataset, fail_at) -> None:
    calls = []
    error = BoomError("stop here")

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == fail_at:
            raise error

    path = tmp_path / "cancelled.svve"
    with pytest.raises(BoomError) as info:
        build_index(path, dataset.data, progress=progress)
    assert info.value is error
    assert len(calls) == fail_at, "the build stops at the first exception"
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_callback_keyboard_interrupt_propagates(tmp_path: Path, dataset) -> None:
    path = tmp_path / "ki.svve"
    with pytest.raises(KeyboardInterrupt):
        build_index(path, dataset.data[:10], progress=_raise_in_callback(KeyboardInterrupt()))
    assert list(tmp_path.iterdir()) == []


def test_callback_returning_false_cancels(tmp_path: Path, dataset) -> None:
    """Exactly False cancels with BuildCancelledError; other values continue."""
    path = tmp_path / "ret.svve"
    with pytest.raises(exc.BuildCancelledError):
        build_index(path, dataset.data[:10], progress=lambda d, t: False)
    assert list(tmp_path.iterdir()) == []
    build_index(path, dataset.data[:10], progress=lambda d, t: 0)
    assert len(SearchEngine(path)) == 10


# --- failed builds ------------------------------------------------------------

FAILED_BUILDS = {
    "nan": dict(vectors=lambda x: _with(x, (3, 3), np.nan)),
    "duplicate-ids": dict(ids=lambda n: np.zeros(n, np.int64)),
    "zero-row-cosine": dict(vectors=lambda x: _with(x, (0, slice(None)), 0.0)),
    "callback-encode": dict(progress=_raise_in_callback(BoomError())),
    "callback-write": dict(progress="late"),
    "bad-metric": dict(metric="dot"),
    "dtype": dict(vectors=lambda x: x.astype(np.float64)),
}


@pytest.mark.parametrize("how", list(FAILED_BUILDS))
def test_failed_build_leaves_nothing_and_keeps_existing_index(
    tmp_path: Path, dataset, how: str
) -> None:
    spec = FAILED_BUILDS[how]
    # 1. into an empty directory: nothing appears
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises((exc.SVVEError, BoomError)):
        _failing_build(fresh / "a.svve", dataset.data, spec)
    assert list(fresh.iterdir()) == []

    # 2. over an existing index: it stays byte-for-byte intact and usable
    path = tmp_path / "live.svve"
    build_index(path, dataset.data[:300], metric="l2")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    engine = SearchEngine(path)
    before = engine.search(dataset.queries[0], 5)
    with pytest.raises((exc.SVVEError, BoomError)):
        _failing_build(path, dataset.data, spec)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "live.svve"]
    reopened = SearchEngine(path)
    for e in (engine, reopened):
        ids, scores = e.search(dataset.queries[0], 5)
        np.testing.assert_array_equal(ids, before[0])
        np.testing.assert_array_equal(scores, before[1])
    assert reopened.info().metric == "l2"
    assert len(reopened) == 300


def _failing_build(path: Path, data: np.ndarray, spec: dict) -> None:
    vectors = spec.get("vectors", lambda x: x)(data)
    ids = spec["ids"](len(data)) if "ids" in spec else None
    progress = spec.get("progress")
    if progress == "late":
        n = len(data)

        def progress(done: int, total: int) -> None:
            if done > 2 * n:  # the write phase: a temporary file exists by now
                raise BoomError("late")

    build_index(path, vectors, ids=ids, metric=spec.get("metric", "cosine"), progress=progress)
