"""Type stubs of the native module (src/api). Use the wrappers in svve_core instead."""

from os import PathLike
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str
FORMAT_VERSION: int

class _Params:
    def __init__(
        self,
        *,
        exact: bool,
        candidates: int,
        nprobe: int,
        expand_probes: int,
        expand_ratio: float,
        query_bits: int,
        tier1: str,
        segments: int,
        vote_top: int,
        min_votes: int,
        expansion: bool,
        epsilon: float,
    ) -> None: ...

class _Engine:
    def __init__(
        self, path: Union[str, PathLike[str]], verify: bool = True, lock_pages: bool = False
    ) -> None: ...
    def search(
        self, query: npt.NDArray[np.float32], k: int, params: _Params
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def search_stats(
        self, query: npt.NDArray[np.float32], k: int, params: _Params
    ) -> Tuple[Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]], List[Tuple[str, int]]]: ...
    def search_batch(
        self, queries: npt.NDArray[np.float32], k: int, params: _Params
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    def manifest_json(self) -> str: ...
    def section_bytes(self) -> List[Tuple[str, int]]: ...
    @property
    def path(self) -> Path: ...
    @property
    def isa(self) -> str: ...

def build_index(
    path: Union[str, PathLike[str]],
    vectors: npt.NDArray[np.float32],
    ids: Optional[npt.NDArray[np.int64]],
    metric: str,
    center: bool,
    partitions: int,
    seed: int,
    progress: Optional[Callable[[int, int], object]] = None,
) -> str: ...
def set_num_threads(n: int) -> None: ...
def num_threads() -> int: ...
def isa() -> str: ...
def _debug_panic() -> None: ...
