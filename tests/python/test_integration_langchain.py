"""The LangChain store: LangChain's standard vector-store suite, then filters,
persistence, deletion and the rest of the store's own behaviour."""

from __future__ import annotations

from typing import Iterator

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

from svve_core.integrations.langchain import SvveVectorStore


class TestStandardSuite(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> Iterator[SvveVectorStore]:
        store = SvveVectorStore(self.get_embeddings())
        try:
            yield store
        finally:
            store.close()
