"""Damaged and hostile index files, through the Python API.

``tests/rust/corruption.rs`` sweeps the binary format exhaustively; here the
same damage goes through ``SearchEngine`` and ``reload``, so the exception
classes, the messages (naming the file) and the pydantic manifest check are
covered too. The untrusted-file tests run in subprocesses: loading never
executes code (an audit hook sees no exec, import, pickle, process or
network event), reads nothing but its own file (one read-only mapping, no
descriptor left open), and refuses a header claiming 2**60 vectors at once,
without allocating (peak RSS measured).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional

import numpy as np
import pytest

import svve_core
from svve_core import EngineConfig, IndexConfig, SearchEngine, build_index
from svve_core import exceptions as exc

HEADER = 64
TAGS = {b"MANI": "manifest", b"CENT": "partition centroids", b"POFF": "partition offsets",
        b"CODE": "tier1 codes", b"FACT": "tier1 factors", b"VECS": "tier2 vectors",
        b"IDS\0": "ids"}  # fmt: skip
REFUSED = (exc.CorruptIndexError, exc.VersionMismatchError)


# --- a byte-level crafting kit (docs/arch/blueprint.md, section 4) ---------------------


class Section(NamedTuple):
    tag: bytes
    version: int
    elem: int
    rows: int
    cols: int
    payload: bytes


def parse(raw: bytes) -> List[Section]:
    count = struct.unpack_from("<I", raw, 16)[0]
    out = []
    for i in range(count):
        at = HEADER * (1 + i)
        tag = raw[at + 4 : at + 8]
        version, elem = struct.unpack_from("<HH", raw, at + 8)
        rows, cols, offset, length = struct.unpack_from("<QQQQ", raw, at + 16)
        out.append(Section(tag, version, elem, rows, cols, raw[offset : offset + length]))
    return out


def _seal(block: bytearray) -> bytes:
    block[60:64] = struct.pack("<I", zlib.crc32(bytes(block[:60])) & 0xFFFFFFFF)
    return bytes(block)


def _align(x: int) -> int:
    return (x + 63) // 64 * 64


def assemble(sections: List[Section], entry: Optional[Callable[[int, dict], None]] = None,
             header: Optional[Callable[[dict], None]] = None) -> bytes:  # fmt: skip
    """A file laid out as the writer does, every checksum correct; ``entry``
    and ``header`` may alter the fields written (after layout)."""
    at = _align(HEADER * (1 + len(sections)))
    fields = []
    for s in sections:
        fields.append(dict(tag=s.tag, version=s.version, elem=s.elem, rows=s.rows, cols=s.cols,
                           offset=at, len=len(s.payload), crc=zlib.crc32(s.payload)))  # fmt: skip
        at = _align(at + len(s.payload))
    end = max([f["offset"] + f["len"] for f in fields] or [HEADER])
    h = dict(version=2, count=len(sections), file_len=end, header_len=64, table=64)
    if header:
        header(h)
    buf = bytearray(end)
    hb = bytearray(HEADER)
    hb[0:8] = b"SVVEIDX\0"
    struct.pack_into("<HHIII", hb, 8, h["version"], 0, h["header_len"], h["count"], 0)
    struct.pack_into("<QQ", hb, 24, h["file_len"], h["table"])
    buf[:HEADER] = _seal(hb)
    for i, (s, f) in enumerate(zip(sections, fields)):
        buf[f["offset"] : f["offset"] + len(s.payload)] = s.payload
        if entry:
            entry(i, f)
        eb = bytearray(HEADER)
        eb[0:4] = b"SVSC"
        eb[4:8] = f["tag"]
        struct.pack_into("<HHI", eb, 8, f["version"], f["elem"], 0)
        struct.pack_into("<QQQQI", eb, 16, f["rows"], f["cols"], f["offset"], f["len"], f["crc"])
        buf[HEADER * (1 + i) : HEADER * (2 + i)] = _seal(eb)
    return bytes(buf)


def with_manifest(sections: List[Section], text: bytes) -> List[Section]:
    return [s._replace(payload=text, rows=len(text)) if s.tag == b"MANI" else s for s in sections]


def manifest_of(sections: List[Section]) -> dict:
    return json.loads(next(s.payload for s in sections if s.tag == b"MANI"))


class Damage(NamedTuple):
    good: Path  # a valid index (never modified)
    raw: bytes
    tmp: Path

    def write(self, data: bytes, name: str = "bad.svve") -> Path:
        p = self.tmp / name
        p.write_bytes(data)
        return p


@pytest.fixture
def damage(index_paths, tmp_path: Path) -> Damage:
    good = index_paths["l2"]
    return Damage(good, good.read_bytes(), tmp_path)


def expect_refused(path: Path, verify: bool = True) -> exc.SVVEError:
    with pytest.raises(REFUSED) as info:
        SearchEngine(path, EngineConfig(verify=verify))
    assert os.fspath(path) in str(info.value), f"message does not name the file: {info.value}"
    return info.value


def test_assemble_reproduces_a_valid_file(damage: Damage) -> None:
    assert assemble(parse(damage.raw)) == damage.raw


# --- sweeps through the Python API ------------------------------------------------------------


def test_every_header_and_table_byte_flip_is_refused(damage: Damage) -> None:
    table_end = HEADER * (1 + len(parse(damage.raw)))
    path = damage.tmp / "flip.svve"
    for at in range(table_end):
        buf = bytearray(damage.raw)
        buf[at] ^= 1 << (at % 8)
        path.write_bytes(bytes(buf))
        expect_refused(path, verify=False)


@pytest.mark.parametrize("tag", list(TAGS), ids=lambda t: t.decode().strip("\0"))
def test_sampled_payload_flips_name_file_and_section(damage: Damage, tag: bytes) -> None:
    at = damage.raw.index(b"SVSC" + tag)
    offset, length = struct.unpack_from("<QQ", damage.raw, at + 32)
    path = damage.tmp / "payload.svve"
    for i, off in enumerate(sorted({0, length - 1, *range(0, length, max(1, length // 16))})):
        buf = bytearray(damage.raw)
        buf[offset + off] ^= 1 << (i % 8)
        path.write_bytes(bytes(buf))
        err = expect_refused(path)
        assert f"{TAGS[tag]} section checksum mismatch" in str(err)


def test_truncation_at_every_section_boundary(damage: Damage) -> None:
    cuts = {0, 1, 63, 64, 65, HEADER * 8 - 1, HEADER * 8, len(damage.raw) - 1}
    for tag in TAGS:
        at = damage.raw.index(b"SVSC" + tag)
        offset, length = struct.unpack_from("<QQ", damage.raw, at + 32)
        cuts |= {offset - 1, offset, offset + 1, offset + length // 2, offset + length - 1}
    path = damage.tmp / "cut.svve"
    for cut in sorted(c for c in cuts if 0 <= c < len(damage.raw)):
        path.write_bytes(damage.raw[:cut])
        expect_refused(path, verify=False)


@pytest.mark.parametrize("extra", [1, 64, 4096])
def test_extension_is_refused_even_with_a_resealed_length(damage: Damage, extra: int) -> None:
    expect_refused(damage.write(damage.raw + b"\0" * extra))
    buf = bytearray(damage.raw + b"\0" * extra)
    struct.pack_into("<Q", buf, 24, len(buf))
    buf[:HEADER] = _seal(bytearray(buf[:HEADER]))
    assert "follow the last section" in str(expect_refused(damage.write(bytes(buf))))


@pytest.mark.parametrize("version", [0, 1, 3, 4, 5, 255, 65535])
def test_versions(damage: Damage, version: int) -> None:
    secs = parse(damage.raw)
    p = damage.write(assemble(secs, header=lambda h: h.update(version=version)))
    if version in (1, 3, 4):  # readable, but its sections say 2
        with pytest.raises(exc.CorruptIndexError, match=f"version 2 in a version {version} file"):
            SearchEngine(p)
    else:
        with pytest.raises(exc.VersionMismatchError, match=f"version {version} "):
            SearchEngine(p)
    for i in range(len(secs)):

        def entry(j: int, f: dict, i: int = i) -> None:
            if j == i:
                f["version"] = version

        p = damage.write(assemble(secs, entry=entry))
        # A section newer than this library is a version mismatch; one that
        # disagrees with its file's version otherwise, a damaged file.
        newer = version > svve_core.FORMAT_VERSION
        with pytest.raises(exc.VersionMismatchError if newer else exc.CorruptIndexError):
            SearchEngine(p, EngineConfig(verify=False))


# --- manifests: syntax, types, disagreement ------------------------------------------------


def _edited(m: dict, **changes) -> bytes:
    out = json.loads(json.dumps(m))
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key)
        else:
            out[key] = value
    return json.dumps(out, separators=(",", ":")).encode()


_DROP = object()


def _manifest_cases(m: dict) -> Dict[str, bytes]:
    good = json.dumps(m, separators=(",", ":")).encode()
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "trailing comma": good[:-1] + b",}",
        "single quotes": good.replace(b'"', b"'"),
        "not utf-8": b"\xff\xfe" + good,
        "array": b"[" + good + b"]",
        "a pickle": b"\x80\x04\x95cos\nsystem\n(S'touch /tmp/svve-pwned'\ntR.",
        "n as string": _edited(m, n=str(m["n"])),
        "n as float": _edited(m, n=m["n"] + 0.5),
        "n negative": _edited(m, n=-1),
        "n 2**60": _edited(m, n=2**60),
        "n - 1": _edited(m, n=m["n"] - 1),
        "dim + 1": _edited(m, dim=m["dim"] + 1),
        "metric unknown": _edited(m, metric="hamming"),
        "code_words": _edited(m, code_words=m["code_words"] + 1),
        "partitions 0": _edited(m, partitions=0),
        "partitions > n": _edited(m, partitions=m["n"] + 1),
        "format": _edited(m, format="faiss"),
        "format_version 1": _edited(m, format_version=1),
        "format_version 3": _edited(m, format_version=3),
        "missing build": _edited(m, build=_DROP),
        "extra field": _edited(m, loader="pickle"),
        "build.center string": _edited(m, build={**m["build"], "center": "yes"}),
        # Accepted by the Rust reader (usize), refused by pydantic (IndexConfig
        # caps partitions at 2**32 - 1): the Python layer checks again.
        "build.partitions 2**40": _edited(m, build={**m["build"], "partitions": 2**40}),
    }


def test_broken_manifests_are_refused(damage: Damage) -> None:
    secs = parse(damage.raw)
    m = manifest_of(secs)
    cases = _manifest_cases(m)
    engine = SearchEngine(damage.good)
    for name, text in cases.items():
        p = damage.write(assemble(with_manifest(secs, text)), f"{len(text)}.svve")
        err = expect_refused(p)
        assert "checksum" not in str(err), f"{name}: refused by a CRC, not by the manifest check"
        assert "manifest" in str(err), f"{name}: {err}"
        with pytest.raises(exc.CorruptIndexError):
            engine.reload(p)
    assert engine.info().path == os.fspath(damage.good), "failed reloads kept the old index"
    # control: the same manifest re-serialised loads
    ok = damage.write(assemble(with_manifest(secs, _edited(m))), "ok.svve")
    assert len(SearchEngine(ok)) == m["n"]


def test_metric_change_with_valid_manifest_is_the_files_word(damage: Damage) -> None:
    """A consistent manifest that names another metric is a different (valid)
    index, not corruption: the file is the authority on its metric."""
    secs = parse(damage.raw)
    m = manifest_of(secs)
    p = damage.write(assemble(with_manifest(secs, _edited(m, metric="ip"))))
    assert SearchEngine(p).info().metric == "ip"


# --- untrusted files ----------------------------------------------------------------------------


def _run_python(script: str, *args: str, timeout: float = 120) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "SVVE_NUM_THREADS": "2"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _hostile_files(damage: Damage) -> Dict[str, Path]:
    secs = parse(damage.raw)
    m = manifest_of(secs)
    sentinel = damage.tmp / "PWNED"
    code = f"__import__('os').system('touch {sentinel}')"
    pickle_payload = b"cos\nsystem\n(S'touch " + os.fsencode(sentinel) + b"'\ntR."
    files = {
        # valid JSON whose strings are code: loads, executes nothing
        "code in library_version": assemble(with_manifest(secs, _edited(m, library_version=code))),
        "pickle as manifest": assemble(with_manifest(secs, pickle_payload)),
        "code as manifest": assemble(with_manifest(secs, code.encode())),
        "yaml tag": assemble(with_manifest(secs, b"!!python/object/apply:os.system ['touch x']")),
        "pickle file": b"\x80\x04" + pickle_payload,
        "npy with object dtype": _npy_object_bytes(damage.tmp),
    }
    return {
        name: damage.write(data, f"hostile-{i}.svve")
        for i, (name, data) in enumerate(files.items())
    }


def _npy_object_bytes(tmp: Path) -> bytes:
    p = tmp / "obj.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return p.read_bytes()


_AUDIT = """
import json, sys
import numpy as np
import svve_core
paths = sys.argv[1:]
events = []
recording = [False]
FORBIDDEN = ("exec", "compile", "import", "open", "pickle", "marshal", "os.", "subprocess",
             "socket", "ctypes", "shutil", "urllib", "http", "builtins.input", "code.",
             "cpython.run", "glob", "tempfile", "webbrowser")
def hook(name, args):
    if recording[0] and name.startswith(FORBIDDEN):
        events.append([name, repr(args)[:200]])
sys.addaudithook(hook)
svve_core.SearchEngine(paths[0]).search(np.ones(64, np.float32))  # warm every lazy import
outcome = {}
recording[0] = True
for p in paths[1:]:
    try:
        e = svve_core.SearchEngine(p)
        e.search(np.ones(e.dim, np.float32), 5)
        e.search_batch(np.ones((2, e.dim), np.float32), 5)
        e.info()
        outcome[p] = "loaded"
    except svve_core.exceptions.SVVEError as err:
        outcome[p] = type(err).__name__
recording[0] = False
print(json.dumps({"events": events, "outcome": outcome}))
"""


def test_loading_never_executes_code(damage: Damage) -> None:
    files = _hostile_files(damage)
    result = _run_python(_AUDIT, os.fspath(damage.good), *map(os.fspath, files.values()))
    assert result["events"] == [], result["events"]
    assert not (damage.tmp / "PWNED").exists()
    outcome = {name: result["outcome"][os.fspath(p)] for name, p in files.items()}
    assert outcome.pop("code in library_version") == "loaded"  # just a string
    assert set(outcome.values()) == {"CorruptIndexError"}, outcome
    # nothing in the package can deserialise code
    source = "".join(p.read_text() for p in Path(svve_core.__file__).parent.glob("*.py"))
    for needle in ("pickle.load", "marshal.load", "eval(", "exec(", "yaml.", "allow_pickle=True",
                   "__import__"):  # fmt: skip
        assert needle not in source, needle


_MAPS = """
import json, os, sys
import numpy as np
import svve_core
path = os.path.realpath(sys.argv[1])
def file_maps():
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].strip().startswith("/"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((parts[5].strip(), parts[1], hi - lo))
    return out
def fds():
    return {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
before_maps, before_fds = set(file_maps()), fds()
engine = svve_core.SearchEngine(sys.argv[1])
engine.search(np.ones(engine.dim, np.float32))
engine.search_batch(np.ones((4, engine.dim), np.float32))
new_maps = [m for m in file_maps() if m not in before_maps]
new_fds = sorted(fds() - before_fds)
print(json.dumps({"path": path, "new_maps": new_maps, "new_fds": new_fds}))
"""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_loading_reads_only_its_own_file(damage: Damage) -> None:
    """The only new mapping is the index file, read-only, exactly its size;
    no descriptor stays open (the mapping outlives the file handle)."""
    link = damage.tmp / "link.svve"
    link.symlink_to(damage.good)
    for target in (damage.good, link):
        r = _run_python(_MAPS, os.fspath(target))
        # madvise(MADV_RANDOM) on the vectors splits the one mapping in
        # several areas: every one is the index file, read-only and shared,
        # and together they span exactly the file.
        assert {m[0] for m in r["new_maps"]} == {r["path"]}, r["new_maps"]
        assert {m[1] for m in r["new_maps"]} == {"r--s"}, r["new_maps"]
        page = os.sysconf("SC_PAGE_SIZE")
        size = sum(m[2] for m in r["new_maps"])
        assert size == (damage.good.stat().st_size + page - 1) // page * page
        assert r["path"] not in r["new_fds"], "the index file is still open"
        files = [fd for fd in r["new_fds"] if fd.startswith("/") and not fd.startswith("/dev/")]
        assert files == [], f"descriptors left open: {files}"


_HUGE = """
import json, os, sys, time
import numpy as np
import svve_core
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
warm = svve_core.SearchEngine(sys.argv[1])
warm.search(np.ones(warm.dim, np.float32))
out = {}
for p in sys.argv[2:]:
    for verify in (True, False):
        resettable = reset_peak()
        rss0, peak0 = status("VmRSS"), status("VmHWM")
        t = time.perf_counter()
        try:
            svve_core.SearchEngine(p, svve_core.EngineConfig(verify=verify))
            what = "loaded"
        except svve_core.exceptions.SVVEError as e:
            what = f"{type(e).__name__}: {e}"
        dt = time.perf_counter() - t
        peak = status("VmHWM")
        out[f"{p}|{verify}"] = {"what": what, "seconds": dt, "resettable": resettable,
                                "peak_growth": peak - (rss0 if resettable else peak0)}
print(json.dumps(out))
"""


def _huge_claims(damage: Damage) -> Dict[str, bytes]:
    secs = parse(damage.raw)
    m = manifest_of(secs)
    big = 2**60

    def rows(tag: bytes, n: int, elem_size: int, cols: Optional[int] = None):
        def entry(i: int, f: dict) -> None:
            if f["tag"] == tag:
                f["rows"] = n
                if cols is not None:
                    f["cols"] = cols
                f["len"] = (n * f["cols"] * elem_size) % 2**64

        return entry

    huge_manifest = with_manifest(secs, _edited(m, n=big))
    return {
        "manifest n = 2**60": assemble(huge_manifest),
        "manifest and ids claim 2**60": assemble(huge_manifest, entry=rows(b"IDS\0", big, 8)),
        "vectors claim 2**60 x 1": assemble(secs, entry=rows(b"VECS", big, 4, cols=1)),
        "vectors claim 2**60 x dim (len wraps)": assemble(secs, entry=rows(b"VECS", big, 4)),
        "manifest claims 2**60 bytes": assemble(secs, entry=rows(b"MANI", big, 1)),
        "header file_len 2**60": assemble(secs, header=lambda h: h.update(file_len=big)),
        "header 2**32 - 1 sections": assemble(secs, header=lambda h: h.update(count=2**32 - 1)),
        "consistent 2**32 - 1 rows everywhere": _all_sections_claim(secs, m, 2**32 - 1),
    }


def _all_sections_claim(secs: List[Section], m: dict, n: int) -> bytes:
    """Manifest and every per-row section agree on n rows; the file is tiny."""
    sizes = {b"CODE": 8, b"FACT": 4, b"VECS": 4, b"IDS\0": 8}

    def entry(i: int, f: dict) -> None:
        if f["tag"] in sizes:
            if f["tag"] == b"FACT":
                f["cols"] = n
            else:
                f["rows"] = n
            f["len"] = f["rows"] * f["cols"] * sizes[f["tag"]]

    return assemble(with_manifest(secs, _edited(m, n=n)), entry=entry)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_huge_header_claims_fail_fast_without_allocating(damage: Damage) -> None:
    files = {name: damage.write(data, f"huge-{i}.svve")
             for i, (name, data) in enumerate(_huge_claims(damage).items())}  # fmt: skip
    r = _run_python(_HUGE, os.fspath(damage.good), *map(os.fspath, files.values()))
    for name, path in files.items():
        for verify in (True, False):
            m = r[f"{path}|{verify}"]
            assert m["what"].startswith("CorruptIndexError"), (name, m)
            assert os.fspath(path) in m["what"]
            assert m["seconds"] < 0.5, (name, m)
            assert m["peak_growth"] < 8 << 20, (name, m)  # nothing sized from the claim


def test_huge_sparse_file_is_checked_by_length_not_read(tmp_path: Path, damage: Damage) -> None:
    """A 1 TiB sparse file with a valid header claiming that length: refused
    from the table (sections do not tile the file), without reading it."""
    p = tmp_path / "sparse.svve"
    secs = parse(damage.raw)
    data = assemble(secs, header=lambda h: h.update(file_len=2**40))
    try:
        with open(p, "wb") as f:
            f.write(data)
            f.truncate(2**40)
    except OSError as e:
        pytest.skip(f"this file system has no 1 TiB sparse files: {e}")
    try:
        r = _run_python(_HUGE, os.fspath(damage.good), os.fspath(p))
        for verify in (True, False):
            m = r[f"{p}|{verify}"]
            assert m["what"].startswith("CorruptIndexError"), m
            assert "follow the last section" in m["what"], m
            assert m["seconds"] < 0.5, m
            assert m["peak_growth"] < 8 << 20, m
    finally:
        p.unlink()


# --- write-once: what the contract does and does not cover -------------------------------


def test_copy_then_rename_is_the_safe_way_to_replace(tmp_path: Path, dataset) -> None:
    """Replacing a live index by rename (what build_index does) never
    disturbs engines that mapped the old file."""
    live = tmp_path / "live.svve"
    build_index(live, dataset.data[:300], metric="ip", config=IndexConfig(partitions=1))
    engine = SearchEngine(live)
    before = engine.search(dataset.queries[0])
    staged = tmp_path / "staged.svve"
    build_index(staged, dataset.data[300:900], metric="ip")
    shutil.copyfile(staged, tmp_path / ".incoming.svve")
    os.replace(tmp_path / ".incoming.svve", live)
    np.testing.assert_array_equal(engine.search(dataset.queries[0])[0], before[0])
    engine.reload()
    assert len(engine) == 600
