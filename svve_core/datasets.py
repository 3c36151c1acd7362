"""Evaluation datasets: one loader for ``svve demo``, the benchmarks and the studies.

A dataset directory holds (the layout of ``../shared/datasets/*`` and of the
synthetic sets ``benchmarks.harness.synthetic`` writes):

- ``base.npy`` (n, dim) and ``queries.npy`` (q, dim), float32 or float16;
- ``gt.npy`` (q, k), optional: ids of each query's exact nearest neighbours, best first;
- ``meta.json``, optional: at least ``metric`` (default ``ip``).

>>> from svve_core.datasets import load_dataset, recall
>>> ds = load_dataset("../shared/datasets/debian-minilm-384")
>>> ds.base.shape, ds.queries.shape, ds.metric
((60144, 384), (1000, 384), 'ip')
>>> demo = load_dataset()  # the sample shipped in svve_core/data/demo.npz
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import NamedTuple, Optional, Union

import numpy as np

from svve_core.exceptions import InvalidInputError

PathLike = Union[str, os.PathLike]

DEMO_NAME = "demo sample"
# The shipped sample: unit-norm sentence embeddings (see svve_core/data/README.md).
_DEMO_META = {"name": DEMO_NAME, "metric": "cosine", "source": "svve_core/data/demo.npz"}


class Dataset(NamedTuple):
    """What :func:`load_dataset` returns."""

    base: Optional[np.ndarray]  # (n, dim) float32; None when loaded with with_base=False
    queries: np.ndarray  # (q, dim) float32
    gt: Optional[np.ndarray]  # (q, k) ids, best first; None when the directory has no gt.npy
    meta: dict  # meta.json, {} when there is none
    name: str  # the directory's name, or "demo sample"

    @property
    def metric(self) -> str:
        """The metric the ground truth was computed with (see :func:`dataset_metric`)."""
        return dataset_metric(self.meta)


def load_dataset(directory: Optional[PathLike] = None, with_base: bool = True) -> Dataset:
    """The dataset in ``directory``, or the shipped demo sample when it is None.
    A missing or unreadable file raises ``InvalidInputError`` naming it.

    Vectors come back float32 and C-contiguous. float16 files (the developer
    copy of debian-minilm-384) are memory-mapped and cast once into one float32
    array; float32 files are memory-mapped and returned as a read-only view of
    the map, so the base costs no copy and its pages are read as they are used.
    ``with_base=False`` leaves the base unread (``base`` is None), for processes
    that only query an index built earlier.
    """
    if directory is None:
        with resources.files("svve_core").joinpath("data/demo.npz").open("rb") as f:
            z = np.load(f)
            base = _float32(z["base"]) if with_base else None
            queries = _float32(z["queries"])
        return Dataset(base, queries, None, dict(_DEMO_META), DEMO_NAME)
    d = Path(directory)
    if not d.is_dir():
        raise InvalidInputError(f"{d}: no such directory")
    base = _matrix(d / "base.npy", mmap=True) if with_base else None
    queries = _matrix(d / "queries.npy", mmap=False)
    gt = None
    if (d / "gt.npy").exists():
        gt = _load(d / "gt.npy", mmap=False)
        if gt.ndim != 2 or gt.dtype.kind not in "iu" or len(gt) != len(queries):
            raise InvalidInputError(
                f"{d / 'gt.npy'}: must be ({len(queries)}, k) integer ids, "
                f"got {gt.shape} {gt.dtype}"
            )
    meta: dict = {}
    if (d / "meta.json").exists():
        try:
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InvalidInputError(f"{d / 'meta.json'}: not valid JSON: {e}") from None
        if not isinstance(meta, dict):
            raise InvalidInputError(f"{d / 'meta.json'}: must be a JSON object")
    return Dataset(base, queries, gt, meta, d.name)


def _load(path: Path, mmap: bool) -> np.ndarray:
    """``path`` as an array, or a one-line ``InvalidInputError`` naming it
    (missing, not an .npy, pickled, truncated)."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InvalidInputError(f"{path}: not a readable .npy array ({why})") from None


def _matrix(path: Path, mmap: bool) -> np.ndarray:
    a = _load(path, mmap)
    if a.ndim != 2 or a.dtype.kind != "f":
        raise InvalidInputError(f"{path}: must be a 2-D float matrix, got {a.shape} {a.dtype}")
    try:
        return _float32(a)
    except (OSError, ValueError) as e:  # a truncated data section surfaces on reading
        raise InvalidInputError(f"{path}: cannot be read ({e})") from None


def _float32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def dataset_metric(meta: dict) -> str:
    """The svve metric a dataset's ground truth was computed with, from its ``meta.json``:
    inner product (``ip``) for cosine / angular / dot sets (unit-norm vectors), ``l2``
    for euclidean ones; ``ip`` when the metadata names none."""
    m = str(meta.get("metric", "ip")).lower()
    return {"cosine": "ip", "angular": "ip", "dot": "ip", "euclidean": "l2"}.get(m, m)


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """recall@k: mean ``|found[i, :k] & truth[i, :k]| / k`` over the rows of ``found``
    (ids; -1 pads missing results). ``truth`` may have more rows (only the first
    ``len(found)`` count) and more columns; NaN when ``found`` has no rows."""
    if not len(found):
        return float("nan")
    return float(recall_per_query(found, truth, k).mean())


def recall_per_query(found: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """recall@k of each row of ``found`` (see :func:`recall`), float64 ``(len(found),)``."""
    return np.array(
        [
            len(set(f[:k].tolist()) & set(t[:k].tolist())) / k
            for f, t in zip(found, truth[: len(found)])
        ],
        dtype=np.float64,
    )


__all__ = [
    "DEMO_NAME",
    "Dataset",
    "dataset_metric",
    "load_dataset",
    "recall",
    "recall_per_query",
]
