"""fastpool: fast CPU pooling on NumPy arrays, forward and backward.

See :mod:`fastpool.pooling` for the geometry conventions shared by every operator.
"""

from ._config import (
    available_simd,
    get_num_threads,
    get_simd,
    set_num_threads,
    set_simd,
    show_config,
    simd,
    threads,
    trim_buffers,
)
from ._config import _apply_environment
from ._version import __version__
from .pooling import (
    avg_pool,
    avg_pool1d,
    avg_pool1d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool3d,
    avg_pool3d_backward,
    avg_pool_backward,
    max_pool,
    max_pool1d,
    max_pool1d_backward,
    max_pool2d,
    max_pool2d_backward,
    max_pool3d,
    max_pool3d_backward,
    max_pool_backward,
)

_apply_environment()

__all__ = [
    "__version__",
    "available_simd",
    "avg_pool",
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "avg_pool3d",
    "avg_pool3d_backward",
    "avg_pool_backward",
    "get_num_threads",
    "get_simd",
    "max_pool",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_pool3d",
    "max_pool3d_backward",
    "max_pool_backward",
    "set_num_threads",
    "set_simd",
    "show_config",
    "simd",
    "threads",
    "trim_buffers",
]
