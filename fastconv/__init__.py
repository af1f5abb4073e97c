"""fastconv: a CPU convolution engine for Python.

Compiled (Cython + OpenMP + BLAS) kernels for 2-D convolution and pooling, forward
and backward, with torch.nn.functional's semantics on NumPy arrays.
"""
from . import _ext  # noqa: F401  (fails early, with build instructions, if not compiled)
from ._config import get_num_threads, get_workspace_limit, set_workspace_limit
from ._geometry import conv2d_output_shape, pool2d_output_shape
from .algorithms import list_algorithms
from .functional import (
    avg_pool2d,
    avg_pool2d_backward,
    conv2d,
    conv2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

__version__ = "0.1.0"

__all__ = [
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
    "avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
    "conv2d_output_shape", "pool2d_output_shape", "list_algorithms", "get_num_threads",
    "get_workspace_limit", "set_workspace_limit",
]
