"""The storage both framework stores share: documents in SQLite beside a
live svve ``Collection``.

A store is a directory::

    docs.sqlite   texts, metadata (JSON), float32 vectors, the framework's
                  string id -> svve int64 id, and a small journal (WAL mode)
    vectors/      the svve Collection, created at the first add (its
                  dimension comes from the first embeddings)
    lock          held (flock) by the one process that has the store open

Why the vectors are kept in SQLite too (the collection holds them as
well): they make every write recoverable without guessing, and they give
LangChain's max-marginal-relevance search the candidates' vectors.

Crash consistency: a write first commits the documents to SQLite together
with their svve ids in the ``pending`` journal, then upserts / deletes
those ids in the collection and commits it, then clears the journal. On
open, every journalled id is replayed from SQLite (upsert its vector if the
document exists, else delete it): both sides always end up agreeing, at
any crash point. Searches fetch their hits' documents from SQLite and skip
ids it no longer holds.

Thread-safe: one lock serialises SQLite access and writes; the collection
searches outside it (svve searches in parallel with writes).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from svve_core import _svve_core
from svve_core.collection import Collection
from svve_core.engine import PathLike
from svve_core.exceptions import (
    CollectionClosedError,
    CollectionLockedError,
    DimensionMismatchError,
    InvalidParameterError,
    InvalidVectorError,
    NonFiniteError,
)
from svve_core.integrations._where import LOWER_FUNCTION, compile_filter
from svve_core.schemas import Metric, SearchParams

FORMAT = "1"
DB_FILE = "docs.sqlite"
VECTORS_DIR = "vectors"
LOCK_FILE = "lock"
_BATCH = 4096  # rows per replay batch and per SQL IN (...) list

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    svve_id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    key TEXT NOT NULL UNIQUE,                   -- the framework's id
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,                     -- a JSON object
    vector BLOB NOT NULL                        -- float32 x dim
);
CREATE TABLE IF NOT EXISTS pending (svve_id INTEGER PRIMARY KEY);
"""


class Row(NamedTuple):
    """One stored document (``score`` set by searches)."""

    svve_id: int
    key: str
    text: str
    metadata: Dict[str, Any]
    score: Optional[float] = None


def metadata_json(metadata: Mapping[str, Any]) -> str:
    """``metadata`` as the JSON text stored (and filtered on)."""
    if not isinstance(metadata, Mapping):
        raise InvalidParameterError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(
            dict(metadata), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as e:
        raise InvalidParameterError(
            f"metadata must be JSON-serialisable (str, int, float, bool, None, lists, dicts; "
            f"finite numbers): {e}"
        ) from e


class _Resources:
    """What a store holds open; a separate object so that ``weakref.finalize``
    can release it without keeping the store alive."""

    def __init__(self, directory: str, temporary: bool) -> None:
        self.directory = directory
        self.temporary = temporary
        self.conn: Optional[sqlite3.Connection] = None
        self.collection: Optional[Collection] = None
        self.lock_fd: Optional[int] = None

    def close(self) -> None:
        if self.collection is not None:
            self.collection.close()
            self.collection = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # releases the flock
            self.lock_fd = None
        if self.temporary:
            shutil.rmtree(self.directory, ignore_errors=True)


def _lock(directory: str) -> int:
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl  # POSIX; on Windows the collection's own lock still guards it
    except ImportError:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise CollectionLockedError(
            f"{directory}: this store is open in another process or object "
            "(one store object per directory)"
        ) from None
    return fd


class DocStore:
    """Documents (SQLite) and their vectors (a svve ``Collection``) in one
    directory; ``path=None`` makes a temporary one, deleted at ``close()`` or
    when the store is garbage-collected."""

    def __init__(
        self,
        path: Optional[PathLike],
        *,
        framework: str,
        metric: Metric = "cosine",
        params: Optional[SearchParams] = None,
    ) -> None:
        temporary = path is None
        directory = (
            tempfile.mkdtemp(prefix=f"svve-{framework}-") if path is None else os.fspath(path)
        )
        os.makedirs(directory, exist_ok=True)
        self._res = _Resources(directory, temporary)
        self._finalizer = weakref.finalize(self, self._res.close)
        self._mutex = threading.RLock()
        self._stale = False  # a write's collection half failed: replay before the next
        self.params = params
        try:
            self._res.lock_fd = _lock(directory)
            self._open(framework, metric)
        except BaseException:
            self._finalizer()
            raise

    # -- opening and recovery -----------------------------------------------

    def _open(self, framework: str, metric: Metric) -> None:
        conn = sqlite3.connect(
            os.path.join(self.directory, DB_FILE), check_same_thread=False, isolation_level=None
        )
        self._res.conn = conn
        conn.create_function(LOWER_FUNCTION, 1, _lower, deterministic=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, as svve's does
        conn.executescript(_SCHEMA)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            wanted = {"format": FORMAT, "framework": framework, "metric": metric}
            with self._transaction():
                conn.executemany("INSERT INTO meta VALUES (?, ?)", wanted.items())
            meta = wanted
        if meta.get("format") != FORMAT:
            raise InvalidParameterError(
                f"{self.directory}: unknown store format {meta.get('format')!r}"
            )
        if meta["framework"] != framework:
            raise InvalidParameterError(
                f"{self.directory} is a {meta['framework']} store, not a {framework} one"
            )
        if meta["metric"] != metric:
            raise InvalidParameterError(
                f"{self.directory} was created with metric={meta['metric']!r}, not {metric!r}"
            )
        self.metric: Metric = meta["metric"]  # type: ignore[assignment]
        self.dim: Optional[int] = int(meta["dim"]) if "dim" in meta else None
        self._recover()

    def _recover(self) -> None:
        """Bring the collection in line with SQLite: at open (after a crash), and
        before the next write after one whose collection half failed."""
        vectors = os.path.join(self.directory, VECTORS_DIR)
        if self.dim is None:
            # No documents: a collection left by a crashed clear() goes too.
            shutil.rmtree(vectors, ignore_errors=True)
        elif self._res.collection is not None:
            self._replay(self._pending_ids())
        elif os.path.isdir(vectors):
            self._res.collection = Collection.open(vectors)
            self._replay(self._pending_ids())
        else:  # the first add failed before the collection was created
            self._res.collection = Collection.create(vectors, dim=self.dim, metric=self.metric)
            self._replay([r[0] for r in self._conn.execute("SELECT svve_id FROM docs")])
        self._stale = False

    def _pending_ids(self) -> List[int]:
        return [r[0] for r in self._conn.execute("SELECT svve_id FROM pending")]

    def _replay(self, ids: Sequence[int]) -> None:
        """Bring the collection in line with SQLite for ``ids``, then clear them
        from the journal."""
        col = self._collection
        for start in range(0, len(ids), _BATCH):
            batch = list(ids[start : start + _BATCH])
            found = self._vectors(batch)
            if found:
                col.upsert(np.stack(list(found.values())), ids=list(found))
            gone = [i for i in batch if i not in found]
            if gone:
                col.delete(gone)
        col.commit()
        with self._transaction():
            self._conn.execute("DELETE FROM pending")

    # -- plumbing -----------------------------------------------------------

    @property
    def directory(self) -> str:
        return self._res.directory

    @property
    def temporary(self) -> bool:
        return self._res.temporary

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = self._res.conn
        if conn is None:
            raise CollectionClosedError(f"{self.directory}: this store was closed")
        return conn

    @property
    def _collection(self) -> Collection:
        col = self._res.collection
        if col is None:
            raise CollectionClosedError(f"{self.directory}: the store has no collection")
        return col

    @property
    def collection(self) -> Optional[Collection]:
        """The svve collection (``None`` until the first add)."""
        return self._res.collection

    def _transaction(self) -> Any:
        return _Transaction(self._conn)

    def close(self) -> None:
        """Release the files (and delete a temporary store). Idempotent."""
        with self._mutex:
            self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    # -- writes -------------------------------------------------------------

    def check_vectors(self, vectors: Any) -> np.ndarray:
        """``vectors`` as float32 ``(n, dim)``, checked before anything is written."""
        arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise InvalidVectorError(f"embeddings must be a (n, dim) matrix, got shape {arr.shape}")
        if self.dim is not None and arr.shape[1] != self.dim:
            raise DimensionMismatchError(
                f"embeddings have {arr.shape[1]} dimensions, the store has {self.dim}"
            )
        if not np.isfinite(arr).all():
            raise NonFiniteError("embeddings hold a non-finite value (NaN or Inf)")
        if self.metric == "cosine" and arr.size and not np.any(arr, axis=1).all():
            raise InvalidVectorError("an embedding is all zeros, which has no cosine similarity")
        # The collection's own limit (src/limits.rs): checked here, before the
        # SQLite half is written, so the collection half cannot refuse it later
        # and leave a journal entry that could never be replayed.
        norms = np.einsum("ij,ij->i", arr.astype(np.float64), arr.astype(np.float64))
        big = np.flatnonzero(norms > _svve_core.MAX_NORM2)
        if big.size:
            raise InvalidVectorError(
                f"embedding {int(big[0])} has a squared norm above 2^100, which svve cannot score"
            )
        return arr

    def put(
        self,
        keys: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        vectors: Any,
    ) -> None:
        """Insert documents, replacing those whose keys exist (a key given
        twice: the last one wins)."""
        arr = self.check_vectors(vectors)
        if not len(keys) == len(texts) == len(metadatas) == arr.shape[0]:
            raise InvalidParameterError(
                f"{len(keys)} ids, {len(texts)} texts, {len(metadatas)} metadatas and "
                f"{arr.shape[0]} embeddings: they must be as many"
            )
        last = {str(k): i for i, k in enumerate(keys)}  # dict order: first appearance
        rows = [
            (k, str(texts[i]), metadata_json(metadatas[i]), arr[i].tobytes())
            for k, i in last.items()
        ]
        if not rows:
            return
        with self._mutex:
            # Again under the lock: a racing first add (or a clear) may have
            # changed the dimension since the check above.
            self.check_vectors(arr)
            if self._stale:
                self._recover()
            conn = self._conn
            with self._transaction():
                if self.dim is None:
                    conn.execute("INSERT INTO meta VALUES ('dim', ?)", (str(arr.shape[1]),))
                conn.executemany(
                    "INSERT INTO docs (key, text, metadata, vector) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET text = excluded.text, "
                    "metadata = excluded.metadata, vector = excluded.vector",
                    rows,
                )
                ids = self._ids_of(list(last))
                conn.executemany("INSERT OR IGNORE INTO pending VALUES (?)", [(i,) for i in ids])
            self.dim = int(arr.shape[1])
            try:
                if self._res.collection is None:
                    vectors_dir = os.path.join(self.directory, VECTORS_DIR)
                    self._res.collection = Collection.create(vectors_dir, self.dim, self.metric)
                col = self._collection
                col.upsert(arr[list(last.values())], ids=ids)
                col.commit()
            except BaseException:
                self._stale = True  # the journal holds these ids: the next write replays them
                raise
            with self._transaction():
                conn.executemany("DELETE FROM pending WHERE svve_id = ?", [(i,) for i in ids])

    def _ids_of(self, keys: List[str]) -> List[int]:
        """The svve ids of existing ``keys``, in their order."""
        found: Dict[str, int] = {}
        for start in range(0, len(keys), _BATCH):
            chunk = keys[start : start + _BATCH]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, svve_id FROM docs WHERE key IN ({marks})"
            found.update(self._conn.execute(sql, chunk).fetchall())
        return [found[k] for k in keys if k in found]

    def delete(
        self, keys: Optional[Sequence[str]] = None, where: Optional[Mapping[str, Any]] = None
    ) -> int:
        """Delete the documents with ``keys`` that match ``where`` (``None``:
        no condition); returns how many there were."""
        with self._mutex:
            if self._stale:
                self._recover()
            ids = self.select_ids(keys=keys, where=where)
            if not ids:
                return 0
            conn = self._conn
            with self._transaction():
                conn.executemany("INSERT OR IGNORE INTO pending VALUES (?)", [(i,) for i in ids])
                conn.executemany("DELETE FROM docs WHERE svve_id = ?", [(i,) for i in ids])
            try:
                col = self._collection
                col.delete(ids)
                col.commit()
            except BaseException:
                self._stale = True
                raise
            with self._transaction():
                conn.executemany("DELETE FROM pending WHERE svve_id = ?", [(i,) for i in ids])
            return len(ids)

    def clear(self) -> None:
        """Delete every document and the collection (the next add may bring
        another dimension)."""
        with self._mutex:
            with self._transaction():
                self._conn.execute("DELETE FROM docs")
                self._conn.execute("DELETE FROM pending")
                self._conn.execute("DELETE FROM meta WHERE key = 'dim'")
            if self._res.collection is not None:
                self._res.collection.close()
                self._res.collection = None
            self.dim = None
            self._stale = False
            shutil.rmtree(os.path.join(self.directory, VECTORS_DIR), ignore_errors=True)

    # -- reads --------------------------------------------------------------

    def __len__(self) -> int:
        with self._mutex:
            return int(self._conn.execute("SELECT count(*) FROM docs").fetchone()[0])

    def _where_sql(self, keys: Optional[Sequence[str]], where: Optional[Mapping[str, Any]]) -> Any:
        clauses, params = [], []
        if keys is not None:
            clauses.append("d.key IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([str(k) for k in keys]))
        if where is not None:
            sql, ps = compile_filter(where)
            clauses.append(sql)
            params.extend(ps)
        return (" WHERE " + " AND ".join(f"({c})" for c in clauses) if clauses else ""), params

    def select_ids(
        self, keys: Optional[Sequence[str]] = None, where: Optional[Mapping[str, Any]] = None
    ) -> List[int]:
        """The svve ids of the documents with ``keys`` matching ``where``."""
        sql, params = self._where_sql(keys, where)
        with self._mutex:
            return [r[0] for r in self._conn.execute(f"SELECT svve_id FROM docs d{sql}", params)]

    def rows(
        self, keys: Optional[Sequence[str]] = None, where: Optional[Mapping[str, Any]] = None
    ) -> List[Row]:
        """The documents with ``keys`` (in that order, missing ones left out)
        matching ``where``; without ``keys``, all matching, oldest first."""
        sql, params = self._where_sql(keys, where)
        query = f"SELECT svve_id, key, text, metadata FROM docs d{sql} ORDER BY svve_id"
        with self._mutex:
            found = [
                Row(i, k, t, json.loads(m)) for i, k, t, m in self._conn.execute(query, params)
            ]
        if keys is None:
            return found
        by_key = {r.key: r for r in found}
        return [by_key[k] for k in dict.fromkeys(str(k) for k in keys) if k in by_key]

    def iter_rows(self) -> Iterator[Row]:
        """Every document (for Python-side filters), read in batches."""
        last = 0
        while True:
            with self._mutex:
                batch = self._conn.execute(
                    "SELECT svve_id, key, text, metadata FROM docs WHERE svve_id > ? "
                    "ORDER BY svve_id LIMIT ?",
                    (last, _BATCH),
                ).fetchall()
            if not batch:
                return
            for i, k, t, m in batch:
                yield Row(i, k, t, json.loads(m))
            last = batch[-1][0]

    def _vectors(self, ids: Sequence[int]) -> Dict[int, np.ndarray]:
        found: Dict[int, np.ndarray] = {}
        for start in range(0, len(ids), _BATCH):
            chunk = [int(i) for i in ids[start : start + _BATCH]]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT svve_id, vector FROM docs WHERE svve_id IN ({marks})"
            with self._mutex:
                for i, blob in self._conn.execute(sql, chunk):
                    found[i] = np.frombuffer(blob, dtype=np.float32)
        return found

    def with_vectors(self, rows: Sequence[Row]) -> tuple[List[Row], List[List[float]]]:
        """``rows`` that still have a stored vector, and those vectors (as
        lists, what the frameworks' MMR helpers take), in the same order."""
        vectors = self._vectors([r.svve_id for r in rows])
        kept = [r for r in rows if r.svve_id in vectors]
        return kept, [vectors[r.svve_id].tolist() for r in kept]

    def search(
        self,
        query: Any,
        k: int,
        *,
        where: Optional[Mapping[str, Any]] = None,
        keys: Optional[Sequence[str]] = None,
        predicate: Optional[Callable[[Row], bool]] = None,
    ) -> List[Row]:
        """The ``min(k, matching)`` documents nearest ``query``, best first,
        among those with ``keys`` matching ``where`` and ``predicate``."""
        col = self._res.collection
        if col is None:
            if self.closed:
                raise CollectionClosedError(f"{self.directory}: this store was closed")
            return []
        svve_filter = None
        if keys is not None or where is not None or predicate is not None:
            if predicate is None:
                allowed = self.select_ids(keys=keys, where=where)
            else:
                allow = None
                if keys is not None or where is not None:
                    allow = set(self.select_ids(keys, where))
                allowed = [
                    r.svve_id
                    for r in self.iter_rows()
                    if (allow is None or r.svve_id in allow) and predicate(r)
                ]
            if not allowed:
                return []
            svve_filter = {"id": {"$in": np.asarray(allowed, dtype=np.int64)}}
        q = np.ascontiguousarray(np.asarray(query, dtype=np.float32))
        if q.ndim != 1:
            raise InvalidVectorError(f"the query embedding must be 1-D, got shape {q.shape}")
        ids, scores = col.search(q, k=k, params=self.params, filter=svve_filter)
        sql = (
            "SELECT svve_id, key, text, metadata FROM docs "
            "WHERE svve_id IN (SELECT value FROM json_each(?))"
        )
        with self._mutex:
            found = {
                i: (key, t, m)
                for i, key, t, m in self._conn.execute(sql, (json.dumps(ids.tolist()),))
            }
        return [
            Row(int(i), found[i][0], found[i][1], json.loads(found[i][2]), float(s))
            for i, s in zip(ids.tolist(), scores.tolist())
            if i in found  # deleted meanwhile
        ]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _lower(s: Any) -> Any:
    return s.lower() if isinstance(s, str) else s
