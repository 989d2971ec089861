"""Type stubs for the compiled extension fastpool._core (private API)."""

from typing import List, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

Triple = Tuple[int, int, int]

class Geometry:
    def __init__(
        self,
        batch: int,
        channels: int,
        in_sizes: Triple,
        kernel: Triple,
        stride: Triple,
        dilation: Triple,
        pad_before: Triple,
        pad_after: Triple,
        ceil_mode: bool,
        channels_last: bool,
    ) -> None: ...
    @property
    def batch(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def channels_last(self) -> bool: ...
    @property
    def in_sizes(self) -> Triple: ...
    @property
    def out_sizes(self) -> Triple: ...
    @property
    def in_plane(self) -> int: ...
    @property
    def pad_before(self) -> Triple: ...
    @property
    def pad_after(self) -> Triple: ...

def same_padding(in_size: int, kernel: int, stride: int, dilation: int, lower: bool) -> Tuple[int, int]: ...
def max_pool_forward(
    x: npt.NDArray[np.floating], out: npt.NDArray[np.floating],
    indices: Optional[npt.NDArray[np.int64]], geometry: Geometry, threads: int,
) -> None: ...
def max_pool_backward(
    grad_output: npt.NDArray[np.floating], x: Optional[npt.NDArray[np.floating]],
    indices: Optional[npt.NDArray[np.int64]], out: npt.NDArray[np.floating],
    geometry: Geometry, threads: int,
) -> int: ...
def avg_pool_forward(
    x: npt.NDArray[np.floating], out: npt.NDArray[np.floating], geometry: Geometry,
    count_include_pad: bool, divisor_override: int, threads: int,
) -> None: ...
def avg_pool_backward(
    grad_output: npt.NDArray[np.floating], out: npt.NDArray[np.floating], geometry: Geometry,
    count_include_pad: bool, divisor_override: int, threads: int,
) -> None: ...

class Bins:
    """Bins of one output grid (one C++ AxisBins per spatial axis)."""

    @staticmethod
    def adaptive(in_sizes: Triple, out_sizes: Triple) -> Bins: ...
    @staticmethod
    def window(geometry: Geometry, count_include_pad: bool) -> Bins: ...
    @property
    def in_sizes(self) -> Triple: ...
    @property
    def out_sizes(self) -> Triple: ...

# A level: (bins, values as (N, C, D, H, W) with any non-negative strides, int64 indices or None).
Level = Tuple[Bins, npt.NDArray[np.floating], Optional[npt.NDArray[np.int64]]]

def bin_forward(
    x: npt.NDArray[np.floating], channels_last: bool, op: str, levels: List[Level],
    p: float, p_channel: Optional[npt.NDArray[np.floating]], eps: float, seed: int, threads: int,
) -> int: ...
def bin_backward(
    x: Optional[npt.NDArray[np.floating]], out: npt.NDArray[np.floating], channels_last: bool, op: str,
    levels: List[Level], p: float, p_channel: Optional[npt.NDArray[np.floating]], eps: float, seed: int,
    grad_p: Optional[npt.NDArray[np.floating]], threads: int,
) -> int: ...
class LineScan:
    from_end: LineScan
    from_start: LineScan
    whole: LineScan
def line_max_forward(
    x: npt.NDArray[np.floating], add: Optional[npt.NDArray[np.floating]], out: npt.NDArray[np.floating],
    axis: int, scan: LineScan, channels_last: bool, threads: int,
) -> None: ...
def line_max_backward(
    grad_output: npt.NDArray[np.floating], x: npt.NDArray[np.floating],
    add: Optional[npt.NDArray[np.floating]], out: npt.NDArray[np.floating],
    axis: int, scan: LineScan, channels_last: bool, threads: int,
) -> None: ...
def center_max_forward(
    x: npt.NDArray[np.floating], x2: npt.NDArray[np.floating], out: npt.NDArray[np.floating],
    channels_last: bool, threads: int,
) -> None: ...
def unpool_default_size(in_size: int, kernel_size: int, stride: int, padding: int) -> int: ...
def max_unpool_forward(
    x: npt.NDArray[np.floating], indices: npt.NDArray[np.int64], out: npt.NDArray[np.floating],
    channels_last: bool, threads: int,
) -> int: ...
def scatter_add(
    x: npt.NDArray[np.floating], indices: npt.NDArray[np.int64], out: npt.NDArray[np.floating],
    channels_last: bool, skip_minus_one: bool, threads: int,
) -> int: ...
def max_unpool_backward(
    grad_output: npt.NDArray[np.floating], indices: npt.NDArray[np.int64], out: npt.NDArray[np.floating],
    channels_last: bool, threads: int,
) -> int: ...
def hopfield_forward(
    x: npt.NDArray[np.floating], queries: npt.NDArray[np.floating], beta: float, out: npt.NDArray[np.floating],
    channels_last: bool, threads: int,
) -> None: ...
def hopfield_backward(
    x: npt.NDArray[np.floating], queries: npt.NDArray[np.floating], beta: float,
    grad_output: npt.NDArray[np.floating], out: npt.NDArray[np.floating], grad_queries: npt.NDArray[np.floating],
    grad_beta: npt.NDArray[np.floating], channels_last: bool, threads: int,
) -> None: ...
def get_simd() -> str: ...
def available_simd() -> List[str]: ...
def compiled_simd() -> List[str]: ...
def set_simd(name: str) -> str: ...
def have_openmp() -> bool: ...
def empty(shape: List[int], dtype: np.dtype) -> npt.NDArray[np.generic]: ...
def trim_buffers() -> int: ...
def cached_buffer_bytes() -> int: ...
def default_num_threads() -> int: ...
def fractional_max_forward(
    x: npt.NDArray[np.floating], samples: npt.NDArray[np.floating], out: npt.NDArray[np.floating],
    indices: Optional[npt.NDArray[np.int64]], kernel_size: Triple, rank: int, channels_last: bool, threads: int,
) -> None: ...
