"""Type stubs of the native module (src/api). Use the wrappers in svve_core instead."""

from os import PathLike
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt
from typing_extensions import final

__all__ = [
    "FORMAT_VERSION",
    "MAX_NORM2",
    "_Collection",
    "_Engine",
    "_Params",
    "__version__",
    "_debug_panic",
    "assign_partitions",
    "build_index",
    "isa",
    "num_threads",
    "partitions_for",
    "search_param_spec",
    "set_num_threads",
    "train_partitions",
]

__version__: str
FORMAT_VERSION: int
MAX_NORM2: float

_Column = Tuple[str, str, npt.NDArray[Any], Optional[List[str]], Optional[npt.NDArray[np.int64]]]

# PyO3 classes cannot be subclassed (stubtest checks the stubs say so).
@final
class _Params:
    def __new__(cls, **knobs: object) -> _Params: ...

@final
class _Collection:
    @staticmethod
    def create(path: str, dim: int, metric: str, config: str) -> _Collection: ...
    @staticmethod
    def open(path: str, readonly: bool = False, verify: bool = True) -> _Collection: ...
    def add(
        self,
        vectors: npt.NDArray[np.float32],
        ids: Optional[npt.NDArray[np.int64]] = None,
        attributes: Optional[List[_Column]] = None,
    ) -> npt.NDArray[np.int64]: ...
    def upsert(
        self,
        vectors: npt.NDArray[np.float32],
        ids: npt.NDArray[np.int64],
        attributes: Optional[List[_Column]] = None,
    ) -> None: ...
    def delete(self, ids: npt.NDArray[np.int64]) -> int: ...
    def commit(self) -> int: ...
    def compact(self) -> int: ...
    def refresh(self) -> bool: ...
    def search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        params: _Params,
        filter: Optional[str] = None,
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def search_stats(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        params: _Params,
        filter: Optional[str] = None,
    ) -> Tuple[Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]], List[Tuple[str, int]]]: ...
    def search_batch(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        params: _Params,
        filter: Optional[str] = None,
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def attribute_schema(self) -> List[Tuple[str, str]]: ...
    def __len__(self) -> int: ...
    def stats(
        self,
    ) -> Tuple[int, int, List[Tuple[int, int]], int, bool, str, Optional[str]]: ...
    @property
    def dim(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def path(self) -> str: ...

@final
class _Engine:
    def __new__(
        cls, path: Union[str, PathLike[str]], verify: bool = True, lock_pages: bool = False
    ) -> _Engine: ...
    def search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        params: _Params,
        filter: Optional[str] = None,
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def search_stats(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        params: _Params,
        filter: Optional[str] = None,
    ) -> Tuple[Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]], List[Tuple[str, int]]]: ...
    def search_batch(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        params: _Params,
        filter: Optional[str] = None,
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    def attribute_schema(self) -> List[Tuple[str, str]]: ...
    def check_filter(self, filter: str) -> None: ...
    def manifest_json(self) -> str: ...
    def calibration_json(self) -> Optional[str]: ...
    def recalibrate(
        self, queries: npt.NDArray[np.float32], dst: Union[str, PathLike[str]]
    ) -> str: ...
    def section_bytes(self) -> List[Tuple[str, int]]: ...
    def arrays(self) -> Dict[str, npt.NDArray[Any]]: ...
    @property
    def path(self) -> Path: ...
    @property
    def isa(self) -> str: ...

def build_index(
    path: Union[str, PathLike[str]],
    vectors: npt.NDArray[np.float32],
    ids: Optional[npt.NDArray[np.int64]],
    metric: str,
    config: str,
    progress: Optional[Callable[[int, int], object]] = None,
    attributes: Optional[List[_Column]] = None,
    centroids: Optional[npt.NDArray[np.float32]] = None,
) -> str: ...
def train_partitions(
    vectors: npt.NDArray[np.float32], metric: str, config: str
) -> npt.NDArray[np.float32]: ...
def partitions_for(n: int, configured: int) -> int: ...
def assign_partitions(
    vectors: npt.NDArray[np.float32], metric: str, centroids: npt.NDArray[np.float32]
) -> npt.NDArray[np.uint32]: ...
def search_param_spec() -> List[Dict[str, Any]]: ...
def set_num_threads(n: int) -> None: ...
def num_threads() -> int: ...
def isa() -> str: ...
def _debug_panic() -> None: ...
