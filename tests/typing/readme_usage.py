"""Every Python call the README shows, as a user would type it. CI runs
``mypy --strict`` and pyright (basedpyright in standard mode) over this file:
the public API must type-check as documented. It is also run as a script by
``tests/python/test_typing.py``, so the calls are real.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
from typing_extensions import assert_type

import svve_core
from svve_core import EngineConfig, IndexConfig, IndexInfo, SearchEngine, SearchParams
from svve_core.exceptions import DimensionMismatchError, InvalidParameterError, SVVEError


def quickstart(directory: Path) -> None:
    vectors = np.random.default_rng(0).standard_normal((2_000, 64)).astype(np.float32)
    ids = np.arange(2_000, dtype=np.int64) + 10_000_000  # optional, default arange(n)

    info: IndexInfo = svve_core.build_index(
        directory / "docs.svve", vectors, ids=ids, metric="cosine"
    )
    print(info.n, info.dim, info.bytes_file, info.partitions, info.isa)

    engine = svve_core.SearchEngine(directory / "docs.svve")  # once, at server start
    doc_ids, scores = engine.search(vectors[0], k=10)  # int64 (10,), float32 (10,)
    # Results are typed by dtype, for checkers as at run time.
    assert_type(doc_ids, npt.NDArray[np.int64])
    assert_type(scores, npt.NDArray[np.float32])
    assert doc_ids.shape == (10,)
    assert scores.dtype == np.float32
    doc_ids, scores = engine.search_batch(vectors[:64], k=10)  # (64, 10) each
    assert doc_ids.shape == (64, 10)

    async def from_async_code() -> None:
        doc_ids, scores = await engine.asearch(vectors[0], k=10)
        assert len(doc_ids) == len(scores) == 10

    # Filters (README "Filters").
    rng = np.random.default_rng(1)
    n = len(vectors)
    info = svve_core.build_index(
        directory / "docs.svve",
        vectors,
        ids=ids,
        metric="cosine",
        attributes={
            "tenant": rng.integers(0, 100, n),
            "lang": rng.choice(["en", "de"], n),
            "price": rng.random(n) * 50,
            "public": rng.random(n) < 0.5,
            "tags": [["linux"] if i % 3 else [] for i in range(n)],
        },
    )
    assert info.attributes["tags"] == "tags"
    engine = svve_core.SearchEngine(directory / "docs.svve")
    doc_ids, scores = engine.search(
        vectors[0], k=10, filter={"tenant": 7, "lang": {"$in": ["en", "de"]}}
    )
    doc_ids, scores = engine.search(vectors[0], k=10, filter={"price": {"$gte": 10, "$lt": 20}})
    doc_ids, scores = engine.search(
        vectors[0], k=10, filter={"$or": [{"public": True}, {"tags": {"$contains": "linux"}}]}
    )
    doc_ids, scores = engine.search(vectors[0], k=10, filter={"id": {"$in": ids[:500]}})
    assert len(doc_ids) == 10

    asyncio.run(from_async_code())

    exact_ids, _ = engine.search(vectors[0], k=10, params=svve_core.SearchParams(exact=True))
    assert exact_ids[0] == ids[0]

    rng = np.random.default_rng(0)
    queries = rng.standard_normal((50, 64)).astype(np.float32)
    truth, _ = engine.search_batch(queries, k=10, params=svve_core.SearchParams(exact=True))
    for target in (0.9, 0.95, 0.99):
        params = svve_core.SearchParams(target_recall=target)
        found, _ = engine.search_batch(queries, k=10, params=params)
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
        print(target, recall)
    calibration = engine.info().calibration
    assert calibration is not None
    print(calibration.queries, calibration.seconds, [p.target for p in calibration.points])
    print(engine.info().warnings)
    print(len(engine), engine.dim, engine.info().metric)


def parameters(directory: Path) -> None:
    vectors = np.random.default_rng(1).standard_normal((1_000, 32)).astype(np.float32)
    svve_core.build_index(
        directory / "p.svve", vectors, metric="l2", config=IndexConfig(partitions=4, seed=3)
    )
    IndexConfig(center=False, calibrate=False)
    params = SearchParams(
        target_recall=0.95,
        candidates=400,
        nprobe=2,
        expand_probes=2,
        expand_ratio=0.5,
        query_bits=4,
        expansion=True,
        epsilon=3.0,
    )
    config = EngineConfig(verify=False, lock_pages=False, threads=0, params=params)
    engine = SearchEngine(directory / "p.svve", config)
    engine.reload()
    ids, scores = engine.search(vectors[3], k=5)
    assert ids.shape == scores.shape == (5,)
    arrays = engine.arrays()
    assert arrays["vectors"].shape == (1_000, 32)
    svve_core.set_num_threads(2)
    assert svve_core.num_threads() >= 1


def errors(directory: Path) -> None:
    engine = SearchEngine(directory / "p.svve")
    try:
        engine.search(np.zeros(7, dtype=np.float32), k=3)
    except DimensionMismatchError as e:
        print("one line:", e)
    try:
        SearchParams(query_bits=9)
    except InvalidParameterError as e:
        print("one line:", e)
    try:
        engine.search(np.zeros(32, dtype=np.float32), k=0)
    except SVVEError as e:
        print("one line:", e, isinstance(e, ValueError))


def live_collection(directory: Path) -> None:
    rng = np.random.default_rng(0)
    path = directory / "col"
    col = svve_core.Collection.create(path, dim=64, metric="cosine")
    ids = col.add(rng.standard_normal((1000, 64), dtype=np.float32))
    assert ids.dtype == np.int64
    col.upsert(rng.standard_normal((2, 64), dtype=np.float32), ids=[5, 5000])
    assert col.delete([1, 2, 3, 123456]) == 3
    generation: int = col.commit()
    reader = svve_core.Collection.open(path, readonly=True)
    found, scores = reader.search(rng.standard_normal(64, dtype=np.float32), k=10)
    assert found.shape == scores.shape == (10,)
    col.add(rng.standard_normal((10, 64), dtype=np.float32))
    assert col.commit() > generation
    assert reader.refresh()
    col.compact()
    info: svve_core.CollectionInfo = col.info()
    assert info.n == len(col) == 1008
    # README "Filters": collections take the same attributes and filters.
    tagged = svve_core.Collection.create(directory / "tagged", dim=64)
    tagged.add(
        rng.standard_normal((100, 64), dtype=np.float32),
        attributes={"lang": ["en", "de"] * 50, "tags": [["linux"]] * 100},
    )
    tagged.upsert(
        rng.standard_normal((1, 64), dtype=np.float32),
        ids=[7],
        attributes={"lang": ["de"], "tags": [[]]},
    )
    query = rng.standard_normal(64, dtype=np.float32)
    found, _ = tagged.search(query, k=5, filter={"lang": "de", "tags": {"$contains": "linux"}})
    assert len(found) == 5
    assert 7 not in found.tolist()  # upserted without the tag


def framework_stores(directory: Path) -> None:
    """README "LangChain and LlamaIndex" (docs/integrations.md)."""
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores import VectorStoreQuery

    from svve_core.integrations import langchain, llamaindex

    store = langchain.SvveVectorStore(DeterministicFakeEmbedding(size=16), path=None)
    ids: list[str] = store.add_documents(
        [Document(page_content="svve", metadata={"page": 1})], ids=["a"]
    )
    found: list[tuple[Document, float]] = store.similarity_search_with_score(
        "svve", k=1, filter={"page": {"$gte": 1}}
    )
    assert [d.id for d, _ in found] == ids
    assert len(store.as_retriever(search_kwargs={"k": 1}).invoke("svve")) == 1
    store.delete(ids)

    nodes = llamaindex.SvveVectorStore(path=directory / "llama")
    node = TextNode(text="svve", id_="n1", embedding=[1.0, 0.0, 0.0])
    assert nodes.add([node]) == ["n1"]
    result = nodes.query(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=1))
    assert result.ids == ["n1"]
    nodes.close()


def typos_are_type_errors(directory: Path, vectors: npt.NDArray[np.float32]) -> None:
    """Never called: mypy --strict (warn_unused_ignores) fails if an ignore
    below stops being needed, i.e. if a typo stops being a type error."""
    svve_core.build_index(directory / "x.svve", vectors, metric="cosin")  # type: ignore[arg-type]
    svve_core.Collection.create(directory / "c", dim=8, metric="L2")  # type: ignore[arg-type]
    SearchParams(exact="yes")  # type: ignore[arg-type]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        quickstart(Path(tmp))
        live_collection(Path(tmp))
        parameters(Path(tmp))
        errors(Path(tmp))
        framework_stores(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
