"""Matrix products for fastconv.keras's dense layers, through SciPy's BLAS.

fastconv loads SciPy's OpenBLAS itself (its kernels call it) after setting
OPENBLAS_THREAD_TIMEOUT, so that library's idle threads sleep at once. NumPy's OpenBLAS is
loaded before fastconv in most scripts (`import numpy` comes first), so its idle threads
spin for about 0.1 s after every product and take the cores the next convolution needs: a
Fashion-MNIST training step with NumPy's matmul for its dense layers ran its convolutions
1.7-2x slower. Calls share fastconv's BLAS thread count (see _config.kernel_blas_threads),
so concurrent calls stay bitwise equal to sequential ones.
"""
import numpy as np
from scipy.linalg import blas

from . import _config


def matmul(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) for 2-D arrays, op transposing when asked."""
    if (a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype
            or a.dtype not in (np.float32, np.float64) or 0 in a.shape + b.shape):
        return (a.T if trans_a else a) @ (b.T if trans_b else b)
    gemm = blas.sgemm if a.dtype == np.float32 else blas.dgemm
    # C = op(a) op(b) is C^T = op(b)^T op(a)^T, and a C-ordered array is its own transpose
    # in Fortran order: BLAS reads both in place and writes C^T in Fortran order, i.e. C.
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    with _config.kernel_blas_threads(_config.apply_to_thread_pools()):
        return gemm(1.0, b.T, a.T, trans_a=int(trans_b), trans_b=int(trans_a)).T
