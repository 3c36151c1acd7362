"""A LangChain ``VectorStore`` over svve::

    from langchain_core.embeddings import DeterministicFakeEmbedding
    from svve_core.integrations.langchain import SvveVectorStore

    store = SvveVectorStore(DeterministicFakeEmbedding(size=64))  # temporary
    store.add_texts(["svve is fast"], metadatas=[{"source": "readme"}])
    store.similarity_search("fast", k=4, filter={"source": "readme"})

Documents (text, metadata, id) live in SQLite beside a svve ``Collection``
(``svve_core.integrations._docstore``). ``filter`` is a Mongo-style dict on
the metadata (``svve_core.integrations._where`` lists the operators) or, as
LangChain's ``InMemoryVectorStore`` takes it, a ``Document -> bool`` function.
Scores are svve's: cosine similarity for ``metric="cosine"`` (higher is
closer); relevance scores map them to ``[0, 1]``.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as e:  # pragma: no cover - exercised in a test with the import blocked
    raise ImportError(
        'svve_core.integrations.langchain needs langchain-core: pip install "svve-core[langchain]"'
    ) from e

from svve_core.engine import PathLike
from svve_core.integrations._docstore import DocStore, Row
from svve_core.schemas import Metric, SearchParams

Filter = Union[Mapping[str, Any], Callable[[Document], bool], None]

__all__ = ["SvveVectorStore"]


def _document(row: Row) -> Document:
    return Document(id=row.key, page_content=row.text, metadata=row.metadata)


class SvveVectorStore(VectorStore):
    """A LangChain vector store in directory ``path`` (``None``: a temporary
    one, deleted at ``close()`` or garbage collection). The same ``path``
    opens the same documents again; one store object per directory at a
    time.

    ``metric`` (``cosine``, ``ip`` or ``l2``) is fixed when the store is
    created; ``search_params`` (a ``svve_core.SearchParams``) apply to every
    search, e.g. ``SearchParams(exact=True)``.
    """

    def __init__(
        self,
        embedding: Embeddings,
        path: Optional[PathLike] = None,
        *,
        metric: Metric = "cosine",
        search_params: Optional[SearchParams] = None,
    ) -> None:
        self._embedding = embedding
        self._store = DocStore(path, framework="langchain", metric=metric, params=search_params)

    # -- housekeeping -------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def path(self) -> str:
        """The store's directory."""
        return self._store.directory

    @property
    def collection(self) -> Any:
        """The underlying ``svve_core.Collection`` (``None`` before the first add)."""
        return self._store.collection

    def close(self) -> None:
        """Release the files (a temporary store is deleted)."""
        self._store.close()

    def __enter__(self) -> SvveVectorStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def count(self) -> int:
        """How many documents the store holds. (Not ``__len__``: frameworks test
        stores for truth, ``if vector_store:``, and an empty one must pass.)"""
        return len(self._store)

    # -- writes -------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> List[str]:
        """Embed and store ``texts``; a text whose id is already stored replaces
        it. Ids are generated (uuid4) where ``ids`` has none. Returns the ids."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        given: Sequence[Optional[str]] = ids or [None] * len(texts)
        keys = [str(uuid.uuid4()) if i is None else str(i) for i in given]
        if not texts:
            return []
        vectors = self._embedding.embed_documents(texts)
        self._store.put(keys, texts, metadatas or [{}] * len(texts), vectors)
        return keys

    def delete(self, ids: Optional[List[str]] = None, **kwargs: Any) -> Optional[bool]:
        """Delete documents by id (unknown ids are ignored); ``None`` deletes all."""
        if ids is None:
            self._store.clear()
        else:
            self._store.delete(keys=[str(i) for i in ids])
        return True

    # -- reads --------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        """The stored documents with ``ids``, in that order (missing ones left out)."""
        return [_document(r) for r in self._store.rows(keys=list(ids))]

    def _rows(self, embedding: Any, k: int, filter: Filter) -> List[Row]:
        if filter is None or isinstance(filter, Mapping):
            return self._store.search(embedding, k, where=filter)
        if callable(filter):
            fn = filter
            return self._store.search(embedding, k, predicate=lambda r: bool(fn(_document(r))))
        raise TypeError(f"filter must be a dict or a Document -> bool function, got {filter!r}")

    def similarity_search_with_score_by_vector(
        self, embedding: List[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """The ``min(k, matching)`` documents nearest ``embedding`` with svve's scores."""
        return [(_document(r), float(r.score or 0.0)) for r in self._rows(embedding, k, filter)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """The ``min(k, matching)`` documents nearest ``query`` with svve's scores
        (cosine similarity for the cosine metric)."""
        embedding = self._embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(embedding, k, filter)

    def similarity_search_by_vector(
        self, embedding: List[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> List[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter)]

    def similarity_search(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> List[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """svve's scores to ``[0, 1]``: ``(1 + cos) / 2`` for cosine (and for ip
        on unit vectors, clipped), ``1 - d / 4`` for squared l2 (the same value
        on unit vectors)."""
        if self._store.metric == "l2":
            return lambda d: min(1.0, max(0.0, 1.0 - d / 4.0))
        return lambda s: min(1.0, max(0.0, (1.0 + s) / 2.0))

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: List[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> List[Document]:
        """``k`` documents chosen among the ``fetch_k`` nearest for relevance and
        diversity (the stored vectors feed LangChain's MMR)."""
        rows = self._rows(embedding, max(fetch_k, k), filter)
        if not rows:
            return []
        rows, vectors = self._store.with_vectors(rows)
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32),
            vectors,
            lambda_mult=lambda_mult,
            k=k,
        )
        return [_document(rows[i]) for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> List[Document]:
        embedding = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            embedding, k, fetch_k, lambda_mult, filter
        )

    @classmethod
    def from_texts(
        cls: Type[SvveVectorStore],
        texts: List[str],
        embedding: Embeddings,
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        path: Optional[PathLike] = None,
        metric: Metric = "cosine",
        search_params: Optional[SearchParams] = None,
        **kwargs: Any,
    ) -> SvveVectorStore:
        """A store at ``path`` (``None``: temporary) holding ``texts``."""
        store = cls(embedding, path, metric=metric, search_params=search_params)
        store.add_texts(texts, metadatas, ids=ids)
        return store
