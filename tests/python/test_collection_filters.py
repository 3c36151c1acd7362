"""Attributes and filters on live collections: rows keep their attributes
through the log, checkpoints, merges, retrains, deletes, upserts and
reopening; filtered searches equal numpy over the live matching rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from svve_core import Collection, CollectionConfig, SearchParams
from svve_core.exceptions import InvalidFilterError, InvalidParameterError

DIM, K = 16, 10
EXACT = SearchParams(exact=True)
SMALL = CollectionConfig(fresh_rows=60, merge_factor=2)
LANGS = np.array(["en", "de", "fr"])
TAGS = ["a", "b", "c"]


class Model:
    """The live rows a collection should hold, with their attributes."""

    def __init__(self) -> None:
        self.rows: Dict[int, Dict[str, Any]] = {}

    def put(self, ids: np.ndarray, x: np.ndarray, attrs: Dict[str, Any]) -> None:
        for i, id_ in enumerate(ids.tolist()):
            self.rows[id_] = {
                "id": id_,
                "v": x[i] / np.linalg.norm(x[i]),
                "tenant": int(attrs["tenant"][i]),
                "lang": str(attrs["lang"][i]),
                "price": float(attrs["price"][i]),
                "tags": set(attrs["tags"][i]),
            }

    def delete(self, ids: np.ndarray) -> None:
        for id_ in ids.tolist():
            self.rows.pop(id_, None)

    def truth(self, q: np.ndarray, pred: Any, k: int = K) -> List[int]:
        qn = q / np.linalg.norm(q)
        hits = [(float(r["v"] @ qn), i) for i, r in self.rows.items() if pred(r)]
        hits.sort(key=lambda t: (-t[0], t[1]))
        return [i for _, i in hits[:k]]


FILTERS = [
    ({"tenant": 3}, lambda r: r["tenant"] == 3),
    ({"lang": {"$in": ["en", "fr"]}}, lambda r: r["lang"] in ("en", "fr")),
    ({"price": {"$gte": 0.2, "$lt": 0.4}}, lambda r: 0.2 <= r["price"] < 0.4),
    ({"tags": {"$contains": "b"}}, lambda r: "b" in r["tags"]),
    (
        {"$or": [{"tenant": {"$lt": 2}}, {"$not": {"lang": "en"}}]},
        lambda r: r["tenant"] < 2 or r["lang"] != "en",
    ),
    ({"id": {"$gte": 100, "$lt": 400}}, lambda r: 100 <= r["id"] < 400),
    (
        {"$and": [{"tags": "a"}, {"id": {"$nin": list(range(0, 1000, 2))}}]},
        lambda r: "a" in r["tags"] and (r["id"] % 2 == 1 or r["id"] >= 1000),
    ),
]


def _attrs(rng: np.random.Generator, n: int) -> Dict[str, Any]:
    return {
        "tenant": rng.integers(0, 8, n),
        "lang": LANGS[rng.integers(0, 3, n)],
        "price": rng.random(n),
        "tags": [list(rng.choice(TAGS, rng.integers(0, 3), replace=False)) for _ in range(n)],
    }


def _check(col: Collection, model: Model, rng: np.random.Generator) -> None:
    for _ in range(2):
        q = rng.standard_normal(DIM).astype(np.float32)
        for flt, pred in FILTERS:
            truth = model.truth(q, pred)
            got, _ = col.search(q, K, EXACT, filter=flt)
            assert got.tolist() == truth, flt
            approx, _ = col.search(q, K, filter=flt)
            assert len(approx) == len(truth), flt
            allowed = set(truth) if len(truth) < K else None
            if allowed is not None:
                assert set(approx.tolist()) == allowed, flt


def test_filters_through_every_kind_of_change(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    col = Collection.create(tmp_path / "c", dim=DIM, config=SMALL)
    model = Model()
    next_id = 0
    for step in range(14):
        n = int(rng.integers(20, 90))
        x = rng.standard_normal((n, DIM)).astype(np.float32)
        ids = np.arange(next_id, next_id + n, dtype=np.int64)
        next_id += n
        attrs = _attrs(rng, n)
        col.add(x, ids, attributes=attrs)
        model.put(ids, x, attrs)
        if step % 3 == 1 and model.rows:
            doomed = rng.choice(np.array(list(model.rows)), 15, replace=False)
            assert col.delete(doomed) == 15
            model.delete(doomed)
        if step % 4 == 2:
            again = rng.choice(np.array(list(model.rows)), 10, replace=False)
            x2 = rng.standard_normal((10, DIM)).astype(np.float32)
            a2 = _attrs(rng, 10)
            col.upsert(x2, again, attributes=a2)
            model.put(again, x2, a2)
        _check(col, model, rng)  # the writer sees its own changes
        col.commit()
        if step == 9:
            col.compact()
        _check(col, model, rng)
    info = col.info()
    assert info.attributes == {"tenant": "int", "lang": "str", "price": "float", "tags": "tags"}
    assert len(info.segments) >= 2, "the test should reach merged segments"
    ro = Collection.open(tmp_path / "c", readonly=True)
    _check(ro, model, rng)
    col.close()
    reopened = Collection.open(tmp_path / "c")
    _check(reopened, model, rng)
    assert reopened.info().attributes == info.attributes


def test_attributes_survive_the_log_alone(tmp_path: Path) -> None:
    """Rows committed but not checkpointed are replayed from the log with
    their attributes."""
    rng = np.random.default_rng(1)
    col = Collection.create(tmp_path / "c", dim=DIM, config=CollectionConfig(fresh_rows=10_000))
    x = rng.standard_normal((50, DIM)).astype(np.float32)
    attrs = _attrs(rng, 50)
    col.add(x, attributes=attrs)
    col.commit()
    assert col.info().segments == []
    col.close()
    again = Collection.open(tmp_path / "c", readonly=True)
    model = Model()
    model.put(np.arange(50, dtype=np.int64), x, attrs)
    _check(again, model, rng)


def test_schema_rules(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, DIM)).astype(np.float32)
    col = Collection.create(tmp_path / "c", dim=DIM)
    col.add(x, attributes={"n": [1, 2, 3, 4, 5], "s": ["a"] * 5})
    # Ints join a float column; other types, names and omissions do not.
    with pytest.raises(InvalidParameterError, match="give them for these rows too"):
        col.add(x)
    with pytest.raises(InvalidParameterError, match="every row needs the same attributes"):
        col.add(x, attributes={"n": [1] * 5})
    with pytest.raises(InvalidParameterError, match='attribute "s" is int here but str'):
        col.add(x, attributes={"n": [1] * 5, "s": [1] * 5})
    with pytest.raises(InvalidParameterError, match="has 4 values for 5 vectors"):
        col.add(x, attributes={"n": [1] * 4, "s": ["a"] * 4})
    assert len(col) == 5
    plain = Collection.create(tmp_path / "p", dim=DIM)
    plain.add(x)
    with pytest.raises(InvalidParameterError, match="from the first add"):
        plain.add(x, attributes={"n": [1] * 5})
    floats = Collection.create(tmp_path / "f", dim=DIM)
    floats.add(x, attributes={"p": [0.5] * 5})
    floats.add(x, attributes={"p": [1, 2, 3, 4, 5]})
    assert sorted(floats.search(x[0], 10, filter={"p": {"$gte": 2}})[0].tolist()) == [6, 7, 8, 9]


def test_filter_errors_on_collections(tmp_path: Path) -> None:
    col = Collection.create(tmp_path / "c", dim=DIM)
    q = np.ones(DIM, np.float32)
    # An empty collection without attributes: only "id" exists.
    assert col.search(q, 5, filter={"id": 3})[0].shape == (0,)
    with pytest.raises(InvalidFilterError, match="no attributes"):
        col.search(q, 5, filter={"tenant": 1})
    col.add(np.ones((3, DIM), np.float32), attributes={"tenant": [1, 2, 3]})
    with pytest.raises(InvalidFilterError, match=r'filter\["nope"\]: unknown attribute'):
        col.search(q, 5, filter={"nope": 1})
    with pytest.raises(InvalidFilterError, match="expected a number"):
        col.search_batch(q[None, :], 5, filter={"tenant": "x"})
    with pytest.raises(InvalidFilterError):
        col.search_batch(np.empty((0, DIM), np.float32), 5, filter={"nope": 1})
    ids, _ = col.search_batch(np.empty((0, DIM), np.float32), 5, filter={"tenant": {"$gt": 1}})
    assert ids.shape == (0, 2)
    ids, _ = col.search_batch(np.stack([q, q]), 5, filter={"tenant": {"$gt": 1}})
    assert ids.shape == (2, 2)
    assert sorted(ids[0].tolist()) == [1, 2]
