"""A LlamaIndex vector store over svve::

    from llama_index.core import StorageContext, VectorStoreIndex
    from svve_core.integrations.llamaindex import SvveVectorStore

    store = SvveVectorStore(path="./svve-store")  # or None: temporary
    context = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(nodes, storage_context=context)

Nodes live in SQLite beside a svve ``Collection``
(``svve_core.integrations._docstore``): the text, and LlamaIndex's metadata
dict (``node_to_metadata_dict``: the node's own metadata at the top level,
the rest of the node as JSON), so ``stores_text`` is true and queries give
back whole nodes. ``MetadataFilters`` (every operator and condition, nested
filters too) are translated to the Mongo-style filters of
``svve_core.integrations._where`` and evaluated exactly, with
``build_metadata_filter_fn``'s semantics; similarities are svve's scores
(cosine similarity for ``metric="cosine"``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

try:
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
    from llama_index.core.schema import BaseNode, MetadataMode
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
except ImportError as e:  # pragma: no cover - exercised in a test with the import blocked
    raise ImportError(
        "svve_core.integrations.llamaindex needs llama-index-core: "
        'pip install "svve-core[llamaindex]"'
    ) from e

from svve_core.engine import PathLike
from svve_core.integrations._docstore import DocStore, Row
from svve_core.schemas import Metric, SearchParams

__all__ = ["SvveVectorStore", "to_where"]

_OPS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.CONTAINS: "$contains",
    FilterOperator.ANY: "$any",
    FilterOperator.ALL: "$all",
    FilterOperator.TEXT_MATCH: "$substring",
    FilterOperator.TEXT_MATCH_INSENSITIVE: "$isubstring",
}


def _condition(f: MetadataFilter) -> Dict[str, Any]:
    if f.operator == FilterOperator.IS_EMPTY:  # missing, null, "" or []
        return {"$or": [{f.key: None}, {f.key: ""}, {f.key: []}]}
    if f.value is None:
        # As build_metadata_filter_fn: a value None equals nothing (a missing
        # or null metadata value only matches != and nin), != None always holds.
        return {"$and": []} if f.operator == FilterOperator.NE else {"$or": []}
    op = _OPS.get(f.operator)
    if op is None:
        raise ValueError(f"unsupported filter operator {f.operator!r}")
    return {f.key: {op: f.value}}


def to_where(filters: MetadataFilters) -> Dict[str, Any]:
    """``filters`` as the store's Mongo-style filter (nested ``MetadataFilters``
    become nested ``$and`` / ``$or`` / ``$not``)."""
    parts = [
        to_where(f) if isinstance(f, MetadataFilters) else _condition(f) for f in filters.filters
    ]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return {"$and": parts}
    if condition == FilterCondition.OR:
        return {"$or": parts}
    if condition == FilterCondition.NOT:  # none of them holds
        return {"$not": {"$or": parts}}
    raise ValueError(f"unsupported filter condition {condition!r}")


def _where(
    filters: Optional[MetadataFilters], doc_ids: Optional[Sequence[str]] = None
) -> Optional[Dict[str, Any]]:
    parts = []
    if filters is not None and filters.filters:
        parts.append(to_where(filters))
    if doc_ids is not None:
        parts.append({"ref_doc_id": {"$in": list(doc_ids)}})
    return {"$and": parts} if parts else None


def _node(row: Row) -> BaseNode:
    return metadata_dict_to_node(row.metadata, text=row.text)


class SvveVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store in directory ``path`` (``None``: a temporary
    one, deleted at ``close()`` or garbage collection). The same ``path``
    opens the same nodes again; one store object per directory at a time.

    ``metric`` (``cosine``, ``ip`` or ``l2``) is fixed when the store is
    created; ``search_params`` (a ``svve_core.SearchParams``) apply to every
    query; ``flat_metadata`` makes ``add`` reject nested metadata, as other
    stores do.
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = False
    path: Optional[str] = None
    metric: str = "cosine"

    _store: DocStore = PrivateAttr()

    def __init__(
        self,
        path: Optional[PathLike] = None,
        *,
        metric: Metric = "cosine",
        search_params: Optional[SearchParams] = None,
        flat_metadata: bool = False,
        **kwargs: Any,
    ) -> None:
        store = DocStore(path, framework="llamaindex", metric=metric, params=search_params)
        # pydantic fields, which mypy (without pydantic's plugin) does not see
        super().__init__(  # type: ignore[call-arg]
            path=store.directory, metric=metric, flat_metadata=flat_metadata, **kwargs
        )
        self._store = store

    @classmethod
    def class_name(cls) -> str:
        return "SvveVectorStore"

    @property
    def client(self) -> Any:
        """The underlying ``svve_core.Collection`` (``None`` before the first add)."""
        return self._store.collection

    def close(self) -> None:
        """Release the files (a temporary store is deleted)."""
        self._store.close()

    def count(self) -> int:
        """How many documents the store holds. (Not ``__len__``: frameworks test
        stores for truth, ``if vector_store:``, and an empty one must pass.)"""
        return len(self._store)

    # -- writes -------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> List[str]:
        """Store ``nodes`` (each with its embedding); a node whose id is already
        stored replaces it. Returns the node ids."""
        if not nodes:
            return []
        keys = [n.node_id for n in nodes]
        texts = [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        metadatas = [
            node_to_metadata_dict(n, remove_text=True, flat_metadata=self.flat_metadata)
            for n in nodes
        ]
        self._store.put(keys, texts, metadatas, [n.get_embedding() for n in nodes])
        return keys

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete the nodes of the source document ``ref_doc_id``."""
        self._store.delete(where={"ref_doc_id": ref_doc_id})

    def delete_nodes(
        self,
        node_ids: Optional[List[str]] = None,
        filters: Optional[MetadataFilters] = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete the nodes with ``node_ids`` (all without) matching ``filters``."""
        if node_ids is None and (filters is None or not filters.filters):
            self.clear()
        else:
            self._store.delete(keys=node_ids, where=_where(filters))

    def clear(self) -> None:
        """Delete every node."""
        self._store.clear()

    # -- reads --------------------------------------------------------------

    def get_nodes(
        self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None
    ) -> List[BaseNode]:
        """The nodes with ``node_ids`` (in that order; all without) matching ``filters``."""
        return [_node(r) for r in self._store.rows(keys=node_ids, where=_where(filters))]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``min(similarity_top_k, matching)`` nodes nearest
        ``query.query_embedding`` among those matching ``filters``, ``node_ids``
        and ``doc_ids`` (ref doc ids; an empty list restricts nothing). Modes: default and MMR (with
        ``mmr_threshold``, from the query or ``kwargs``)."""
        if query.query_embedding is None:
            raise ValueError("SvveVectorStore.query needs query.query_embedding")
        if query.mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise ValueError(f"SvveVectorStore does not support query mode {query.mode.value!r}")
        k = query.similarity_top_k
        mmr = query.mode == VectorStoreQueryMode.MMR
        rows = self._store.search(
            query.query_embedding,
            max(k, 4 * k) if mmr else k,  # MMR picks among more candidates
            # empty lists restrict nothing: VectorIndexRetriever sends node_ids=[]
            keys=query.node_ids or None,
            where=_where(query.filters, query.doc_ids or None),
        )
        if mmr and rows:
            rows = self._mmr(query.query_embedding, rows, k, kwargs.get("mmr_threshold"), query)
        return VectorStoreQueryResult(
            nodes=[_node(r) for r in rows],
            similarities=[float(r.score or 0.0) for r in rows],
            ids=[r.key for r in rows],
        )

    def _mmr(
        self,
        embedding: List[float],
        rows: List[Row],
        k: int,
        threshold: Optional[float],
        query: VectorStoreQuery,
    ) -> List[Row]:
        rows, vectors = self._store.with_vectors(rows)
        scores, ids = get_top_k_mmr_embeddings(
            embedding,
            vectors,
            similarity_top_k=k,
            embedding_ids=list(range(len(rows))),
            mmr_threshold=query.mmr_threshold if threshold is None else threshold,
        )
        return [rows[i]._replace(score=s) for s, i in zip(scores, ids)]
