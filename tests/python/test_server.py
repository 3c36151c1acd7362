"""The example service (examples/server/app.py): answers equal in-process
search, bad input is a 4xx with the library's message, reloads reach every
worker without a failed request, and the server shuts down cleanly.

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

from svve_core import SearchEngine, SearchParams, build_index

pytestmark = pytest.mark.server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "server"
V2_OFFSET = 10_000  # ids of the second index version


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("svve_example_server", EXAMPLE / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up
    spec.loader.exec_module(module)
    return module


server = _load_example()


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
