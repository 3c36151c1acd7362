"""Where a sharded build reads its rows from, in chunks, so that data larger
than memory can be built: an array, a list of ``.npy`` files (memory-mapped)
or a Ray Dataset (streamed batch by batch). Every source yields float32
``(rows, dim)`` chunks in one fixed order, as often as asked."""

from __future__ import annotations

import os
from typing import Any, Iterator, List, Optional, Sequence

import numpy as np

from svve_core.engine import _float_matrix
from svve_core.exceptions import InvalidDTypeError, InvalidParameterError, InvalidShapeError

CHUNK_ROWS = 65_536

# Column names taken as the embeddings of a Ray Dataset with several columns.
VECTOR_COLUMNS = ("embedding", "embeddings", "vector", "vectors", "data")


class Source:
    n: int
    dim: int

    def chunks(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at the sorted positions ``rows`` (one pass at most)."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        start, i = 0, 0
        for chunk in self.chunks():
            end = start + len(chunk)
            j = int(np.searchsorted(rows, end))
            out[i:j] = chunk[rows[i:j] - start]
            i, start = j, end
            if i == len(rows):
                break
        return out


class ArraySource(Source):
    def __init__(self, array: np.ndarray) -> None:
        self.array = _float_matrix(array, "vectors")
        self.n, self.dim = self.array.shape

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, self.n, CHUNK_ROWS):
            yield self.array[start : start + CHUNK_ROWS]

    def take(self, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.array[rows])


class NpySource(Source):
    def __init__(self, paths: Sequence[Any]) -> None:
        if not paths:
            raise InvalidParameterError("vectors: an empty list of .npy paths")
        self.parts: List[np.ndarray] = []
        for p in paths:
            try:
                a = np.load(p, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise InvalidParameterError(f"vectors: cannot read {p}: {e}") from None
            if a.dtype != np.float32 or a.ndim != 2:
                raise InvalidDTypeError(f"{p}: must hold a float32 matrix, got {a.shape} {a.dtype}")
            self.parts.append(a)
        self.dim = self.parts[0].shape[1]
        for p, a in zip(paths, self.parts):
            if a.shape[1] != self.dim:
                raise InvalidDTypeError(f"{p}: rows of {a.shape[1]}, the first file has {self.dim}")
        self.n = sum(len(a) for a in self.parts)

    def chunks(self) -> Iterator[np.ndarray]:
        for a in self.parts:
            for start in range(0, len(a), CHUNK_ROWS):
                yield np.ascontiguousarray(a[start : start + CHUNK_ROWS])


class RaySource(Source):
    """A Ray Dataset: its one column, or the first of ``VECTOR_COLUMNS``
    present, holding one vector per row."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        columns = list(dataset.columns())
        named = [c for c in VECTOR_COLUMNS if c in columns]
        if len(columns) == 1:
            self.column = columns[0]
        elif named:
            self.column = named[0]
        else:
            raise InvalidParameterError(
                f"vectors: a Ray Dataset with columns {columns}: give it one column, "
                f"or name the vectors one of {VECTOR_COLUMNS}"
            )
        self.n = int(dataset.count())
        first = next(self.chunks(), None)
        if first is None:
            raise InvalidParameterError("vectors: the Ray Dataset is empty")
        self.dim = first.shape[1]

    def chunks(self) -> Iterator[np.ndarray]:
        for batch in self.dataset.iter_batches(batch_size=CHUNK_ROWS, batch_format="numpy"):
            x = np.asarray(batch[self.column])
            if x.dtype == object:  # ragged or list cells
                x = np.stack(list(x))
            if x.ndim != 2 or x.dtype != np.float32:
                raise InvalidDTypeError(
                    f"vectors: column {self.column!r} must hold float32 vectors, "
                    f"got {x.dtype} of shape {x.shape}"
                )
            yield np.ascontiguousarray(x)


def source_of(vectors: Any) -> Source:
    if isinstance(vectors, np.ndarray):
        return ArraySource(vectors)
    if isinstance(vectors, (list, tuple)) and all(
        isinstance(p, (str, os.PathLike)) for p in vectors
    ):
        return NpySource(vectors)
    if _is_ray_dataset(vectors):
        return RaySource(vectors)
    return ArraySource(vectors)  # raises the usual dtype error


def _is_ray_dataset(x: Any) -> bool:
    try:
        from ray.data import Dataset
    except ImportError:
        return False
    return isinstance(x, Dataset)


def ids_for(ids: Optional[np.ndarray], n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n, dtype=np.int64)
    if not isinstance(ids, np.ndarray) or ids.dtype != np.int64:
        raise InvalidDTypeError("ids must be a numpy.ndarray of int64")
    if ids.shape != (n,):
        raise InvalidShapeError(f"ids must have shape ({n},), got {ids.shape}")
    if len(np.unique(ids)) != n:
        raise InvalidParameterError("ids must be unique")
    return ids
