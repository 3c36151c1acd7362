"""Vector stores for LLM frameworks over svve, as optional extras.

- ``svve_core.integrations.langchain.SvveVectorStore(embedding, path=None)``:
  a LangChain ``VectorStore`` (``pip install "svve-core[langchain]"``).
- ``svve_core.integrations.llamaindex.SvveVectorStore(path=None)``: a
  LlamaIndex vector store (``pip install "svve-core[llamaindex]"``).

Both keep texts and metadata in SQLite beside a live svve ``Collection`` in
one directory (``path=None``: a temporary one), and evaluate metadata filters
exactly (``docs/integrations.md``). Nothing here is imported by
``import svve_core``: import the submodule you need.
"""
