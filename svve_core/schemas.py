"""Pydantic models for configuration, search parameters, manifests and info.

Models are validated once, when built; the search path only reuses the
native parameter object each ``SearchParams`` caches.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from svve_core import _svve_core
from svve_core.exceptions import InvalidParameterError

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pydantic depends on typing_extensions
    from typing_extensions import Self

Metric = Literal["cosine", "ip", "l2"]
AttributeType = Literal["int", "float", "bool", "str", "tags"]


class _Model(BaseModel):
    """Frozen, strict-about-extras base. Every way of making a model with bad
    values (the constructor, ``model_validate``, ``model_validate_json``,
    ``model_validate_strings``, ``model_copy(update=...)``) and every
    assignment raises ``InvalidParameterError`` with a one-line message, never
    pydantic's multi-line ``ValidationError``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        with _typed_errors(type(self).__name__):
            super().__init__(**data)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        with _typed_errors(cls.__name__):
            return super().model_validate(obj, *args, **kwargs)

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        with _typed_errors(cls.__name__):
            return super().model_validate_json(json_data, *args, **kwargs)

    @classmethod
    def model_validate_strings(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        with _typed_errors(cls.__name__):
            return super().model_validate_strings(obj, *args, **kwargs)

    def model_copy(self, *, update: Optional[Mapping[str, Any]] = None, deep: bool = False) -> Self:
        """A copy; with ``update``, validated like a new model (pydantic's own
        ``model_copy`` skips validation, so ``candidates=-5`` would only fail
        at search time)."""
        if not update:
            return super().model_copy(deep=deep)
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**fields, **update})

    def __setattr__(self, name: str, value: Any) -> None:
        with _typed_errors(type(self).__name__):
            super().__setattr__(name, value)


@contextlib.contextmanager
def _typed_errors(model: str) -> Iterator[None]:
    """Turns pydantic's ``ValidationError`` into the library's one-line type."""
    try:
        yield
    except ValidationError as e:
        raise InvalidParameterError(one_line(model, e)) from e


# pydantic error types -> the rule, worded once for every model.
_RULES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "literal_error": "must be one of {expected}",
    "extra_forbidden": "is not a field",
    "missing": "is required",
    "finite_number": "must be finite",
    "frozen_instance": "cannot be changed (models are frozen: use model_copy(update={{...}}))",
}


def one_line(model: str, e: ValidationError) -> str:
    """``e`` as one line naming each field and its rule:
    ``SearchParams.candidates must be >= 0, got -5``."""
    parts = []
    for err in e.errors(include_url=False):
        field = ".".join(str(x) for x in err.get("loc", ()))
        where = f"{model}.{field}" if field else model
        kind = err.get("type", "")
        if kind == "value_error":  # a validator's own message (a nested model's, say)
            inner = err.get("ctx", {}).get("error", err.get("msg"))
            # The model's own one-line error, re-raised through pydantic
            # (model_validate_strings goes through __init__): already named.
            own = isinstance(inner, InvalidParameterError) and not field
            parts.append(str(inner) if own else f"{where}: {inner}")
            continue
        rule = _RULES.get(kind)
        text = rule.format(**err.get("ctx", {})) if rule else str(err.get("msg", "is invalid"))
        got = "" if kind in ("missing", "extra_forbidden") else f", got {err.get('input')!r}"
        parts.append(f"{where} {text}{got}")
    return "; ".join(parts).replace("\n", " ") or f"{model}: invalid"


class IndexConfig(_Model):
    """Build-time options (stored in the index manifest)."""

    center: bool = Field(
        default=True,
        description="Code each vector relative to its partition centroid (else to zero).",
    )
    partitions: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="k-means partitions for Tier1 routing; 0 = auto (1 below 4000 rows, "
        "else round(2 sqrt(n))).",
    )
    seed: int = Field(default=0, ge=0, le=2**64 - 1, description="Seed of the k-means sampling.")
    calibrate: bool = Field(
        default=True,
        description="Measure at build which search settings reach each recall target "
        "(SearchParams.target_recall); without it, searches use fixed rules.",
    )
    spill: bool = Field(
        default=True,
        description="Store each row's 1-bit code a second time in the partition SOAR picks "
        "(orthogonal to its own), so a query finds it through either; Tier1 bytes double "
        "(about 4% of the file at 384 dims).",
    )


def _knob(name: str) -> Any:
    """The pydantic field of search knob ``name``: default, bounds and description
    as the Rust core defines them (``src/core/params.rs``, the one source)."""
    spec = _KNOBS[name]
    bounds: Dict[str, Any] = {}
    if spec["type"] != "bool":
        bounds = {"ge": spec["min"], "le": spec["max"]}
    if spec["type"] == "float":
        bounds["allow_inf_nan"] = False
    return Field(default=spec["default"], description=spec["doc"], **bounds)


_KNOBS: Dict[str, Dict[str, Any]] = {s["name"]: s for s in _svve_core.search_param_spec()}


class SearchParams(_Model):
    """Knobs of each pipeline stage. See docs/arch/blueprint.md for the maths.

    Names, types, bounds, defaults and descriptions come from the Rust core;
    this class only declares them for type checkers (a test checks the two
    agree)."""

    target_recall: float = _knob("target_recall")
    exact: bool = _knob("exact")
    candidates: int = _knob("candidates")
    nprobe: int = _knob("nprobe")
    expand_probes: int = _knob("expand_probes")
    expand_ratio: float = _knob("expand_ratio")
    query_bits: int = _knob("query_bits")
    expansion: bool = _knob("expansion")
    epsilon: float = _knob("epsilon")

    def native(self) -> Any:
        """The validated Rust-side parameter object, cached per distinct value
        (models are frozen), so copies and pickles stay plain data."""
        # Keyed on the field values, not the model: hashing and comparing a
        # pydantic model (as functools.lru_cache did) took about 3.5 us, a
        # quarter of a small search's whole Python call. Each position holds
        # one field of one coerced type, so equal keys mean equal knobs.
        key = tuple(self.__dict__.values())
        native = _NATIVE.get(key)
        if native is None:
            if len(_NATIVE) >= _NATIVE_CACHE:
                _NATIVE.clear()
            native = _NATIVE[key] = _svve_core._Params(**self.model_dump())
        return native


# SearchParams.native's cache: field values -> _svve_core._Params.
_NATIVE: Dict[tuple, Any] = {}
_NATIVE_CACHE = 1024


class EngineConfig(_Model):
    """Options for opening an index."""

    verify: bool = Field(default=True, description="Check every section's CRC32 when opening.")
    lock_pages: bool = Field(
        default=False,
        description="Pin the mapped index in RAM (mlock) so the kernel never evicts its pages "
        "(an evicted page costs a disk read on the query that needs it). Pages stay shared "
        "between processes. Needs RLIMIT_MEMLOCK >= the file size or CAP_IPC_LOCK; "
        "otherwise opening fails with IndexIOError.",
    )
    threads: int = Field(
        default=0,
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
    # May exceed n: a live collection's segments share a larger one's partitions.
    partitions: int = Field(ge=1, le=2**32 - 1)
    build: IndexConfig

    @model_validator(mode="after")
    def _words_fit_dim(self) -> IndexManifest:
        if self.code_words != math.ceil(self.dim / 64):
            raise ValueError(f"code_words {self.code_words} does not fit dim {self.dim}")
        return self


class CalibrationPoint(_Model):
    """The settings that reached one recall target at calibration."""

    target: float = Field(description="Mean recall@k target.")
    exact: bool = Field(description="No approximate setting reached it: answered exactly.")
    nprobe: int
    expand_ratio: float
    expand_probes: int
    candidates: int = Field(description="Tier1 survivors at the calibration's k.")
    recall: float = Field(description="Mean recall@k on the calibration queries.")
    recall_p10: float = Field(description="10th percentile of per-query recall.")
    cost_us: float = Field(description="Modelled microseconds per query.")
    error_scale: float = Field(
        1.0, description="Factor on the Tier2 error bound that still reached the target (1: full)."
    )


class Calibration(_Model):
    """How an index was calibrated (``info().calibration``)."""

    k: int
    queries: int = Field(description="Calibration queries (rows of the index, leave-one-out).")
    source: str
    settings_tried: int
    seconds: float = Field(description="Time the calibration took.")
    points: List[CalibrationPoint]
    unspilled: List[CalibrationPoint] = Field(
        default_factory=list,
        description="With spilled entries (IndexConfig.spill): the points measured without "
        "scanning them, used by queries that do not (under a sparse filter).",
    )


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
    spilled: int = Field(
        default=0,
        description="Rows with a second Tier1 entry in another partition (IndexConfig.spill).",
    )
    partitions: int
    build: IndexConfig
    isa: str = Field(description="Instruction set the kernels dispatched to.")
    calibration: Optional[Calibration] = Field(
        default=None, description="Recall calibration; None for files without one."
    )
    attributes: Dict[str, AttributeType] = Field(
        default_factory=dict,
        description="Attribute columns searches can filter on, name -> type.",
    )
    warnings: List[str] = Field(default_factory=list)


class CollectionConfig(_Model):
    """Options of a live collection, fixed at ``Collection.create``."""

    segment: IndexConfig = Field(
        default_factory=IndexConfig, description="Build options of every segment."
    )
    fresh_rows: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Rows added since the last segment (searched exactly) that make a "
        "commit write them into a new segment; 0 = automatic (2^18 / dim, at least 256).",
    )
    merge_factor: int = Field(
        default=0,
        ge=0,
        le=2**16,
        description="Segments of one size tier merged into one; 0 = automatic (2). Must not be 1.",
    )

    @model_validator(mode="after")
    def _factor(self) -> CollectionConfig:
        if self.merge_factor == 1:
            raise ValueError("merge_factor must be 0 (automatic) or at least 2")
        return self


class SegmentInfo(_Model):
    """One segment of a live collection."""

    rows: int = Field(description="Rows in the segment file.")
    deleted: int = Field(description="Of those, rows deleted.")


class CollectionInfo(_Model):
    """What a live collection holds, as this handle sees it."""

    path: str
    dim: int
    metric: Metric
    n: int = Field(description="Live rows this handle searches.")
    generation: int = Field(
        description="The last committed generation (for a reader: the one it refreshed to)."
    )
    readonly: bool
    segments: List[SegmentInfo] = Field(description="Segments, oldest first.")
    fresh: int = Field(description="Rows not yet in a segment (searched exactly).")
    uncommitted: bool = Field(description="The writer holds changes not yet committed.")
    config: CollectionConfig
    calibration: Optional[Calibration] = Field(
        default=None,
        description="The recall calibration measured on all the segments as one stack (as "
        "the collection grows); None: the base segment's own serves.",
    )
    attributes: Dict[str, AttributeType] = Field(
        default_factory=dict,
        description="Attribute columns searches can filter on, name -> type (empty: none yet).",
    )
    warnings: List[str] = Field(default_factory=list)
