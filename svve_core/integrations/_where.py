"""Metadata filters of the framework stores, compiled to SQL over the stored
metadata (one JSON object per document in ``docs.metadata``).

Why SQL and not svve's own attribute filters: a collection's attribute
columns are fixed by its first ``add``, while LangChain and LlamaIndex
metadata keys differ from document to document. So the filter is evaluated
exactly over the metadata in SQLite, and the matching svve ids go to the
collection as its id allowlist (``{"id": {"$in": ids}}``), which makes svve
search only those rows: the results are exactly the top ``min(k, matching)``.

The dialect is Mongo/Chroma style, on the top-level metadata keys::

    {"source": "a.txt"}                      # equality ($eq)
    {"page": {"$gte": 2, "$lt": 10}}         # several operators: all must hold
    {"$or": [{"lang": "en"}, {"tags": {"$contains": "faq"}}]}

Semantics (``tests/python/test_integration_langchain.py`` checks them
against a Python evaluation):

- ``$eq v``: the value has v's type class (numbers, strings, booleans, null,
  JSON arrays/objects; ``True`` is not ``1``) and equals v. ``{"k": None}``
  matches null or a missing key.
- ``$ne``, ``$nin``: the negations of ``$eq``, ``$in``, so a missing key matches
  (as in MongoDB and LlamaIndex's reference filters).
- ``$gt $gte $lt $lte v``: v a number (numeric values) or a string (string
  values, code point order); other values never match.
- ``$in [..]``: ``$eq`` one of them.
- ``$contains v``: an array value holds v, or a string value holds the
  substring v (Python's ``in``). ``$all [..]`` / ``$any [..]``: ``$contains``
  all / any of them.
- ``$substring s`` / ``$isubstring s``: a string value holding s
  (case-sensitive / insensitive, Python's ``str.lower``).
- ``$exists bool``; ``$and [..]``, ``$or [..]``, ``$not {..}``; several keys
  in one dict must all hold.
"""

from __future__ import annotations

import json
import math
from typing import Any, List, Mapping, Tuple

from svve_core.exceptions import InvalidFilterError

# The SQL function the docstore registers on its connection: Python's
# str.lower (SQLite's own lower() only folds ASCII).
LOWER_FUNCTION = "svve_lower"

Sql = Tuple[str, List[Any]]

_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_FIELD_OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$all"]
_FIELD_OPS += ["$any", "$substring", "$isubstring", "$exists"]

# One class per kind of JSON value, so equality never crosses kinds.
_CLASS = (
    "CASE {0}.type WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' "
    "WHEN 'array' THEN 'json' WHEN 'object' THEN 'json' ELSE {0}.type END"
)
_TRUE: Sql = ("1", [])
_FALSE: Sql = ("0", [])


def _bad(why: str) -> InvalidFilterError:
    return InvalidFilterError(f"invalid metadata filter: {why}")


def _check_value(v: Any, where: str) -> None:
    """A JSON value the filter can compare (finite numbers, int64 ints)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return
    if isinstance(v, int):
        if not -(2**63) <= v < 2**63:
            raise _bad(f"{where}: {v} does not fit int64")
        return
    if isinstance(v, float):
        if not math.isfinite(v):
            raise _bad(f"{where}: {v} is not finite")
        return
    if isinstance(v, (list, tuple)):
        for x in v:
            _check_value(x, where)
        return
    if isinstance(v, Mapping):
        for x in v.values():
            _check_value(x, where)
        return
    raise _bad(f"{where}: a {type(v).__name__} is not a JSON value")


def _json(v: Any) -> str:
    # The docstore writes metadata with the same separators, so arrays and
    # objects compare as the same JSON text.
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _in(alias: str, values: List[Any]) -> Sql:
    """``alias`` (a json_each row) equals one of ``values`` (none of them None)."""
    if not values:
        return _FALSE
    sql = (
        f"EXISTS (SELECT 1 FROM json_each(?) AS w WHERE ({_CLASS.format('w')}) = "
        f"({_CLASS.format(alias)}) AND w.value IS {alias}.value)"
    )
    return sql, [_json(values)]


def _key(key: str, cond: Sql, negate: bool = False) -> Sql:
    """The document has ``key`` with a value that satisfies ``cond`` (on ``j``)."""
    sql, params = cond
    exists = f"EXISTS (SELECT 1 FROM json_each(d.metadata) AS j WHERE j.key = ? AND ({sql}))"
    return (f"NOT {exists}" if negate else exists), [key, *params]


def _contains(key: str, v: Any) -> Sql:
    _check_value(v, f"{key}.$contains")
    if v is None:
        element: Sql = ("e.type = 'null'", [])
    else:
        element = _in("e", [v])
    in_array = f"EXISTS (SELECT 1 FROM json_each(j.value) AS e WHERE {element[0]})"
    parts = [(f"j.type = 'array' AND {in_array}", element[1])]
    if isinstance(v, str):
        parts.append(("j.type = 'text' AND instr(j.value, ?) > 0", [v]))
    return _key(key, _any_of(parts))


def _any_of(parts: List[Sql]) -> Sql:
    if not parts:
        return _FALSE
    return " OR ".join(f"({s})" for s, _ in parts), [p for _, ps in parts for p in ps]


def _all_of(parts: List[Sql]) -> Sql:
    if not parts:
        return _TRUE
    return " AND ".join(f"({s})" for s, _ in parts), [p for _, ps in parts for p in ps]


def _not(part: Sql) -> Sql:
    return f"NOT ({part[0]})", part[1]


def _list(v: Any, where: str) -> List[Any]:
    if not isinstance(v, (list, tuple, set, frozenset)):
        raise _bad(f"{where} takes a list, got {type(v).__name__}")
    values = list(v)
    _check_value(values, where)
    return values


def _eq(key: str, v: Any) -> Sql:
    _check_value(v, key)
    if v is None:  # null or missing
        return _key(key, ("j.type != 'null'", []), negate=True)
    return _key(key, _in("j", [v]))


def _op(key: str, op: str, v: Any) -> Sql:
    where = f"{key}.{op}"
    if op == "$eq":
        return _eq(key, v)
    if op == "$ne":
        return _not(_eq(key, v))
    if op in _COMPARE:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise _bad(f"{where} takes a number or a string, got {v!r}")
        _check_value(v, where)
        kinds = "'text'" if isinstance(v, str) else "'integer', 'real'"
        return _key(key, (f"j.type IN ({kinds}) AND j.value {_COMPARE[op]} ?", [v]))
    if op in ("$in", "$nin"):
        values = _list(v, where)
        found = [_key(key, _in("j", [x for x in values if x is not None]))]
        if None in values:
            found.append(_eq(key, None))
        matched = _any_of(found)
        return matched if op == "$in" else _not(matched)
    if op == "$contains":
        return _contains(key, v)
    if op in ("$all", "$any"):
        parts = [_contains(key, x) for x in _list(v, where)]
        if op == "$any":
            return _any_of(parts)
        # all([]) over a present value: LlamaIndex's reference filters agree
        return _all_of([_key(key, ("j.type != 'null'", [])), *parts])
    if op in ("$substring", "$isubstring"):
        if not isinstance(v, str):
            raise _bad(f"{where} takes a string, got {v!r}")
        if op == "$substring":
            return _key(key, ("j.type = 'text' AND instr(j.value, ?) > 0", [v]))
        cond = f"j.type = 'text' AND instr({LOWER_FUNCTION}(j.value), ?) > 0"
        return _key(key, (cond, [v.lower()]))
    if op == "$exists":
        if not isinstance(v, bool):
            raise _bad(f"{where} takes true or false, got {v!r}")
        return _key(key, _TRUE, negate=not v)
    raise _bad(f"unknown operator {op!r} on {key!r} (known: {', '.join(_FIELD_OPS)})")


def _field(key: str, cond: Any) -> Sql:
    if isinstance(cond, Mapping) and any(str(k).startswith("$") for k in cond):
        if not all(str(k).startswith("$") for k in cond):
            raise _bad(f"{key!r} mixes operators and plain keys: {sorted(cond)}")
        return _all_of([_op(key, op, v) for op, v in cond.items()])
    return _eq(key, cond)


def _clauses(where: Any, path: str) -> List[Any]:
    if not isinstance(where, (list, tuple)):
        raise _bad(f"{path} takes a list of filters, got {type(where).__name__}")
    return [compile_node(c, f"{path}[{i}]") for i, c in enumerate(where)]


def compile_node(where: Any, path: str = "filter") -> Sql:
    """``where`` as an SQL condition on a row ``d`` of the docs table."""
    if not isinstance(where, Mapping):
        raise _bad(f"{path} must be a dict, got {type(where).__name__}")
    parts: List[Sql] = []
    for key, cond in where.items():
        if not isinstance(key, str):
            raise _bad(f"{path}: keys must be strings, got {key!r}")
        if key == "$and":
            parts.append(_all_of(_clauses(cond, f"{path}.$and")))
        elif key == "$or":
            parts.append(_any_of(_clauses(cond, f"{path}.$or")))
        elif key == "$not":
            parts.append(_not(compile_node(cond, f"{path}.$not")))
        elif key.startswith("$"):
            raise _bad(f"{path}: unknown operator {key!r} (logical ones: $and, $or, $not)")
        else:
            parts.append(_field(key, cond))
    return _all_of(parts)


def compile_filter(where: Mapping[str, Any]) -> Sql:
    """The SQL condition (on ``d.metadata``) and parameters of a metadata filter;
    ``InvalidFilterError`` naming the wrong part."""
    return compile_node(where)
