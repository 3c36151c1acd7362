"""The server's settings: environment variables, read when a worker (or the
writer process) starts.

    SVVE_INDEX_DIR        index mode: directory holding the index files; the
                          server opens no index file outside it
    SVVE_INDEX            file served at start and watched, relative to the
                          directory (default current.svve; may be a symlink
                          to a file inside the directory)
    SVVE_WATCH_INTERVAL   seconds between checks of that file's inode, size and
                          mtime; a change reloads it in this worker (default 1;
                          0 switches the watch off)
    SVVE_ADMIN_TOKEN      enables POST /admin/reload (bearer token); unset: 404.
                          In collection mode, when set, the write endpoints
                          require it too
    SVVE_VERIFY           1 (default): check every section's CRC32 at open
    SVVE_MAX_BODY_BYTES   request body limit (default 4 MiB), 413 above it
    SVVE_MAX_K            largest k (default 1000)
    SVVE_MAX_BATCH        most queries in one /search/batch (default 256)
    SVVE_OPEN_AT_IMPORT   (read by app.py) 1: open the index when app.py is
                          imported, i.e. in the gunicorn master under --preload
                          (before fork); gunicorn.conf.py sets it from SVVE_PRELOAD
    SVVE_NUM_THREADS      (read by svve_core) batch-search threads per worker;
                          set it to cores / workers

Collection mode (instead of SVVE_INDEX_DIR, SVVE_INDEX, SVVE_WATCH_INTERVAL):

    SVVE_COLLECTION       directory of a live collection (svve_core.Collection,
                          created beforehand); every worker opens it read-only
    SVVE_REFRESH_INTERVAL seconds between a worker's refreshes to the newest
                          committed generation (default 0.1)
    SVVE_WRITER_SOCKET    path of the writer's unix socket (gunicorn.conf.py
                          picks one); unset: the write endpoints answer 503
    SVVE_WRITER_KEY       the socket's authentication key, any secret string
                          (gunicorn.conf.py generates one)
    SVVE_WRITE_TIMEOUT    seconds a worker waits for the writer's answer
                          (default 300: a compaction of a large collection)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise RuntimeError(f"{name} must be 0 or 1, got {value!r}")


def _number(env: Mapping[str, str], name: str, default: float, kind: type = int) -> Any:
    value = env.get(name)
    if value is None or value == "":
        return kind(default)
    try:
        number = kind(value)
    except ValueError:
        raise RuntimeError(f"{name} must be a {kind.__name__}, got {value!r}") from None
    if number < 0:
        raise RuntimeError(f"{name} must not be negative, got {value!r}")
    return number


@dataclass(frozen=True)
class Settings:
    index_dir: Optional[Path] = None  # index mode
    index_name: str = "current.svve"
    watch_interval: float = 1.0
    admin_token: Optional[str] = None
    verify: bool = True
    max_body_bytes: int = 4 << 20
    max_k: int = 1000
    max_batch: int = 256
    # Collection mode (index_dir unset).
    collection_dir: Optional[Path] = None
    refresh_interval: float = 0.1
    writer_socket: Optional[str] = None
    writer_key: Optional[bytes] = field(default=None, repr=False)
    write_timeout: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        index_dir = env.get("SVVE_INDEX_DIR")
        collection = env.get("SVVE_COLLECTION")
        if index_dir and collection:
            raise RuntimeError("set SVVE_INDEX_DIR or SVVE_COLLECTION, not both")
        if not index_dir and not collection:
            raise RuntimeError(
                "set SVVE_INDEX_DIR to the directory holding the index files "
                "(or SVVE_COLLECTION to a collection's directory)"
            )
        key = env.get("SVVE_WRITER_KEY")
        return cls(
            index_dir=Path(index_dir) if index_dir else None,
            collection_dir=Path(collection) if collection else None,
            refresh_interval=_number(env, "SVVE_REFRESH_INTERVAL", 0.1, float),
            writer_socket=env.get("SVVE_WRITER_SOCKET") or None,
            writer_key=key.encode() if key else None,
            write_timeout=_number(env, "SVVE_WRITE_TIMEOUT", 300.0, float),
            index_name=env.get("SVVE_INDEX") or "current.svve",
            watch_interval=_number(env, "SVVE_WATCH_INTERVAL", 1.0, float),
            admin_token=env.get("SVVE_ADMIN_TOKEN") or None,
            verify=env_flag(env, "SVVE_VERIFY", True),
            max_body_bytes=_number(env, "SVVE_MAX_BODY_BYTES", 4 << 20),
            max_k=_number(env, "SVVE_MAX_K", 1000),
            max_batch=_number(env, "SVVE_MAX_BATCH", 256),
        )
