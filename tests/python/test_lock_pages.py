"""EngineConfig(lock_pages=True): the mapping is pinned with mlock, answers are
unchanged, and a process that may not lock that much memory gets IndexIOError
naming the file and the limit, not a crash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from svve_core import EngineConfig, SearchEngine


def _locked_kib() -> int:
    """VmLck of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_locked_engine_pins_the_file_and_answers_the_same(
    index_paths: Dict[str, Path], dataset
) -> None:
    path = index_paths["cosine"]
    plain = SearchEngine(path)
    before = _locked_kib()
    try:
        locked = SearchEngine(path, EngineConfig(lock_pages=True))
    except Exception as e:
        if "RLIMIT_MEMLOCK" in str(e):
            pytest.skip(f"this process may not lock the index: {e}")
        raise
    assert _locked_kib() - before >= path.stat().st_size // 1024 - 4
    for q in dataset.queries[:20]:
        a, b = plain.search(q, 10), locked.search(q, 10)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    del locked
    assert _locked_kib() <= before + 4  # unmapping unlocks


_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_MEMLOCK, (4096, 4096))
from svve_core import EngineConfig, SearchEngine
from svve_core.exceptions import IndexIOError
try:
    SearchEngine(sys.argv[1], EngineConfig(lock_pages=True))
except IndexIOError as e:
    print("refused:", e)
    sys.exit(0)
print("locked anyway")
sys.exit(1)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mlock limits are Linux's")
def test_lock_beyond_the_memlock_limit_is_a_typed_error(index_paths: Dict[str, Path]) -> None:
    path = str(index_paths["cosine"])
    cmd = [sys.executable, "-c", _CHILD, path]
    if os.geteuid() == 0:
        # root ignores RLIMIT_MEMLOCK through CAP_IPC_LOCK: drop it for the child.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv to drop CAP_IPC_LOCK")
        cmd = [setpriv, "--bounding-set", "-ipc_lock", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert path in out.stdout
    assert "RLIMIT_MEMLOCK" in out.stdout
