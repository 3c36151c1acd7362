"""The LangChain store: LangChain's standard vector-store suite (sync and
async), then filters (exact set semantics against a Python evaluation),
persistence, deletion, crash recovery and the rest of the store's own
behaviour."""

from __future__ import annotations

import gc
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

import svve_core
from svve_core.collection import Collection
from svve_core.exceptions import (
    CollectionClosedError,
    CollectionLockedError,
    DimensionMismatchError,
    InvalidFilterError,
    InvalidParameterError,
)
from svve_core.integrations.langchain import SvveVectorStore

DIM = 16


class TestStandardSuite(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> Iterator[SvveVectorStore]:
        store = SvveVectorStore(self.get_embeddings())
        try:
            yield store
        finally:
            store.close()


@pytest.fixture
def embedding() -> Embeddings:
    return DeterministicFakeEmbedding(size=DIM)


@pytest.fixture
def store(embedding: Embeddings) -> Iterator[SvveVectorStore]:
    with SvveVectorStore(embedding) as s:
        yield s


# -- filters: the SQL compilation against a Python evaluation ---------------

_MISSING = object()


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "str" if isinstance(v, str) else "json"


def _same(a: Any, b: Any) -> bool:
    return _kind(a) == _kind(b) and a == b


def _contains(x: Any, v: Any) -> bool:
    if isinstance(x, list):
        return any(_same(e, v) for e in x)
    return isinstance(x, str) and isinstance(v, str) and v in x


def _op(x: Any, op: str, v: Any) -> bool:
    """The documented semantics (svve_core/integrations/_where.py), in Python."""
    if op == "$eq":
        return x is _MISSING or x is None if v is None else x is not _MISSING and _same(x, v)
    if op == "$ne":
        return not _op(x, "$eq", v)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if x is _MISSING or _kind(x) != _kind(v):
            return False
        return {"$gt": x > v, "$gte": x >= v, "$lt": x < v, "$lte": x <= v}[op]
    if op == "$in":
        return any(_op(x, "$eq", y) for y in v)
    if op == "$nin":
        return not _op(x, "$in", v)
    if op == "$contains":
        return _contains(x, v)
    if op == "$all":
        return x is not _MISSING and x is not None and all(_contains(x, y) for y in v)
    if op == "$any":
        return any(_contains(x, y) for y in v)
    if op == "$substring":
        return isinstance(x, str) and v in x
    if op == "$isubstring":
        return isinstance(x, str) and v.lower() in x.lower()
    if op == "$exists":
        return (x is not _MISSING) == v
    raise AssertionError(op)


def _matches(where: Mapping[str, Any], md: Mapping[str, Any]) -> bool:
    for key, cond in where.items():
        if key == "$and":
            ok = all(_matches(c, md) for c in cond)
        elif key == "$or":
            ok = any(_matches(c, md) for c in cond)
        elif key == "$not":
            ok = not _matches(cond, md)
        elif isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            ok = all(_op(md.get(key, _MISSING), op, v) for op, v in cond.items())
        else:
            ok = _op(md.get(key, _MISSING), "$eq", cond)
        if not ok:
            return False
    return True


def _metadata(rng: random.Random, i: int) -> Dict[str, Any]:
    md: Dict[str, Any] = {"i": i}
    pools: Dict[str, List[Any]] = {
        "page": [0, 1, 2, 3, 2.5, 7, "3", True],
        "source": ["a.txt", "b.txt", "c.md", "", "A.TXT"],
        "flag": [True, False, None, 1, 0],
        "tags": [[], ["x"], ["x", "y"], ["y", 3], [None], "x y"],
        "name": ["Émile", "ÉMILE", "emil", "Zoë", "zoë!"],
        "nested": [{"a": 1}, [1, 2], {"a": 2}],
    }
    for key, pool in pools.items():
        if rng.random() < 0.8:  # keys vary from document to document
            md[key] = rng.choice(pool)
    return md


FILTERS: List[Dict[str, Any]] = [
    {"source": "a.txt"},
    {"source": {"$eq": "a.txt"}, "page": 2},
    {"page": {"$gte": 2}},
    {"page": {"$gt": 1, "$lt": 7}},
    {"page": {"$lte": "3"}},
    {"page": 3.0},
    {"page": {"$ne": 2}},
    {"flag": True},
    {"flag": 1},
    {"flag": None},
    {"flag": {"$ne": None}},
    {"flag": {"$in": [False, None]}},
    {"source": {"$in": ["a.txt", "c.md"]}},
    {"source": {"$nin": ["a.txt", "c.md"]}},
    {"source": {"$in": []}},
    {"tags": {"$contains": "x"}},
    {"tags": {"$contains": 3}},
    {"tags": {"$contains": None}},
    {"tags": {"$all": ["x", "y"]}},
    {"tags": {"$all": []}},
    {"tags": {"$any": ["y", "z"]}},
    {"tags": []},
    {"tags": ["x", "y"]},
    {"nested": {"a": 1}},
    {"name": {"$substring": "mil"}},
    {"name": {"$isubstring": "émile"}},
    {"name": {"$isubstring": "ZOË"}},
    {"source": {"$exists": False}},
    {"nested": {"$exists": True}},
    {"$or": [{"source": "b.txt"}, {"page": {"$lt": 1}}]},
    {"$and": [{"source": {"$ne": "b.txt"}}, {"$not": {"flag": True}}]},
    {"$not": {"$or": [{"tags": {"$contains": "x"}}, {"name": "Zoë"}]}},
    {"$and": []},
    {"$or": []},
]


@pytest.fixture(scope="module")
def corpus() -> Iterator[tuple]:
    rng = random.Random(7)
    metadatas = [_metadata(rng, i) for i in range(300)]
    store = SvveVectorStore(DeterministicFakeEmbedding(size=DIM))
    ids = store.add_texts([f"text {i}" for i in range(300)], metadatas)
    yield store, dict(zip(ids, metadatas))
    store.close()


@pytest.mark.parametrize("where", FILTERS, ids=[str(f) for f in FILTERS])
def test_filter_matches_python_evaluation(corpus: tuple, where: Dict[str, Any]) -> None:
    store, metadatas = corpus
    expected = {key for key, md in metadatas.items() if _matches(where, md)}
    found = store.similarity_search("query", k=len(metadatas), filter=where)
    assert {d.id for d in found} == expected
    assert len(found) == len(expected)
    # k below the matching count: exactly k of them
    if len(expected) > 3:
        assert len(store.similarity_search("query", k=3, filter=where)) == 3


def test_filter_results_are_the_exact_top_k(embedding: Embeddings) -> None:
    store = SvveVectorStore(embedding, search_params=svve_core.SearchParams(exact=True))
    texts = [f"doc {i}" for i in range(200)]
    store.add_texts(texts, [{"even": i % 2 == 0} for i in range(200)])
    vectors = np.asarray(embedding.embed_documents(texts), dtype=np.float32)
    q = np.asarray(embedding.embed_query("q"), dtype=np.float32)
    cos = vectors @ q / np.linalg.norm(vectors, axis=1) / np.linalg.norm(q)
    even = [i for i in np.argsort(-cos) if i % 2 == 0][:10]
    found = store.similarity_search_with_score("q", k=10, filter={"even": True})
    assert [d.page_content for d, _ in found] == [texts[i] for i in even]
    assert [s for _, s in found] == pytest.approx([cos[i] for i in even], abs=1e-5)
    store.close()


def test_callable_filter(store: SvveVectorStore) -> None:
    store.add_texts(["a", "b", "c"], [{"n": 1}, {"n": 2}, {"n": 3}], ids=["1", "2", "3"])
    found = store.similarity_search("a", k=10, filter=lambda d: d.metadata["n"] >= 2)
    assert sorted(d.id for d in found) == ["2", "3"]
    assert store.similarity_search("a", k=10, filter=lambda d: False) == []


@pytest.mark.parametrize(
    "where",
    [
        {"page": {"$regex": "x"}},
        {"$xor": []},
        {"page": {"$gt": [1]}},
        {"page": {"$in": 3}},
        {"page": {"$gt": 1, "plain": 2}},
        {"page": float("nan")},
        {"page": 2**70},
        {"$and": {"page": 1}},
        {"page": {"$exists": 1}},
    ],
)
def test_bad_filters_are_rejected(store: SvveVectorStore, where: Dict[str, Any]) -> None:
    store.add_texts(["a"])
    with pytest.raises(InvalidFilterError, match="invalid metadata filter"):
        store.similarity_search("a", filter=where)


def test_filter_on_an_empty_store(store: SvveVectorStore) -> None:
    assert store.similarity_search("a", k=3, filter={"x": 1}) == []


# -- the store ----------------------------------------------------------------


def test_k_larger_than_the_store(store: SvveVectorStore) -> None:
    store.add_texts([f"t{i}" for i in range(5)])
    assert len(store.similarity_search("t1", k=100)) == 5
    assert len(store.similarity_search("t1", k=100, filter={"x": {"$exists": False}})) == 5


def test_scores_and_relevance(store: SvveVectorStore) -> None:
    store.add_texts(["alpha", "beta", "gamma"], ids=["a", "b", "c"])
    (best, score), *rest = store.similarity_search_with_score("alpha", k=3)
    assert best.id == "a"
    assert score == pytest.approx(1.0, abs=1e-5)
    assert all(s <= score for _, s in rest)
    rel = store.similarity_search_with_relevance_scores("alpha", k=3)
    assert rel[0][0].id == "a"
    assert all(0.0 <= r <= 1.0 for _, r in rel)
    assert rel[0][1] == pytest.approx(1.0, abs=1e-5)
    by_vector = store.similarity_search_by_vector(store.embeddings.embed_query("beta"), k=1)
    assert by_vector[0].id == "b"


def test_retriever(store: SvveVectorStore) -> None:
    store.add_texts(["apple pie", "banana bread", "cherry tart"], [{"fruit": f} for f in "abc"])
    retriever = store.as_retriever(search_kwargs={"k": 2, "filter": {"fruit": {"$ne": "a"}}})
    docs = retriever.invoke("apple pie")
    assert len(docs) == 2
    assert {d.metadata["fruit"] for d in docs} == {"b", "c"}
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 3})
    assert len(mmr.invoke("apple pie")) == 2
    exact = store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.99}
    )
    assert [d.page_content for d in exact.invoke("apple pie")] == ["apple pie"]


async def test_async_paths(store: SvveVectorStore) -> None:
    ids = await store.aadd_texts(["one", "two"], [{"n": 1}, {"n": 2}])
    found = await store.asimilarity_search("one", k=5, filter={"n": 2})
    assert [d.id for d in found] == [ids[1]]
    assert (await store.as_retriever().ainvoke("two"))[0].id == ids[1]
    await store.adelete([ids[0]])
    kept = Document(id=ids[1], page_content="two", metadata={"n": 2})
    assert await store.aget_by_ids(ids) == [kept]


def test_concurrent_adds_and_searches(store: SvveVectorStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store.add_texts(["seed"], [{"w": -1}])

    def work(w: int) -> int:
        store.add_texts([f"w{w} t{i}" for i in range(5)], [{"w": w}] * 5)
        return len(store.similarity_search("t1", k=3, filter={"w": w}))

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(work, range(8))) == [3] * 8
    assert store.count() == len(store.collection) == 41


def test_max_marginal_relevance(store: SvveVectorStore) -> None:
    store.add_texts(["same", "same", "other"], ids=["1", "2", "3"])
    docs = store.max_marginal_relevance_search("same", k=2, fetch_k=3, lambda_mult=0.1)
    assert docs[0].page_content == "same"
    assert {d.id for d in docs} == {"3", docs[0].id}  # diversity: not both copies


def test_deletion(store: SvveVectorStore) -> None:
    store.add_texts(["a", "b", "c"], ids=["1", "2", "3"])
    assert store.delete(["2", "missing"])
    assert sorted(d.id for d in store.similarity_search("b", k=10)) == ["1", "3"]
    assert store.get_by_ids(["2"]) == []
    assert store.count() == len(store.collection) == 2
    store.delete()  # everything, and the dimension with it
    assert store.count() == 0
    assert store.similarity_search("a") == []
    store._embedding = DeterministicFakeEmbedding(size=DIM + 3)
    store.add_texts(["wider"])
    assert store.collection.dim == DIM + 3


def test_get_by_ids_order_and_duplicates(store: SvveVectorStore) -> None:
    store.add_texts(["a", "b", "c"], ids=["1", "2", "3"])
    assert [d.id for d in store.get_by_ids(["3", "x", "1", "3"])] == ["3", "1"]
    # a key given twice in one call: the last one wins
    store.add_texts(["first", "second"], ids=["9", "9"])
    assert [d.page_content for d in store.get_by_ids(["9"])] == ["second"]


def test_from_texts_and_metadata_round_trip(embedding: Embeddings) -> None:
    md = {"s": "é", "n": 1, "f": 0.5, "b": False, "z": None, "l": [1, "x"], "d": {"k": [True]}}
    store = SvveVectorStore.from_texts(["hello"], embedding, [md], ids=["h"])
    assert store.get_by_ids(["h"]) == [Document(id="h", page_content="hello", metadata=md)]
    store.close()


def test_bad_input_writes_nothing(store: SvveVectorStore) -> None:
    store.add_texts(["ok"], ids=["ok"])
    with pytest.raises(InvalidParameterError, match="JSON-serialisable"):
        store.add_texts(["bad"], [{"x": float("nan")}])
    with pytest.raises(InvalidParameterError, match="JSON-serialisable"):
        store.add_texts(["bad"], [{"x": object()}])
    with pytest.raises(DimensionMismatchError):
        store._store.put(["k"], ["t"], [{}], np.ones((1, DIM + 1), np.float32))
    with pytest.raises(ValueError, match="metadatas"):
        store.add_texts(["a", "b"], [{}])
    assert store.count() == len(store.collection) == 1


def test_persistence(tmp_path: Path, embedding: Embeddings) -> None:
    path = tmp_path / "store"
    store = SvveVectorStore(embedding, path=path)
    store.add_texts(["kept", "gone"], [{"k": 1}, {"k": 2}], ids=["a", "b"])
    store.delete(["b"])
    with pytest.raises(CollectionLockedError):
        SvveVectorStore(embedding, path=path)  # one store object per directory
    store.close()
    with pytest.raises(CollectionClosedError):
        store.similarity_search("kept")
    again = SvveVectorStore(embedding, path=str(path))
    assert again.get_by_ids(["a", "b"]) == [
        Document(id="a", page_content="kept", metadata={"k": 1})
    ]
    assert [d.id for d in again.similarity_search("kept", k=5, filter={"k": 1})] == ["a"]
    again.add_texts(["more"], ids=["c"])
    again.close()
    assert path.is_dir()
    with SvveVectorStore(embedding, path=path) as third:
        assert third.count() == 2
    with pytest.raises(InvalidParameterError, match="metric"):
        SvveVectorStore(embedding, path=path, metric="l2")


def test_temporary_store_is_deleted(embedding: Embeddings) -> None:
    store = SvveVectorStore(embedding)
    store.add_texts(["x"])
    path = store.path
    assert os.path.isdir(path)
    store.close()
    assert not os.path.exists(path)
    store = SvveVectorStore(embedding)
    store.add_texts(["x"])
    path = store.path
    del store
    gc.collect()
    assert not os.path.exists(path)


def test_recovery_after_a_failed_collection_write(
    tmp_path: Path, embedding: Embeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documents reach SQLite (with a journal entry) before the collection; a
    write that dies between the two is completed when the store reopens."""
    path = tmp_path / "store"
    store = SvveVectorStore(embedding, path=path)
    store.add_texts(["a", "b"], ids=["a", "b"])

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(Collection, "upsert", boom)
        with pytest.raises(OSError, match="simulated"):
            store.add_texts(["c"], ids=["c"])
    with monkeypatch.context() as m:
        m.setattr(Collection, "delete", boom)
        with pytest.raises(OSError, match="simulated"):
            store.delete(["a"])
    store.close()
    with SvveVectorStore(embedding, path=path) as again:
        assert len(again.collection) == again.count() == 2
        assert sorted(d.id for d in again.similarity_search("c", k=10)) == ["b", "c"]
        # without reopening: the next write replays the failed one first
        with monkeypatch.context() as m:
            m.setattr(Collection, "upsert", boom)
            with pytest.raises(OSError, match="simulated"):
                again.add_texts(["d"], ids=["d"])
        assert sorted(d.id for d in again.similarity_search("d", k=10)) == ["b", "c"]
        again.delete(["b"])
        assert sorted(d.id for d in again.similarity_search("d", k=10)) == ["c", "d"]
    with SvveVectorStore(embedding, path=path) as again:
        assert len(again.collection) == again.count() == 2
        assert sorted(d.id for d in again.similarity_search("c", k=10)) == ["c", "d"]
    # the first collection never created (crash right after the first SQLite write)
    path2 = tmp_path / "store2"
    with monkeypatch.context() as m:
        m.setattr(Collection, "create", boom)
        store = SvveVectorStore(embedding, path=path2)
        with pytest.raises(OSError, match="simulated"):
            store.add_texts(["x"], ids=["x"])
        store.close()
    with SvveVectorStore(embedding, path=path2) as again:
        assert [d.id for d in again.similarity_search("x")] == ["x"]
    # the same without reopening: the next add creates the collection with both
    with monkeypatch.context() as m:
        m.setattr(Collection, "create", boom)
        store = SvveVectorStore(embedding)
        with pytest.raises(OSError, match="simulated"):
            store.add_texts(["x"], ids=["x"])
    store.add_texts(["y"], ids=["y"])
    assert sorted(d.id for d in store.similarity_search("x", k=5)) == ["x", "y"]
    store.close()


def test_import_error_names_the_extra() -> None:
    # A fresh interpreter where langchain_core cannot be imported.
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n    import svve_core.integrations.langchain\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True
    ).stdout
    assert 'pip install "svve-core[langchain]"' in out


def test_import_svve_core_does_not_import_the_integrations() -> None:
    code = (
        "import sys, svve_core; "
        "bad = [m for m in sys.modules if m.startswith(('svve_core.integrations', "
        "'langchain', 'llama_index'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_relevance_fn_for_l2(embedding: Embeddings) -> None:
    with SvveVectorStore(embedding, metric="l2") as store:
        store.add_texts(["a", "b"])
        (doc, d), _ = store.similarity_search_with_score("a", k=2)
        assert doc.page_content == "a"
        assert d == pytest.approx(0.0, abs=1e-4)
        fn = store._select_relevance_score_fn()
        assert (fn(0.0), fn(4.0)) == (1.0, 0.0)
        assert math.isclose(fn(2.0), 0.5)
