"""The LlamaIndex store: the interface checks a LlamaIndex vector store owes
(llama-index-core ships no suite for them): add, query (top-k, scores, node
and doc ids, filters with every operator and condition against
``build_metadata_filter_fn``, nested filters, MMR), delete by ref doc,
delete_nodes, get_nodes, clear, async paths, persistence, and an index and a
retriever end to end."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import Document, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn

from svve_core.exceptions import CollectionLockedError, InvalidParameterError
from svve_core.integrations.llamaindex import SvveVectorStore

DIM = 8


def _vector(text: str) -> List[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).tolist()


class HashEmbedding(BaseEmbedding):
    """Deterministic, offline: a text's vector comes from its hash."""

    def _get_query_embedding(self, query: str) -> List[float]:
        return _vector(query)

    async def _aget_query_embedding(self, query: str) -> List[float]:
        return _vector(query)

    def _get_text_embedding(self, text: str) -> List[float]:
        return _vector(text)


def _node(i: int, metadata: Dict[str, Any], doc: str = "") -> TextNode:
    node = TextNode(
        id_=f"n{i}", text=f"text {i}", embedding=_vector(f"text {i}"), metadata=metadata
    )
    if doc:
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc)
    return node


@pytest.fixture
def store() -> Iterator[SvveVectorStore]:
    s = SvveVectorStore()
    yield s
    s.close()


def _query(vector: List[float], k: int = 10, **kwargs: Any) -> VectorStoreQuery:
    return VectorStoreQuery(query_embedding=vector, similarity_top_k=k, **kwargs)


def test_add_and_query(store: SvveVectorStore) -> None:
    nodes = [_node(i, {"i": i}, doc=f"doc{i % 2}") for i in range(6)]
    assert store.add(nodes) == [n.node_id for n in nodes]
    assert store.stores_text
    result = store.query(_query(_vector("text 3"), k=3))
    assert result.ids is not None
    assert result.similarities is not None
    assert result.nodes is not None
    assert result.ids[0] == "n3"
    assert result.similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert result.similarities == sorted(result.similarities, reverse=True)
    assert [n.node_id for n in result.nodes] == result.ids
    best = result.nodes[0]
    assert best.get_content() == "text 3"
    assert best.metadata == {"i": 3}
    assert best.ref_doc_id == "doc1"
    assert best.embedding is None  # as other stores: the vector stays in the store


def test_k_larger_than_the_store_and_empty_store(store: SvveVectorStore) -> None:
    assert store.query(_query(_vector("q"))).ids == []
    store.add([_node(i, {}) for i in range(3)])
    assert len(store.query(_query(_vector("q"), k=50)).ids or []) == 3


def test_query_by_node_and_doc_ids(store: SvveVectorStore) -> None:
    store.add([_node(i, {"i": i}, doc=f"doc{i % 3}") for i in range(9)])
    by_node = store.query(_query(_vector("q"), node_ids=["n1", "n4", "zz"]))
    assert sorted(by_node.ids or []) == ["n1", "n4"]
    by_doc = store.query(_query(_vector("q"), doc_ids=["doc2"]))
    assert sorted(by_doc.ids or []) == ["n2", "n5", "n8"]
    both = store.query(_query(_vector("q"), doc_ids=["doc2"], node_ids=["n5", "n1"]))
    assert both.ids == ["n5"]
    # empty lists restrict nothing (VectorIndexRetriever sends node_ids=[])
    assert len(store.query(_query(_vector("q"), node_ids=[], doc_ids=[])).ids or []) == 9


def test_delete_by_ref_doc_and_nodes(store: SvveVectorStore) -> None:
    store.add([_node(i, {"i": i}, doc=f"doc{i % 3}") for i in range(9)])
    store.delete("doc0")
    assert sorted(n.node_id for n in store.get_nodes()) == ["n1", "n2", "n4", "n5", "n7", "n8"]
    store.delete_nodes(node_ids=["n1", "missing"])
    over = MetadataFilters(filters=[MetadataFilter(key="i", value=5, operator=">")])
    store.delete_nodes(filters=over)
    assert sorted(n.node_id for n in store.get_nodes()) == ["n2", "n4", "n5"]
    store.delete_nodes(
        node_ids=["n2", "n4"], filters=MetadataFilters(filters=[MetadataFilter(key="i", value=4)])
    )
    assert sorted(n.node_id for n in store.get_nodes()) == ["n2", "n5"]
    assert len(store.client) == store.count() == 2
    store.delete_nodes()  # no ids, no filters: everything
    assert store.get_nodes() == []


def test_get_nodes_and_clear(store: SvveVectorStore) -> None:
    store.add([_node(i, {"i": i}) for i in range(4)])
    assert [n.node_id for n in store.get_nodes(node_ids=["n3", "n0", "x"])] == ["n3", "n0"]
    low = MetadataFilters(filters=[MetadataFilter(key="i", value=2, operator="<")])
    assert [n.node_id for n in store.get_nodes(filters=low)] == ["n0", "n1"]
    store.clear()
    assert store.get_nodes() == []
    assert store.query(_query(_vector("q"))).ids == []
    store.add([_node(9, {})])  # usable after clear
    assert [n.node_id for n in store.get_nodes()] == ["n9"]


def test_add_replaces_by_node_id(store: SvveVectorStore) -> None:
    store.add([_node(1, {"v": 1})])
    store.add([_node(1, {"v": 2})])
    assert [n.metadata for n in store.get_nodes()] == [{"v": 2}]


# -- filters ------------------------------------------------------------------

METADATA: List[Dict[str, Any]] = [
    {"a": 1, "s": "Alpha", "tags": ["x", "y"], "f": 0.5},
    {"a": 2, "s": "beta", "tags": ["y"], "f": 1.5},
    {"a": 3, "s": "gamma ALPHA", "tags": [], "f": 2.5},
    {"a": 2, "s": "", "f": 3.5},
    {"s": "delta", "tags": ["z", "x"]},
    {"a": 5, "tags": ["x"], "f": None},
    {},
]

SINGLE = [
    ("a", 2, "=="),
    ("a", 2, "!="),
    ("a", 2, ">"),
    ("a", 2, ">="),
    ("a", 3, "<"),
    ("a", 3, "<="),
    ("f", 1.5, ">="),
    ("s", "beta", "=="),
    ("s", "b", ">"),
    ("a", [1, 5], "in"),
    ("a", [1, 5], "nin"),
    ("s", ["beta", "delta"], "in"),
    ("tags", "x", "contains"),
    ("tags", ["x", "z"], "any"),
    ("tags", ["x", "z"], "all"),
    ("tags", ["y"], "all"),
    ("s", "alpha", "text_match"),
    ("s", "alpha", "text_match_insensitive"),
    ("s", "ALPHA", "contains"),
]


@pytest.fixture
def filtered(store: SvveVectorStore) -> SvveVectorStore:
    store.add([_node(i, md) for i, md in enumerate(METADATA)])
    return store


def _expected(filters: MetadataFilters) -> List[str]:
    fn = build_metadata_filter_fn(lambda i: METADATA[int(i)], filters)
    return [f"n{i}" for i in range(len(METADATA)) if fn(str(i))]


def _found(store: SvveVectorStore, filters: MetadataFilters) -> List[str]:
    return sorted(store.query(_query(_vector("q"), k=100, filters=filters)).ids or [])


@pytest.mark.parametrize(("key", "value", "op"), SINGLE, ids=[f"{k}{o}{v}" for k, v, o in SINGLE])
def test_each_operator_as_the_reference(
    filtered: SvveVectorStore, key: str, value: Any, op: str
) -> None:
    filters = MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=op)])
    # the reference raises TypeError on mixed types (an int compared with a
    # str, `in` on a missing list); those rows are left out of it here
    fn = build_metadata_filter_fn(lambda i: METADATA[int(i)], filters)
    expected = []
    for i in range(len(METADATA)):
        try:
            if fn(str(i)):
                expected.append(f"n{i}")
        except TypeError:
            pass
    assert _found(filtered, filters) == expected
    assert [n.node_id for n in filtered.get_nodes(filters=filters)] == expected


def test_is_empty(filtered: SvveVectorStore) -> None:
    for key in ("a", "s", "tags", "f"):
        filters = MetadataFilters(
            filters=[MetadataFilter(key=key, value=None, operator="is_empty")]
        )
        assert _found(filtered, filters) == _expected(filters), key


@pytest.mark.parametrize(
    "condition", [FilterCondition.AND, FilterCondition.OR, FilterCondition.NOT]
)
def test_conditions(filtered: SvveVectorStore, condition: FilterCondition) -> None:
    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="a", value=2, operator=FilterOperator.GTE),
            MetadataFilter(key="tags", value="x", operator=FilterOperator.CONTAINS),
        ],
        condition=condition,
    )
    assert _found(filtered, filters) == _expected(filters)


def test_nested_filters(filtered: SvveVectorStore) -> None:
    # (a == 1 or s == "delta") and not (tags contains "z")
    filters = MetadataFilters(
        filters=[
            MetadataFilters(
                filters=[MetadataFilter(key="a", value=1), MetadataFilter(key="s", value="delta")],
                condition="or",
            ),
            MetadataFilters(
                filters=[MetadataFilter(key="tags", value="z", operator="contains")],
                condition="not",
            ),
        ]
    )
    assert _found(filtered, filters) == ["n0"]


def test_filter_value_none(filtered: SvveVectorStore) -> None:
    eq = MetadataFilters(filters=[MetadataFilter(key="f", value=None)])
    ne = MetadataFilters(filters=[MetadataFilter(key="f", value=None, operator="!=")])
    assert _found(filtered, eq) == _expected(eq) == []
    assert _found(filtered, ne) == _expected(ne)


# -- modes, async, persistence, end to end --------------------------------------


def test_mmr_and_unsupported_modes(store: SvveVectorStore) -> None:
    store.add([_node(i, {}) for i in range(8)])
    mmr = store.query(
        _query(_vector("text 2"), k=3, mode=VectorStoreQueryMode.MMR, mmr_threshold=0.5)
    )
    assert len(mmr.ids or []) == 3
    assert (mmr.ids or [])[0] == "n2"
    with pytest.raises(ValueError, match="query mode"):
        store.query(_query(_vector("q"), mode=VectorStoreQueryMode.HYBRID))
    with pytest.raises(ValueError, match="query_embedding"):
        store.query(VectorStoreQuery(query_str="no vector"))


async def test_async_paths(store: SvveVectorStore) -> None:
    await store.async_add([_node(i, {"i": i}, doc="d") for i in range(3)])
    result = await store.aquery(_query(_vector("text 1"), k=1))
    assert result.ids == ["n1"]
    assert len(await store.aget_nodes(node_ids=["n0"])) == 1
    await store.adelete_nodes(node_ids=["n0"])
    await store.adelete("d")
    assert await store.aget_nodes() == []
    await store.aclear()


def test_persistence(tmp_path: Path) -> None:
    path = tmp_path / "li"
    store = SvveVectorStore(path=path)
    store.add([_node(i, {"i": i}, doc="d") for i in range(3)])
    with pytest.raises(CollectionLockedError):
        SvveVectorStore(path=path)
    store.close()
    again = SvveVectorStore(path=str(path))
    assert [n.get_content() for n in again.get_nodes()] == ["text 0", "text 1", "text 2"]
    assert again.query(_query(_vector("text 2"), k=1)).ids == ["n2"]
    again.close()
    from svve_core.integrations.langchain import SvveVectorStore as LangChainStore

    with pytest.raises(InvalidParameterError, match="llamaindex store"):
        LangChainStore(embedding=None, path=path)  # type: ignore[arg-type]


def test_index_and_retriever_end_to_end(tmp_path: Path) -> None:
    store = SvveVectorStore(path=tmp_path / "idx")
    context = StorageContext.from_defaults(vector_store=store)
    assert context.vector_store is store  # an empty store is not falsy (no __len__)
    # the metadata stays out of the embedded text, so a query of a text finds it
    docs = [
        Document(text=t, metadata={"topic": m}, id_=i, excluded_embed_metadata_keys=["topic"])
        for t, m, i in [
            ("svve searches vectors", "search", "d1"),
            ("bread needs flour", "baking", "d2"),
        ]
    ]
    index = VectorStoreIndex.from_documents(
        docs, storage_context=context, embed_model=HashEmbedding()
    )
    retriever = index.as_retriever(similarity_top_k=1)
    hits = retriever.retrieve("svve searches vectors")
    assert [h.node.get_content() for h in hits] == ["svve searches vectors"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    only_baking = index.as_retriever(
        similarity_top_k=5,
        filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="baking")]),
    )
    assert [h.node.ref_doc_id for h in only_baking.retrieve("svve")] == ["d2"]
    assert store.count() == 2  # the nodes went to this store
    index.delete_ref_doc("d1")
    assert [h.node.ref_doc_id for h in index.as_retriever(similarity_top_k=5).retrieve("x")] == [
        "d2"
    ]
    store.close()


def test_import_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['llama_index'] = None\n"
        "try:\n    import svve_core.integrations.llamaindex\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True
    ).stdout
    assert 'pip install "svve-core[llamaindex]"' in out
