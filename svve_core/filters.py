"""Attributes and filters on the Python side: what crosses into Rust.

``encode_attributes`` turns the user's columns (numpy arrays or lists, one
value per vector) into the typed arrays the native build takes (strings
dictionary-encoded with numpy). ``filter_text`` turns a Mongo-style filter
dict into JSON text; Rust parses it, checks it against the index's
attributes and raises ``InvalidFilterError`` naming the wrong part
(``src/core/filter.rs``).
"""

from __future__ import annotations

import json
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from svve_core.exceptions import InvalidFilterError, InvalidParameterError

# (name, type, values, dictionary, offsets): see src/api/build.rs.
Column = Tuple[str, str, np.ndarray, Optional[List[str]], Optional[np.ndarray]]

ATTRIBUTE_TYPES = ("int", "float", "bool", "str", "tags")


def _bad(name: str, why: str) -> InvalidParameterError:
    return InvalidParameterError(f"attribute {name!r}: {why}")


def _is_list(x: Any) -> bool:
    return isinstance(x, (list, tuple, np.ndarray))


def _type_of(name: str, values: Any) -> str:
    """The column type of ``values`` (numpy dtype, else the Python values)."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        kind = values.dtype.kind
        if kind == "b":
            return "bool"
        if kind in "iu":
            return "int"
        if kind == "f":
            return "float"
        if kind in "US":
            return "str"
        raise _bad(name, f"dtype {values.dtype} is not int, float, bool or str")
    items = list(values)
    if not items:
        return "int"
    kinds = set()
    for i, v in enumerate(items):
        if v is None:
            raise _bad(name, f"row {i} is None: every row needs a value")
        if isinstance(v, (bool, np.bool_)):
            kinds.add("bool")
        elif isinstance(v, (int, np.integer)):
            kinds.add("int")
        elif isinstance(v, (float, np.floating)):
            kinds.add("float")
        elif isinstance(v, str):
            kinds.add("str")
        elif _is_list(v):
            kinds.add("tags")
        else:
            raise _bad(name, f"row {i} is a {type(v).__name__}, not int, float, bool, str or list")
    if kinds == {"int", "float"}:
        return "float"
    if len(kinds) > 1:
        raise _bad(name, f"rows mix types ({', '.join(sorted(kinds))})")
    return kinds.pop()


def _dictionary(name: str, strings: Sequence[Any]) -> Tuple[List[str], np.ndarray]:
    for i, s in enumerate(strings):
        if not isinstance(s, (str, np.str_)):
            raise _bad(name, f"value {i} is a {type(s).__name__}, not a string")
    arr = np.asarray(list(strings), dtype=str) if len(strings) else np.empty(0, dtype=str)
    dictionary, codes = np.unique(arr, return_inverse=True)
    return [str(s) for s in dictionary], codes.astype(np.uint32).reshape(-1)


def encode_attributes(attributes: Optional[Mapping[str, Any]], n: int) -> Optional[List[Column]]:
    """The columns of ``attributes`` (name -> one value per row) for the native build."""
    if attributes is None:
        return None
    if not isinstance(attributes, Mapping):
        raise InvalidParameterError(
            f"attributes must be a dict of name -> values, got {type(attributes).__name__}"
        )
    out: List[Column] = []
    for name, values in attributes.items():
        if not isinstance(name, str):
            raise InvalidParameterError(f"attribute names must be strings, got {name!r}")
        if not _is_list(values) and hasattr(values, "__array__"):
            values = np.asarray(values)  # a pandas Series, an Arrow array...
        if not _is_list(values):
            raise _bad(
                name, f"needs one value per vector (a list or array), got {type(values).__name__}"
            )
        if len(values) != n:
            raise _bad(name, f"has {len(values)} values for {n} vectors")
        if isinstance(values, np.ndarray) and values.ndim != 1 and values.dtype != object:
            raise _bad(name, f"must be one-dimensional, got shape {values.shape}")
        kind = _type_of(name, values)
        if kind == "int":
            arr = np.asarray(values)
            if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
                raise _bad(name, "a value does not fit int64")
            try:
                ints = np.ascontiguousarray(np.asarray(values, dtype=np.int64))
            except OverflowError as e:
                raise _bad(name, "a value does not fit int64") from e
            out.append((name, "int", ints, None, None))
        elif kind == "float":
            floats = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
            bad = np.flatnonzero(~np.isfinite(floats))
            if bad.size:
                raise _bad(name, f"row {int(bad[0])} is not finite")
            out.append((name, "float", floats, None, None))
        elif kind == "bool":
            flags = np.ascontiguousarray(np.asarray(values, dtype=bool).astype(np.uint8))
            out.append((name, "bool", flags, None, None))
        elif kind == "str":
            dictionary, codes = _dictionary(name, list(values))
            out.append((name, "str", codes, dictionary, None))
        else:
            lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=n)
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            flat = [t for v in values for t in v]
            dictionary, codes = _dictionary(name, flat)
            out.append((name, "tags", codes, dictionary, offsets))
    return out


def _json_value(x: Any) -> Any:
    """numpy arrays and scalars as JSON values (the id allowlist is often an array)."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (set, frozenset, tuple)):
        return list(x)
    raise TypeError(f"a {type(x).__name__} is not a filter value")


def filter_text(filter: Optional[Mapping[str, Any]]) -> Optional[str]:
    """``filter`` as JSON text for the native search (``None``: no filter)."""
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InvalidFilterError(
            f"invalid filter: filter must be a dict of conditions, got {type(filter).__name__}"
        )
    try:
        return json.dumps(filter, default=_json_value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidFilterError(f"invalid filter: {e}") from e
