"""Helpers shared by the Python tests: seeded data, numpy brute force, and
a few readers/patchers for the index file layout (docs/arch/blueprint.md).

Imported by the test modules as ``support`` (pytest puts this directory on
``sys.path``; there is no ``__init__.py`` here on purpose).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

METRICS = ("cosine", "ip", "l2")
HEADER_LEN = 64


def clustered(
    n: int, dim: int, *, clusters: int = 20, spread: float = 1.0, seed: int = 0
) -> np.ndarray:
    """``n`` float32 rows around ``clusters`` Gaussian centres (unit noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)) * spread
    labels = rng.integers(0, clusters, n)
    x = centres[labels] + rng.standard_normal((n, dim))
    return np.ascontiguousarray(x, dtype=np.float32)


def brute_force(data: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """Scores of every row for every query, ``(B, N)`` float64, in the
    library's convention: similarity for cosine/ip, squared L2 distance for l2."""
    x = data.astype(np.float64)
    q = np.atleast_2d(queries).astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        return q @ x.T
    if metric == "ip":
        return q @ x.T
    if metric == "l2":
        return (q * q).sum(1)[:, None] - 2.0 * (q @ x.T) + (x * x).sum(1)[None, :]
    raise ValueError(metric)


def best_first(scores: np.ndarray, metric: str) -> np.ndarray:
    """Row order, best first, of one query's brute-force scores (stable)."""
    key = scores if metric == "l2" else -scores
    return np.argsort(key, kind="stable")


def topk_ids(scores: np.ndarray, metric: str, k: int) -> np.ndarray:
    """Row numbers of the true top-k of every query, ``(B, k)``."""
    return np.stack([best_first(row, metric)[:k] for row in np.atleast_2d(scores)])


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of ``truth`` rows found, over queries."""
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)]))


def assert_matches_brute_force(
    ids: np.ndarray,
    scores: np.ndarray,
    bf: np.ndarray,
    metric: str,
    k: int,
    ids_of_rows: Optional[np.ndarray] = None,
    tie_tol: float = 1e-5,
) -> None:
    """One query's ``(ids, scores)`` equal the brute-force top-k ``bf`` (N,).

    Ids must match rank by rank, except where the brute-force scores of the
    expected and the returned row tie within ``tie_tol`` (relative). Scores
    must be close to the brute-force scores (rtol 1e-4).
    """
    m = min(k, bf.shape[0])
    assert ids.shape == (m,)
    assert scores.shape == (m,)
    rows_of_id: Dict[int, int]
    if ids_of_rows is None:
        rows_of_id = {i: i for i in range(bf.shape[0])}
        ids_of_rows = np.arange(bf.shape[0], dtype=np.int64)
    else:
        rows_of_id = {int(v): r for r, v in enumerate(ids_of_rows)}
    order = best_first(bf, metric)[:m]
    expected = ids_of_rows[order]
    assert len(set(ids.tolist())) == m, "duplicate ids in the result"
    rows = np.array([rows_of_id[int(i)] for i in ids])
    got_bf, want_bf = bf[rows], bf[order]
    differ = ids != expected
    tol = tie_tol * np.maximum(1.0, np.abs(want_bf))
    bad = differ & (np.abs(got_bf - want_bf) > tol)
    assert not bad.any(), (
        f"ids differ at ranks {np.flatnonzero(bad).tolist()}: got {ids[bad].tolist()} "
        f"(bf scores {got_bf[bad].tolist()}), expected {expected[bad].tolist()} "
        f"(bf scores {want_bf[bad].tolist()})"
    )
    np.testing.assert_allclose(scores, want_bf, rtol=1e-4, atol=1e-5)


# --- index file layout ------------------------------------------------------


def sections(path: Path) -> Dict[str, Tuple[int, int]]:
    """``{tag: (offset, length)}`` of every section, read from the table."""
    raw = Path(path).read_bytes()
    count = struct.unpack_from("<I", raw, 16)[0]
    out = {}
    for i in range(count):
        at = HEADER_LEN * (1 + i)
        tag = raw[at + 4 : at + 8].rstrip(b"\0").decode()
        offset, length = struct.unpack_from("<QQ", raw, at + 32)
        out[tag] = (offset, length)
    return out


def without_timing(path: Path) -> bytes:
    """The file's bytes with the calibration's wall-clock ``seconds`` set to 0
    and the checksums over it blanked: the only bytes in which two builds of
    the same data and seed may differ."""
    buf = bytearray(Path(path).read_bytes())
    count = struct.unpack_from("<I", buf, 16)[0]
    for i in range(count):
        at = HEADER_LEN * (1 + i)
        if bytes(buf[at + 4 : at + 8]) != b"CALI":
            continue
        offset, length = struct.unpack_from("<QQ", buf, at + 32)
        cal = json.loads(bytes(buf[offset : offset + length]).decode())
        if cal is not None:
            cal["seconds"] = 0
        buf[offset : offset + length] = json.dumps(cal).encode().ljust(length)
        buf[at + 48 : at + 52] = bytes(4)  # payload CRC
        buf[at + 60 : at + 64] = bytes(4)  # entry seal
    return bytes(buf)


def reseal(buf: bytearray, at: int) -> None:
    """Recomputes the CRC32 of the 64-byte block at ``at`` (bytes 0..60 -> 60..64)."""
    crc = zlib.crc32(bytes(buf[at : at + 60])) & 0xFFFFFFFF
    buf[at + 60 : at + 64] = struct.pack("<I", crc)


def read_manifest(path: Path) -> dict:
    """The JSON manifest stored in the file's manifest section."""
    offset, length = sections(path)["MANI"]
    with open(path, "rb") as f:
        f.seek(offset)
        return json.loads(f.read(length))


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    """Flips one bit of the file in place."""
    buf = bytearray(Path(path).read_bytes())
    buf[offset] ^= 1 << bit
    Path(path).write_bytes(bytes(buf))
