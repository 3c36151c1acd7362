"""svve-core: embedded two-tier vector search (Segmented Vector Voting & Expansion).

>>> import numpy as np, svve_core
>>> svve_core.build_index("docs.svve", vectors)          # (n, dim) float32
>>> engine = svve_core.SearchEngine("docs.svve")
>>> ids, scores = engine.search(query, k=10)              # numpy arrays
"""

from svve_core import _svve_core, exceptions
from svve_core.collection import Collection
from svve_core.engine import SearchEngine, build_index
from svve_core.schemas import (
    Calibration,
    CalibrationPoint,
    CollectionConfig,
    CollectionInfo,
    EngineConfig,
    IndexConfig,
    IndexInfo,
    IndexManifest,
    SearchParams,
)

__version__ = _svve_core.__version__
FORMAT_VERSION = _svve_core.FORMAT_VERSION


def set_num_threads(n: int) -> None:
    """Size of this process's thread pool for batch search and builds (0 = one per CPU).

    Also settable with the SVVE_NUM_THREADS environment variable.
    """
    _svve_core.set_num_threads(int(n))


def num_threads() -> int:
    """Threads in this process's pool."""
    return _svve_core.num_threads()


def isa() -> str:
    """The instruction set the kernels dispatch to on this CPU (e.g.
    ``x86_64+popcnt+avx512vpopcntdq+avx2``), as ``SearchEngine.info().isa``."""
    return _svve_core.isa()


def build_id() -> str:
    """First 16 hex digits of the SHA-256 of the compiled extension: names the
    exact build in benchmark records and bug reports."""
    import hashlib
    from pathlib import Path

    return hashlib.sha256(Path(_svve_core.__file__).read_bytes()).hexdigest()[:16]


__all__ = [
    "FORMAT_VERSION",
    "Calibration",
    "CalibrationPoint",
    "Collection",
    "CollectionConfig",
    "CollectionInfo",
    "EngineConfig",
    "IndexConfig",
    "IndexInfo",
    "IndexManifest",
    "SearchEngine",
    "SearchParams",
    "__version__",
    "build_id",
    "build_index",
    "exceptions",
    "isa",
    "num_threads",
    "set_num_threads",
]
