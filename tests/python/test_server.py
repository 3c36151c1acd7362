"""The example service (examples/server/app.py): answers equal in-process
search, bad input is a 4xx with the library's message, reloads reach every
worker without a failed request, and the server shuts down cleanly. In
collection mode, writes through any worker reach the one writer process,
commit, and every worker serves them within 1 s; bad writes are a 4xx.

Real servers run on a free loopback port in their own process group, which
teardown kills. In-process checks use FastAPI's TestClient.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
with warnings.catch_warnings():
    # starlette >= 1.8 prefers httpx2 (Python >= 3.11) and warns when it falls back to httpx
    warnings.simplefilter("ignore", DeprecationWarning)
    TestClient = pytest.importorskip("fastapi.testclient").TestClient

from svve_core import Collection, SearchEngine, SearchParams, build_index
from svve_core.exceptions import CollectionLockedError

pytestmark = pytest.mark.server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "server"
V2_OFFSET = 10_000  # ids of the second index version


def _load_example() -> Any:
    # app.py imports its sibling modules (settings, holders, writer, ...) by
    # name, as uvicorn's --app-dir and gunicorn's chdir let it.
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    spec = importlib.util.spec_from_file_location("svve_example_server", EXAMPLE / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up
    spec.loader.exec_module(module)
    return module


server = _load_example()
writer_module = importlib.import_module("writer")  # examples/server/writer.py


@pytest.fixture
def index_dir(tmp_path: Path, dataset) -> Path:
    """``current.svve`` (ids 0..n) and ``v2.svve`` (rows reversed, ids + 10 000)."""
    root = tmp_path / "index"
    root.mkdir()
    n = len(dataset.data)
    build_index(root / "current.svve", dataset.data, metric="ip")
    build_index(
        root / "v2.svve",
        dataset.data[::-1].copy(),
        ids=np.arange(n, dtype=np.int64) + V2_OFFSET,
        metric="ip",
    )
    return root


def _b64(x: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(x, dtype="<f4").tobytes()).decode()


# --- in process ----------------------------------------------------------------


@contextlib.contextmanager
def _client(index_dir: Path, **settings: Any) -> Iterator[TestClient]:
    settings.setdefault("watch_interval", 0)
    holder = server.IndexHolder(server.Settings(index_dir=index_dir, **settings))
    with TestClient(server.create_app(holder)) as client:
        yield client


def test_search_endpoints_equal_the_engine(index_dir: Path, dataset) -> None:
    engine = SearchEngine(index_dir / "current.svve")
    queries = dataset.queries[:8]
    with _client(index_dir) as client:
        for q in queries:
            want_ids, want_scores = engine.search(q, 5)
            for body in ({"vector": q.tolist()}, {"vector_b64": _b64(q)}):
                r = client.post("/search", json={**body, "k": 5})
                assert r.status_code == 200, r.text
                np.testing.assert_array_equal(r.json()["ids"], want_ids)
                np.testing.assert_array_equal(np.float32(r.json()["scores"]), want_scores)
        exact = SearchParams(exact=True)
        r = client.post("/search", json={"vector": queries[0].tolist(), "params": {"exact": True}})
        np.testing.assert_array_equal(r.json()["ids"], engine.search(queries[0], 10, exact)[0])
        for recall in (0.8, 1.0):
            want = engine.search_batch(queries, 10, SearchParams(target_recall=recall))[0]
            r = client.post("/search/batch", json={"vectors": queries.tolist(), "recall": recall})
            np.testing.assert_array_equal(r.json()["ids"], want)
        want_ids, want_scores = engine.search_batch(queries, 7)
        for body in ({"vectors": queries.tolist()}, {"vectors_b64": _b64(queries)}):
            r = client.post("/search/batch", json={**body, "k": 7})
            assert r.status_code == 200, r.text
            np.testing.assert_array_equal(r.json()["ids"], want_ids)
            np.testing.assert_array_equal(np.float32(r.json()["scores"]), want_scores)
        r = client.post("/search/batch", json={"vectors": []})
        assert r.status_code == 200
        assert r.json() == {"ids": [], "scores": []}
        assert client.get("/health").json()["status"] == "ok"
        info = client.get("/info").json()
        assert info["n"] == len(dataset.data)
        assert info["name"] == "current.svve"


def test_filters_in_requests(tmp_path: Path, dataset) -> None:
    """A ``filter`` field on /search and /search/batch answers as the engine
    does; a bad one is a 400 naming the wrong part."""
    root = tmp_path / "index"
    root.mkdir()
    n = len(dataset.data)
    tenant = np.arange(n) % 7
    build_index(root / "current.svve", dataset.data, metric="ip", attributes={"tenant": tenant})
    engine = SearchEngine(root / "current.svve")
    queries = dataset.queries[:4]
    flt = {"tenant": {"$in": [2, 5]}}
    with _client(root) as client:
        r = client.post("/search", json={"vector": queries[0].tolist(), "k": 5, "filter": flt})
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(r.json()["ids"], engine.search(queries[0], 5, filter=flt)[0])
        assert all(tenant[i] in (2, 5) for i in r.json()["ids"])
        r = client.post("/search/batch", json={"vectors": queries.tolist(), "filter": flt})
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(
            r.json()["ids"], engine.search_batch(queries, 10, filter=flt)[0]
        )
        r = client.post("/search", json={"vector": queries[0].tolist(), "filter": {"x": 1}})
        assert r.status_code == 400, r.text
        assert "unknown attribute" in r.json()["detail"]


BAD_REQUESTS = [
    ("/search", {"vector": [1.0, 2.0]}, 400, "dimensions"),
    ("/search", {"vector": []}, 400, "dimensions"),
    ("/search", {"vector_b64": _b64(np.full(64, np.nan))}, 400, "finite"),
    ("/search", {"vector": [1e39] * 64}, 400, "finite"),  # overflows float32
    ("/search", {"vector": [0.0] * 64, "k": 3}, 200, ""),  # zero vector is fine for ip
    ("/search", {"vector": [1.0] * 64, "k": 0}, 400, "k must be"),
    ("/search", {"vector": [1.0] * 64, "k": 100_000}, 400, "k must be"),
    ("/search", {"vector": [1.0] * 64, "params": {"nprobe": -1}}, 400, "nprobe"),
    ("/search", {"vector": [1.0] * 64, "params": {"bogus": 1}}, 400, "bogus"),
    ("/search", {"vector": [1.0] * 64, "recall": 1.5}, 400, "target_recall"),
    ("/search", {"vector": [1.0] * 64, "recall": 0}, 400, "target_recall"),
    (
        "/search",
        {"vector": [1.0] * 64, "recall": 0.9, "params": {"target_recall": 0.9}},
        400,
        "once",
    ),
    ("/search", {"vector_b64": "not base64!"}, 400, "base64"),
    ("/search", {"vector_b64": "AAAAAAA="}, 400, "float32"),
    ("/search", {"vector": [1.0] * 64, "vector_b64": "AAAA"}, 422, "exactly one"),
    ("/search", {"vector": ["x"] * 64}, 422, ""),
    ("/search", {}, 422, "exactly one"),
    ("/search/batch", {"vectors": [[1.0] * 64, [1.0] * 63]}, 400, "inhomogeneous"),
    ("/search/batch", {"vectors": [[1.0] * 63]}, 400, "dimensions"),
    ("/search/batch", {"vectors_b64": _b64(np.ones(65))}, 400, "rows of 64"),
    ("/search/batch", {"vectors": [[1.0] * 64] * 9}, 400, "at most 8"),
]


@pytest.mark.parametrize(("url", "body", "status", "message"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_with_the_message(
    index_dir: Path, url: str, body: Dict[str, Any], status: int, message: str
) -> None:
    with _client(index_dir, max_batch=8) as client:
        r = client.post(url, json=body)
    assert r.status_code == status, r.text
    assert message in r.text


def test_request_bodies_are_limited(index_dir: Path) -> None:
    big = json.dumps({"vector": [1.0] * 2000}).encode()
    with _client(index_dir, max_body_bytes=len(big) - 1) as client:
        r = client.post("/search", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        chunked = client.post(
            "/search",
            content=iter([big[:100], big[100:]]),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413
        r = client.post(
            "/search", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422


def test_admin_reload_needs_a_token_and_stays_in_the_directory(
    index_dir: Path, tmp_path: Path, dataset
) -> None:
    q = dataset.queries[0].tolist()
    with _client(index_dir) as client:
        assert client.post("/admin/reload").status_code == 404  # no token configured
    outside = tmp_path / "outside.svve"
    build_index(outside, dataset.data[:100], metric="ip")
    (index_dir / "escape.svve").symlink_to(outside)
    (index_dir / "alias.svve").symlink_to(index_dir / "v2.svve")
    (index_dir / "broken.svve").write_bytes(b"not an index" * 100)
    auth = {"authorization": "Bearer s3cret"}
    with _client(index_dir, admin_token="s3cret") as client:
        assert client.post("/admin/reload").status_code == 401
        wrong = {"authorization": "Bearer s3cre"}
        assert (
            client.post("/admin/reload", json={"path": "v2.svve"}, headers=wrong).status_code == 401
        )
        for path, status in [
            ("../outside.svve", 400),
            (os.fspath(outside), 400),
            ("escape.svve", 400),
            ("", 400),
            (".", 400),
            ("missing.svve", 404),
            ("broken.svve", 422),
        ]:
            r = client.post("/admin/reload", json={"path": path}, headers=auth)
            assert r.status_code == status, (path, r.text)
        ids = client.post("/search", json={"vector": q}).json()["ids"]
        assert max(ids) < V2_OFFSET, "failed reloads keep the old index in service"
        r = client.post("/admin/reload", json={"path": "alias.svve"}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["path"] == os.fspath(index_dir.resolve() / "v2.svve")
        ids = client.post("/search", json={"vector": q}).json()["ids"]
        assert min(ids) >= V2_OFFSET
        assert client.post("/admin/reload", headers=auth).status_code == 200  # same file again


def test_file_watch_reloads_and_survives_a_broken_file(
    index_dir: Path, tmp_path: Path, dataset
) -> None:
    holder = server.IndexHolder(server.Settings(index_dir=index_dir, watch_interval=0))
    q = dataset.queries[0]
    assert not holder.check()
    shutil.copyfile(index_dir / "current.svve", index_dir / "v1.svve")
    broken = index_dir / "broken.tmp"
    broken.write_bytes(b"not an index" * 100)
    os.replace(broken, index_dir / "current.svve")
    assert not holder.check(), "a broken file is refused"
    assert not holder.check(), "and not retried until it changes"
    assert holder.engine.search(q)[0].max() < V2_OFFSET
    os.replace(index_dir / "v2.svve", index_dir / "current.svve")
    assert holder.check()
    assert holder.engine.search(q)[0].min() >= V2_OFFSET
    assert holder.reloads == 1
    # A symlink flip is a change too; one that leads outside the directory is refused.
    (index_dir / "link.tmp").symlink_to(tmp_path / "elsewhere.svve")
    shutil.copyfile(index_dir / "v1.svve", tmp_path / "elsewhere.svve")
    os.replace(index_dir / "link.tmp", index_dir / "current.svve")
    assert not holder.check()
    assert holder.engine.search(q)[0].min() >= V2_OFFSET
    (index_dir / "link.tmp").symlink_to("v1.svve")
    os.replace(index_dir / "link.tmp", index_dir / "current.svve")
    assert holder.check()
    assert holder.engine.search(q)[0].max() < V2_OFFSET
    assert holder.describe()["path"] == os.fspath(index_dir.resolve() / "v1.svve")


# --- collection mode, in process --------------------------------------------------

NEW = 50_000  # ids of rows the tests add through the endpoints


@pytest.fixture(scope="session")
def collection_template(tmp_path_factory: pytest.TempPathFactory, dataset) -> Path:
    """A collection (metric ip) of ``dataset.data[:1800]``, ids 0..1800: one
    compacted segment of 1500 rows and 300 fresh rows. Tests copy it."""
    path = tmp_path_factory.mktemp("collection") / "c"
    col = Collection.create(path, dim=dataset.data.shape[1], metric="ip")
    col.add(dataset.data[:1500], ids=np.arange(1500))
    col.compact()
    col.add(dataset.data[1500:1800], ids=np.arange(1500, 1800))
    col.commit()
    col.close()
    return path


@pytest.fixture
def collection_dir(collection_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "collection"
    shutil.copytree(collection_template, path, ignore=shutil.ignore_patterns("LOCK"))
    return path


@contextlib.contextmanager
def _writer(collection_dir: Path) -> Iterator[Tuple[Any, Dict[str, Any]]]:
    """The writer process's server, on a thread of this process; yields it and
    the settings that reach it (a short socket path: AF_UNIX allows ~100 bytes)."""
    private = tempfile.mkdtemp(prefix="svve-test-")
    settings = {
        "collection_dir": collection_dir,
        "writer_socket": os.path.join(private, "writer.sock"),
        "writer_key": b"test key",
    }
    writer = writer_module.WriterServer(server.Settings(**settings))
    thread = threading.Thread(target=writer.serve_forever, daemon=True)
    thread.start()
    try:
        yield writer, settings
    finally:
        writer.stop()
        thread.join(timeout=30)
        shutil.rmtree(private, ignore_errors=True)
    assert not thread.is_alive()


@contextlib.contextmanager
def _collection_client(collection_dir: Path, **settings: Any) -> Iterator[TestClient]:
    """A worker in collection mode, with the writer on a thread."""
    with _writer(collection_dir) as (_, reach):
        holder = server.CollectionHolder(server.Settings(**{**reach, **settings}))
        with TestClient(server.create_app(holder)) as client:
            yield client


def _top(client: TestClient, q: np.ndarray, k: int = 10) -> List[int]:
    r = client.post("/search", json={"vector_b64": _b64(q), "k": k})
    assert r.status_code == 200, r.text
    return r.json()["ids"]


def test_collection_search_equals_the_collection(collection_dir: Path, dataset) -> None:
    reader = Collection.open(collection_dir, readonly=True)
    queries = dataset.queries[:8]
    with _collection_client(collection_dir) as client:
        for q in queries[:4]:
            want_ids, want_scores = reader.search(q, 5)
            for body in ({"vector": q.tolist()}, {"vector_b64": _b64(q)}):
                r = client.post("/search", json={**body, "k": 5})
                assert r.status_code == 200, r.text
                np.testing.assert_array_equal(r.json()["ids"], want_ids)
                np.testing.assert_array_equal(np.float32(r.json()["scores"]), want_scores)
        for recall in (0.8, 1.0):
            want = reader.search_batch(queries, 10, SearchParams(target_recall=recall))[0]
            r = client.post("/search/batch", json={"vectors": queries.tolist(), "recall": recall})
            assert r.status_code == 200, r.text
            np.testing.assert_array_equal(r.json()["ids"], want)
        want_ids, want_scores = reader.search_batch(queries, 7)
        r = client.post("/search/batch", json={"vectors_b64": _b64(queries), "k": 7})
        np.testing.assert_array_equal(r.json()["ids"], want_ids)
        np.testing.assert_array_equal(np.float32(r.json()["scores"]), want_scores)
        assert client.post("/search/batch", json={"vectors": []}).json() == {
            "ids": [],
            "scores": [],
        }
        want = reader.info()
        info = client.get("/info").json()
        assert info["mode"] == "collection"
        assert (info["n"], info["generation"]) == (1800, want.generation)
        assert (info["segments"], info["fresh"]) == (len(want.segments), want.fresh)
        writer = client.get("/collection/info").json()
        assert (writer["n"], writer["generation"], writer["uncommitted"]) == (
            1800,
            want.generation,
            False,
        )


def _committed(r: Any, n: int, after: int) -> int:
    """Checks a write's answer: committed, ``n`` rows, a generation above
    ``after`` (the library may publish more than one per commit); returns it."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["n"], body["uncommitted"]) == (n, False), body
    assert body["generation"] > after, body
    return body["generation"]


def test_collection_writes_commit_and_reach_every_worker(collection_dir: Path, dataset) -> None:
    q = dataset.queries
    with _collection_client(collection_dir) as client, contextlib.ExitStack() as stack:
        # A second worker: it only refreshes (every 0.1 s), nothing is forwarded through it.
        other_holder = server.CollectionHolder(
            server.Settings(collection_dir=collection_dir, refresh_interval=0.1)
        )
        other = stack.enter_context(TestClient(server.create_app(other_holder)))

        def seen_by_other(check: Any) -> float:
            """Seconds until the other worker's answers pass ``check``."""
            t = time.monotonic()
            while not check(_top(other, q[0]) + _top(other, q[1])):
                assert time.monotonic() - t < 1.0, "not visible to the other worker within 1 s"
                time.sleep(0.01)
            return time.monotonic() - t

        # add (commits by default): this worker sees it at once, the other within 1 s.
        g = client.get("/info").json()["generation"]
        r = client.post(
            "/collection/add",
            json={"vectors": (q[:3] * 100).tolist(), "ids": [NEW, NEW + 1, NEW + 2]},
        )
        g = _committed(r, 1803, g)
        assert r.json()["ids"] == [NEW, NEW + 1, NEW + 2]
        assert _top(client, q[0])[0] == NEW
        assert client.get("/info").json()["generation"] == g
        seen_by_other(lambda ids: ids[0] == NEW and ids[10] == NEW + 1)
        assert other.get("/info").json()["generation"] == g

        # commit: false queues the write until /collection/commit.
        r = client.post(
            "/collection/add",
            json={"vectors_b64": _b64(q[3] * 100), "ids": [NEW + 3], "commit": False},
        )
        assert r.json() == {"ids": [NEW + 3], "generation": g, "n": 1804, "uncommitted": True}
        time.sleep(0.3)
        assert NEW + 3 not in _top(client, q[3]) + _top(other, q[3])
        assert client.get("/collection/info").json()["uncommitted"] is True
        g = _committed(client.post("/collection/commit"), 1804, g)
        assert _top(client, q[3])[0] == NEW + 3

        # ids assigned by the collection: above every id it ever held.
        r = client.post("/collection/add", json={"vectors": (q[4:6] * 100).tolist()})
        g = _committed(r, 1806, g)
        assert r.json()["ids"] == [NEW + 4, NEW + 5]

        # upsert replaces a row; delete hides rows (unknown ids are not counted).
        r = client.post(
            "/collection/upsert", json={"vectors": (-q[0][None]).tolist(), "ids": [NEW]}
        )
        g = _committed(r, 1806, g)
        assert r.json()["upserted"] == 1
        assert NEW not in _top(client, q[0])
        r = client.post("/collection/delete", json={"ids": [NEW + 1, NEW + 2, 999_999]})
        g = _committed(r, 1804, g)
        assert r.json()["deleted"] == 2
        assert NEW + 1 not in _top(client, q[1])
        lag = seen_by_other(lambda ids: NEW not in ids[:10] and NEW + 1 not in ids[10:])
        assert lag < 1.0

        # compact merges everything into one segment; answers equal a fresh reader's.
        g = _committed(client.post("/collection/compact"), 1804, g)
        info = client.get("/info").json()
        assert (info["generation"], info["segments"], info["fresh"], info["n"]) == (g, 1, 0, 1804)
        fresh = Collection.open(collection_dir, readonly=True)
        want_ids, want_scores = fresh.search_batch(q[:8], 10)
        for c in (client, other):
            deadline = time.monotonic() + 1.0
            while c.get("/info").json()["generation"] != g:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            r = c.post("/search/batch", json={"vectors_b64": _b64(q[:8])})
            np.testing.assert_array_equal(r.json()["ids"], want_ids)
            np.testing.assert_array_equal(np.float32(r.json()["scores"]), want_scores)
        assert other.get("/info").json()["refreshes"] >= 3  # it may skip generations


BAD_WRITES = [
    ("/collection/add", {"vectors": [[1.0] * 63]}, 400, "DimensionMismatchError"),
    ("/collection/add", {"vectors": [[1.0] * 64, [1.0] * 63]}, 400, "inhomogeneous"),
    ("/collection/add", {"vectors_b64": _b64(np.full(64, np.nan))}, 400, "NonFiniteError"),
    ("/collection/add", {"vectors": [[1e39] * 64]}, 400, "NonFiniteError"),
    ("/collection/add", {"vectors": [[1.0] * 64], "ids": [0]}, 400, "DuplicateIdError"),
    ("/collection/add", {"vectors": [[1.0] * 64] * 2, "ids": [7, 7]}, 400, "DuplicateIdError"),
    ("/collection/add", {"vectors": [[1.0] * 64] * 2, "ids": [NEW]}, 400, "InvalidShapeError"),
    ("/collection/add", {"vectors": [[1.0] * 64], "ids": [2**63]}, 400, "InvalidParameterError"),
    ("/collection/add", {"vectors_b64": _b64(np.ones(65))}, 400, "rows of 64"),
    ("/collection/add", {"vectors_b64": "not base64!"}, 400, "base64"),
    ("/collection/add", {"vectors": [[1.0] * 64], "ids": ["7"]}, 422, "int"),
    ("/collection/add", {"vectors": [[1.0] * 64], "ids": [7.0]}, 422, "int"),
    ("/collection/add", {"vectors": [[1.0] * 64], "commit": "yes"}, 422, "bool"),
    ("/collection/add", {"vectors": [[1.0] * 64], "vectors_b64": "AAAA"}, 422, "exactly one"),
    ("/collection/add", {}, 422, "exactly one"),
    ("/collection/upsert", {"vectors": [[1.0] * 64]}, 422, "ids"),
    ("/collection/upsert", {"vectors": [[1.0] * 64] * 2, "ids": [1, 1]}, 400, "DuplicateIdError"),
    ("/collection/upsert", {"vectors": [[1.0] * 62], "ids": [1]}, 400, "DimensionMismatchError"),
    ("/collection/delete", {"ids": [1, 1]}, 400, "DuplicateIdError"),
    ("/collection/delete", {"ids": [1], "bogus": 1}, 422, "bogus"),
    ("/collection/delete", {}, 422, "ids"),
]


def test_collection_attributes_and_filters(tmp_path: Path, dataset) -> None:
    """Attributes given to /collection/add reach the writer; a ``filter`` on
    /search then sees only matching rows."""
    path = tmp_path / "attrs"
    Collection.create(path, dim=dataset.data.shape[1], metric="ip").close()
    x = dataset.data[:300]
    with _collection_client(path) as client:
        tags = [["even"] if i % 2 == 0 else ["odd"] for i in range(300)]
        r = client.post(
            "/collection/add",
            json={"vectors": x.tolist(), "attributes": {"tags": tags, "n": list(range(300))}},
        )
        assert r.status_code == 200, r.text
        r = client.post(
            "/search", json={"vector": x[1].tolist(), "k": 5, "filter": {"tags": "odd"}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["ids"]
        assert all(i % 2 == 1 for i in r.json()["ids"])
        r = client.post(
            "/collection/add", json={"vectors": x[:2].tolist(), "attributes": {"n": [1, 2]}}
        )
        assert r.status_code == 400, r.text
        assert "same attributes" in r.text
    assert Collection.open(path, readonly=True).info().attributes == {"tags": "tags", "n": "int"}


def test_bad_writes_are_a_4xx_and_change_nothing(collection_dir: Path) -> None:
    with _collection_client(collection_dir) as client:
        before = client.get("/collection/info").json()
        for url, body, status, message in BAD_WRITES:
            r = client.post(url, json=body)
            assert r.status_code == status, (url, body, r.text)
            assert message in r.text, (url, body, r.text)
            assert "detail" in r.json()
            if message.endswith("Error"):
                assert r.json()["error"] == message
        assert client.get("/collection/info").json() == before
        r = client.post("/collection/delete", json={"ids": []})
        assert r.status_code == 200
        assert r.json()["deleted"] == 0


@pytest.mark.parametrize(("url", "body", "status", "message"), BAD_REQUESTS)
def test_bad_searches_on_a_collection_are_a_4xx(
    collection_dir: Path, url: str, body: Dict[str, Any], status: int, message: str
) -> None:
    holder = server.CollectionHolder(server.Settings(collection_dir=collection_dir, max_batch=8))
    with TestClient(server.create_app(holder)) as client:
        r = client.post(url, json=body)
    assert r.status_code == status, r.text
    assert message in r.text


def test_collection_write_access(collection_dir: Path, index_dir: Path) -> None:
    body = {"vectors": [[1.0] * 64]}
    # Index mode has no collection endpoints.
    with _client(index_dir) as client:
        assert client.post("/collection/add", json=body).status_code == 404
        assert client.get("/collection/info").status_code == 404
    # No writer configured (or none running): writes are 503, searches go on.
    holder = server.CollectionHolder(server.Settings(collection_dir=collection_dir))
    with TestClient(server.create_app(holder)) as client:
        r = client.post("/collection/add", json=body)
        assert r.status_code == 503
        assert r.json()["error"] == "WriterUnavailable"
        assert client.post("/search", json={"vector": [1.0] * 64}).status_code == 200
        assert client.post("/admin/reload").status_code == 404
    gone = tempfile.mkdtemp(prefix="svve-test-")
    holder = server.CollectionHolder(
        server.Settings(
            collection_dir=collection_dir,
            writer_socket=os.path.join(gone, "writer.sock"),
            writer_key=b"k",
        )
    )
    with TestClient(server.create_app(holder)) as client:
        r = client.post("/collection/commit")
        assert r.status_code == 503
        assert "nothing was written" in r.json()["detail"]
    os.rmdir(gone)
    # SVVE_ADMIN_TOKEN, when set, guards the writes (not the searches or the info).
    with _collection_client(collection_dir, admin_token="s3cret") as client:
        assert client.post("/collection/add", json=body).status_code == 401
        wrong = {"authorization": "Bearer s3cre"}
        assert (
            client.post("/collection/delete", json={"ids": [1]}, headers=wrong).status_code == 401
        )
        assert client.get("/collection/info").status_code == 200
        auth = {"authorization": "Bearer s3cret"}
        r = client.post("/collection/add", json=body, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == [1800]


def test_one_writer_which_commits_at_exit(collection_dir: Path) -> None:
    with _writer(collection_dir) as (_, reach):
        with pytest.raises(CollectionLockedError):
            writer_module.WriterServer(server.Settings(**reach))
        client = writer_module.WriterClient(reach["writer_socket"], reach["writer_key"], 10)
        assert client.call("add", vectors=np.ones((1, 64), np.float32), ids=[NEW])["uncommitted"]
        with pytest.raises(server.RequestError, match="refused this worker's key"):
            writer_module.WriterClient(reach["writer_socket"], b"wrong", 10).call("info")
    # Stopped: the pending add was committed and the lock released.
    assert NEW in Collection.open(collection_dir, readonly=True).search(np.ones(64, np.float32))[0]
    col = Collection.open(collection_dir)
    assert not col.info().uncommitted
    col.close()


# --- real servers ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(
    port: int, method: str, url: str, body: Optional[dict] = None, timeout: float = 10.0
) -> Tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, url, data, {"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


class Server:
    """A server process group on a free loopback port."""

    def __init__(self, argv: List[str], env: Dict[str, str], log: Path) -> None:
        self.port = _free_port()
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=EXAMPLE,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(OSError):
                if _request(self.port, "GET", "/health", timeout=1)[0] == 200:
                    return
            time.sleep(0.05)
        pytest.fail(f"server not ready in {timeout} s:\n{self.log.read_text()}")

    def worker_pids(self, expected: int, timeout: float = 30.0) -> Dict[int, dict]:
        """``/info`` of every worker, over fresh connections until ``expected``
        distinct pids answered (a worker may still be starting on a busy machine)."""
        seen: Dict[int, dict] = {}
        deadline = time.monotonic() + timeout
        while len(seen) < expected and time.monotonic() < deadline:
            status, info = _request(self.port, "GET", "/info")
            assert status == 200
            seen[info["pid"]] = info
        return seen

    def stop(self) -> int:
        """SIGTERM to the group, as a process manager would; the exit status."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=15)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    if os.name != "posix":
        pytest.skip("starts the server in its own process group (POSIX)")
    servers: List[Server] = []

    def start(argv: List[str], env: Dict[str, str]) -> Server:
        s = Server(argv, env, tmp_path / f"server{len(servers)}.log")
        servers.append(s)
        s.wait_ready()
        return s

    yield start
    for s in servers:
        s.kill()


def _env(index_dir: Path) -> Dict[str, str]:
    return {
        "SVVE_INDEX_DIR": os.fspath(index_dir),
        "SVVE_WATCH_INTERVAL": "0.1",
        "SVVE_NUM_THREADS": "1",
    }


UVICORN = [
    sys.executable,
    "-m",
    "uvicorn",
    "app:app",
    "--app-dir",
    os.fspath(EXAMPLE),
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    "--workers",
    "2",
    "--log-level",
    "warning",
]


def _load(port: int, queries: np.ndarray, stop: threading.Event, out: list) -> None:
    """Searches until ``stop``; records (start time, ids or the failure). A
    fresh connection every 10 requests spreads the load over the workers."""
    i, conn = 0, None
    while not stop.is_set():
        if i % 10 == 0:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        q = queries[i % len(queries)]
        t = time.monotonic()
        try:
            conn.request(
                "POST",
                "/search",
                json.dumps({"vector_b64": _b64(q), "k": 10}),
                {"content-type": "application/json"},
            )
            r = conn.getresponse()
            body = r.read()
            out.append(
                (
                    t,
                    i % len(queries),
                    tuple(json.loads(body)["ids"])
                    if r.status == 200
                    else f"HTTP {r.status}: {body[:200]!r}",
                )
            )
        except Exception as e:  # any failure fails the test
            out.append((t, i % len(queries), f"{type(e).__name__}: {e}"))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i += 1
    if conn is not None:
        conn.close()


def _answers(path: Path, queries: np.ndarray) -> List[tuple]:
    engine = SearchEngine(path)
    return [tuple(engine.search(q, 10)[0].tolist()) for q in queries]


def test_two_workers_answer_reload_under_load_and_stop(
    index_dir: Path, dataset, start_server
) -> None:
    queries = dataset.queries[:20]
    v1 = _answers(index_dir / "current.svve", queries)
    v2 = _answers(index_dir / "v2.svve", queries)
    s = start_server(UVICORN, _env(index_dir))
    workers = s.worker_pids(2)
    assert len(workers) == 2, f"only {list(workers)} answered"

    # Every worker answers exactly as in-process search does.
    for qi, q in enumerate(queries[:5]):
        status, body = _request(s.port, "POST", "/search", {"vector": q.tolist(), "k": 10})
        assert status == 200
        assert tuple(body["ids"]) == v1[qi]
    want_ids, want_scores = SearchEngine(index_dir / "current.svve").search_batch(queries, 10)
    status, body = _request(s.port, "POST", "/search/batch", {"vectors_b64": _b64(queries)})
    np.testing.assert_array_equal(body["ids"], want_ids)
    np.testing.assert_array_equal(np.float32(body["scores"]), want_scores)

    # Deploy v2 by renaming it over the watched file, under load.
    stop, results = threading.Event(), [[] for _ in range(3)]
    threads = [threading.Thread(target=_load, args=(s.port, queries, stop, out)) for out in results]
    for t in threads:
        t.start()
    wait = time.monotonic() + 15
    while not all(len(out) >= 5 for out in results) and time.monotonic() < wait:
        time.sleep(0.05)  # every load thread has answers from v1
    os.replace(index_dir / "v2.svve", index_dir / "current.svve")
    swapped = time.monotonic()
    deadline = swapped + 15
    while time.monotonic() < deadline:
        infos = s.worker_pids(2)
        if len(infos) == 2 and all(i["reloads"] == 1 for i in infos.values()):
            break
        time.sleep(0.05)
    settled = time.monotonic()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert all(i["reloads"] == 1 for i in infos.values()), infos

    answers = [a for out in results for a in out]
    failures = [a for a in answers if isinstance(a[2], str)]
    assert not failures, failures[:5]
    old = [a for a in answers if a[2] == v1[a[1]]]
    new = [a for a in answers if a[2] == v2[a[1]]]
    assert len(old) + len(new) == len(answers), "an answer from neither version"
    assert old, "no answer from the old version: the load started too late"
    assert new, "no answer from the new version"
    assert not [a for a in old if a[0] > settled], "a worker served v1 after every worker reloaded"
    assert s.stop() == 0, s.log.read_text()


def test_gunicorn_preload_forks_workers_that_serve_and_reload(
    index_dir: Path, dataset, start_server
) -> None:
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn_worker")
    q = dataset.queries[0]
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        os.fspath(EXAMPLE / "gunicorn.conf.py"),
        "--bind",
        "127.0.0.1:{port}",
        "--log-level",
        "warning",
        "app:app",
    ]
    env = {**_env(index_dir), "SVVE_PRELOAD": "index", "SVVE_WORKERS": "2"}
    s = start_server(argv, env)
    workers = s.worker_pids(2)
    assert len(workers) == 2
    assert s.proc.pid not in workers, "workers are forked children of the master"
    want = SearchEngine(index_dir / "current.svve").search_batch(dataset.queries[:4], 10)[0]
    for _ in range(4):  # batch search: each child builds its own thread pool after fork
        status, body = _request(
            s.port, "POST", "/search/batch", {"vectors": dataset.queries[:4].tolist()}
        )
        assert status == 200
        np.testing.assert_array_equal(body["ids"], want)
    os.replace(index_dir / "v2.svve", index_dir / "current.svve")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        infos = s.worker_pids(2)
        if all(i["reloads"] == 1 for i in infos.values()) and len(infos) == 2:
            break
        time.sleep(0.05)
    assert all(i["reloads"] == 1 for i in infos.values()), infos
    status, body = _request(s.port, "POST", "/search", {"vector": q.tolist()})
    assert min(body["ids"]) >= V2_OFFSET
    assert s.stop() == 0, s.log.read_text()


def test_gunicorn_collection_mode_writes_reach_every_worker_under_load(
    collection_dir: Path, dataset, start_server
) -> None:
    """Writes through any worker reach the one writer (started by the master);
    under search load every worker serves a committed change within 1 s with
    no failed request; the writer is restarted if it dies, and stops (after
    committing) with the server."""
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn_worker")
    queries = dataset.queries[:20]
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        os.fspath(EXAMPLE / "gunicorn.conf.py"),
        "--bind",
        "127.0.0.1:{port}",
        "--log-level",
        "warning",
        "app:app",
    ]
    env = {
        "SVVE_COLLECTION": os.fspath(collection_dir),
        "SVVE_WORKERS": "2",
        "SVVE_PRELOAD": "index",  # the master opens a reader too, before forking
        "SVVE_NUM_THREADS": "1",
    }
    s = start_server(argv, env)
    workers = s.worker_pids(2)
    assert len(workers) == 2
    reader = Collection.open(collection_dir, readonly=True)
    g = reader.generation
    assert all(i["mode"] == "collection" and i["generation"] == g for i in workers.values())
    before = [tuple(ids) for ids in reader.search_batch(queries, 10)[0].tolist()]

    stop, results = threading.Event(), [[] for _ in range(3)]
    threads = [threading.Thread(target=_load, args=(s.port, queries, stop, out)) for out in results]
    for t in threads:
        t.start()
    try:
        wait = time.monotonic() + 15
        while not all(len(out) >= 5 for out in results) and time.monotonic() < wait:
            time.sleep(0.05)
        # Every query gets a new best row (ip: 100 q scores 100 |q|^2).
        rows = {"vectors_b64": _b64(queries * 100), "ids": list(range(NEW, NEW + len(queries)))}
        added_at = time.monotonic()
        status, body = _request(s.port, "POST", "/collection/add", rows)
        added = time.monotonic()
        assert status == 200, body
        assert (body["n"], body["uncommitted"]) == (1800 + len(queries), False), body
        assert body["generation"] > g
        g = body["generation"]
        time.sleep(1.3)
        deleted_at = time.monotonic()
        status, body = _request(s.port, "POST", "/collection/delete", {"ids": rows["ids"]})
        deleted = time.monotonic()
        assert status == 200, body
        assert (body["deleted"], body["n"], body["uncommitted"]) == (len(queries), 1800, False)
        assert body["generation"] > g
        g = body["generation"]
        time.sleep(1.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    answers = [a for out in results for a in out]
    failures = [a for a in answers if isinstance(a[2], str)]
    assert not failures, failures[:5]
    for t, qi, ids in answers:
        has_new = ids[0] == NEW + qi
        if t < added_at or t > deleted + 1.0:
            assert ids == before[qi], "an answer with rows not (or no longer) committed"
        elif added + 1.0 < t < deleted_at:
            assert has_new, f"a worker missed a commit {t - added:.2f} s after it"
        else:  # in transition: the old answer or the new one
            assert has_new or ids == before[qi]
    assert any(ids[0] >= NEW for _, _, ids in answers)

    # The writer is restarted when it dies; a write meanwhile is a clean 503.
    status, info = _request(s.port, "GET", "/collection/info")
    assert status == 200
    assert info["generation"] == g
    assert all(i["generation"] == g for i in s.worker_pids(2).values())
    os.kill(info["writer_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 15
    statuses = set()
    while time.monotonic() < deadline:
        status, body = _request(s.port, "POST", "/collection/commit")
        statuses.add(status)
        if status == 200:
            break
        assert status == 503, body
        assert body["error"] == "WriterUnavailable"
        time.sleep(0.1)
    assert statuses >= {503, 200}, statuses
    status, info2 = _request(s.port, "GET", "/collection/info")
    assert info2["writer_pid"] != info["writer_pid"]

    # Pending changes are committed when the server stops, and the lock is released.
    status, body = _request(
        s.port, "POST", "/collection/add", {"vectors": [[1.0] * 64], "ids": [NEW], "commit": False}
    )
    assert body["uncommitted"] is True, body
    assert s.stop() == 0, s.log.read_text()
    col = Collection.open(collection_dir)
    assert col.info().generation > g
    assert len(col) == 1801
    assert not col.info().uncommitted
    col.close()
