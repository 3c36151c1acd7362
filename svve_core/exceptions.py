"""Every error svve-core raises, under one base class.

Each class also subclasses the builtin that callers already catch
(``ValueError`` for bad input, ``FileNotFoundError``, ``OSError``).
The Rust core raises these same classes (``src/api/errors.rs``).
"""

from __future__ import annotations


class SVVEError(Exception):
    """Base class of every svve-core error."""


class InvalidInputError(SVVEError, ValueError):
    """An argument is not acceptable."""


class InvalidVectorError(InvalidInputError):
    """A vector or matrix cannot be used (zero vector for cosine, bad layout...)."""


class InvalidDTypeError(InvalidVectorError, TypeError):
    """An array has the wrong type or dtype (vectors must be numpy float32, ids int64)."""


class InvalidShapeError(InvalidVectorError):
    """An array has the wrong number of dimensions or rows."""


class DimensionMismatchError(InvalidVectorError):
    """A vector's length differs from the index dimension."""


class NonFiniteError(InvalidVectorError):
    """An input contains NaN or infinity."""


class InvalidParameterError(InvalidInputError):
    """A parameter (k, metric, a search knob, ids...) is out of range."""


class InvalidFilterError(InvalidInputError):
    """A filter is malformed or does not fit the index's attributes; the
    message names the part of the filter that is wrong."""


class IndexNotFoundError(SVVEError, FileNotFoundError):
    """No index exists at the given path."""


class IndexFormatError(SVVEError):
    """A file exists but cannot be used as an index."""


class CorruptIndexError(IndexFormatError):
    """The file is damaged, truncated or not an svve index."""


class VersionMismatchError(IndexFormatError):
    """The file was written in a format version this build cannot read."""


class IndexIOError(SVVEError, OSError):
    """The operating system refused a read or write."""


class DuplicateIdError(InvalidParameterError):
    """An id appears twice in one call, or ``add`` got an id the collection already holds."""


class CollectionNotFoundError(IndexNotFoundError):
    """No collection exists at the given directory."""


class CollectionExistsError(SVVEError, FileExistsError):
    """``Collection.create`` found a collection already in the directory."""


class CollectionLockedError(SVVEError):
    """Another writer (in this or another process) holds the collection."""


class CollectionClosedError(SVVEError):
    """The collection handle was closed."""


class ReadOnlyCollectionError(SVVEError):
    """A write was attempted through a collection opened with ``readonly=True``."""


class ShardUnavailableError(SVVEError, RuntimeError):
    """A shard of a sharded index (``svve_core.distributed``) did not answer,
    even after its actor was restarted and the query retried; names the shard."""


class BuildCancelledError(SVVEError):
    """A build was stopped by its progress callback."""


class InternalError(SVVEError):
    """A bug in svve-core (a Rust panic, caught before it reached Python). Please report it."""


__all__ = [
    "BuildCancelledError",
    "CollectionClosedError",
    "CollectionExistsError",
    "CollectionLockedError",
    "CollectionNotFoundError",
    "CorruptIndexError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "IndexFormatError",
    "IndexIOError",
    "IndexNotFoundError",
    "InternalError",
    "InvalidDTypeError",
    "InvalidFilterError",
    "InvalidInputError",
    "InvalidParameterError",
    "InvalidShapeError",
    "InvalidVectorError",
    "NonFiniteError",
    "ReadOnlyCollectionError",
    "SVVEError",
    "ShardUnavailableError",
    "VersionMismatchError",
]
