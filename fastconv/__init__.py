"""fastconv: a CPU convolution engine for Python.

Compiled (Cython + OpenMP + BLAS, and Numba) kernels for 2-D convolution and
pooling, forward and backward, with torch.nn.functional's semantics on NumPy arrays.
"""
from . import _runtime_env  # noqa: F401, I001  (must run before NumPy and OpenMP load)
from . import _ext  # noqa: F401  (fails early, with build instructions, if not compiled)
from . import _heap
from ._config import (
    get_num_threads,
    get_workspace_limit,
    num_threads,
    set_num_threads,
    set_workspace_limit,
)
from ._geometry import conv2d_output_shape, pool2d_output_shape
from .algorithms import get_default_algorithm, list_algorithms, set_default_algorithm, use_algorithm
from .algorithms.tuning import AutotuneCacheWarning
from .autotune import autotune
from .functional import (
    avg_pool2d,
    avg_pool2d_backward,
    conv2d,
    conv2d_backward,
    get_pooling_backend,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    set_pooling_backend,
)
from .info import show_config

__version__ = "0.1.0"

_heap.keep_freed_memory()

__all__ = [
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
    "avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
    "conv2d_output_shape", "pool2d_output_shape",
    "list_algorithms", "get_default_algorithm", "set_default_algorithm", "use_algorithm",
    "autotune", "AutotuneCacheWarning", "set_pooling_backend", "get_pooling_backend",
    "get_num_threads", "set_num_threads", "num_threads", "get_workspace_limit",
    "set_workspace_limit", "show_config",
]
