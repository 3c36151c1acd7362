"""Pydantic models for configuration, search parameters, manifests and info.

Models are validated once, when built; the search path only reuses the
native parameter object each ``SearchParams`` caches.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from svve_core import _svve_core
from svve_core.exceptions import InvalidParameterError

Metric = Literal["cosine", "ip", "l2"]

# The Rust side stores the integer knobs as usize and the float ones as f32:
# larger values must fail here, at construction, with InvalidParameterError,
# not later as an OverflowError (or a silent inf) at search time.
_USIZE_MAX = 2 * sys.maxsize + 1
_F32_MAX = float(np.finfo(np.float32).max)


class _Model(BaseModel):
    """Frozen, strict-about-extras base. Constructing a model with bad values
    raises ``InvalidParameterError`` (``model_validate*`` and assignment raise
    pydantic's ``ValidationError``, which is also a ``ValueError``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise InvalidParameterError(f"{type(self).__name__}: {e}") from e


class IndexConfig(_Model):
    """Build-time options (stored in the index manifest)."""

    center: bool = Field(
        True,
        description="Code each vector relative to its partition centroid (else to zero).",
    )
    partitions: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="k-means partitions for Tier1 routing; 0 = auto (1 below 10k rows, "
        "else round(sqrt(n))).",
    )
    seed: int = Field(0, ge=0, le=2**64 - 1, description="Seed of the k-means sampling.")


class SearchParams(_Model):
    """Knobs of each pipeline stage. See docs/arch/blueprint.md for the maths."""

    exact: bool = Field(False, description="Score every vector in float32 (brute force).")
    candidates: int = Field(
        0,
        ge=0,
        le=_USIZE_MAX,
        description="Tier1 survivors handed to Tier2; 0 = auto (max(20 k, 200)).",
    )
    nprobe: int = Field(
        0,
        ge=0,
        le=_USIZE_MAX,
        description="Partitions Tier1 always scans; 0 = auto (max(8, partitions / 10)).",
    )
    expand_probes: int = Field(
        0,
        ge=0,
        le=_USIZE_MAX,
        description="Most extra partitions expansion may open; 0 = auto (2 nprobe).",
    )
    expand_ratio: float = Field(
        0.7,
        ge=0.0,
        le=_F32_MAX,
        allow_inf_nan=False,
        description="Open an extra partition if its squared centroid distance is within "
        "(1 + expand_ratio) of the nearest centroid's.",
    )
    query_bits: int = Field(4, ge=1, le=8, description="Bits per query level in Tier1.")
    tier1: Literal["asymmetric", "hamming"] = Field(
        "asymmetric", description="Tier1 scoring: float query vs codes, or code-vs-code Hamming."
    )
    segments: int = Field(
        1, ge=1, le=_USIZE_MAX, description="Dimension segments that vote; 1 = no voting."
    )
    vote_top: int = Field(
        64, ge=1, le=_USIZE_MAX, description="Each segment votes for its top vote_top rows."
    )
    min_votes: int = Field(2, ge=1, le=_USIZE_MAX, description="Votes a row needs to be rescued.")
    expansion: bool = Field(
        True, description="Centroid expansion: skip survivors whose error bound cannot win."
    )
    epsilon: float = Field(
        3.0,
        ge=0.0,
        le=_F32_MAX,
        allow_inf_nan=False,
        description="Width of the expansion error bound.",
    )

    def native(self) -> Any:
        """The validated Rust-side parameter object, cached per distinct value
        (models are frozen and hashable), so copies and pickles stay plain data."""
        return _native_params(self)


@functools.lru_cache(maxsize=1024)
def _native_params(params: SearchParams) -> Any:
    return _svve_core._Params(**params.model_dump())


class EngineConfig(_Model):
    """Options for opening an index."""

    verify: bool = Field(True, description="Check every section's CRC32 when opening.")
    lock_pages: bool = Field(
        False,
        description="Pin the mapped index in RAM (mlock) so the kernel never evicts its pages "
        "(an evicted page costs a disk read on the query that needs it). Pages stay shared "
        "between processes. Needs RLIMIT_MEMLOCK >= the file size or CAP_IPC_LOCK; "
        "otherwise opening fails with IndexIOError.",
    )
    threads: int = Field(
        0,
        ge=0,
        le=4096,
        description="Size of this process's thread pool (batch search, builds); "
        "0 leaves it as set by set_num_threads / SVVE_NUM_THREADS / the CPU count.",
    )
    params: SearchParams = Field(
        default_factory=SearchParams, description="Default search parameters."
    )


class IndexManifest(_Model):
    """The JSON manifest stored inside every index file."""

    format: Literal["svve-core"]
    format_version: int = Field(ge=1)
    library_version: str
    n: int = Field(ge=1)
    dim: int = Field(ge=1)
    metric: Metric
    code_words: int = Field(ge=1)
    partitions: int = Field(ge=1)
    build: IndexConfig

    @model_validator(mode="after")
    def _words_fit_dim(self) -> IndexManifest:
        if self.code_words != math.ceil(self.dim / 64):
            raise ValueError(f"code_words {self.code_words} does not fit dim {self.dim}")
        if self.partitions > self.n:
            raise ValueError(f"{self.partitions} partitions for {self.n} rows")
        return self


class IndexInfo(_Model):
    """What ``SearchEngine.info()`` and ``build_index`` report."""

    path: str
    n: int
    dim: int
    metric: Metric
    format_version: int
    library_version: str
    bytes_tier1: int = Field(description="Codes, centroid and per-row factors.")
    bytes_tier2: int = Field(description="float32 vectors.")
    bytes_ids: int
    bytes_file: int
    partitions: int
    build: IndexConfig
    isa: str = Field(description="Instruction set the kernels dispatched to.")
