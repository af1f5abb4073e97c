"""Matrix products for fastconv.keras's dense layers: SciPy's BLAS on OpenMP's threads.

fastconv loads SciPy's OpenBLAS itself (its kernels call it). NumPy's OpenBLAS is loaded
before fastconv in most scripts (`import numpy` comes first), so its idle threads spin for
about 0.1 s after every product and take the cores the next convolution needs: a
Fashion-MNIST training step with NumPy's matmul for its dense layers ran its convolutions
1.7-2x slower. Here each OpenMP thread multiplies its block of rows (or columns) with
single-threaded BLAS (_ext.gemm), so a training step runs on the one pool of threads the
convolutions use, and no BLAS thread is ever woken.
"""
import numpy as np

from . import _aligned, _config, _ext


def matmul(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) for 2-D arrays, op transposing when asked."""
    if (a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype
            or a.dtype not in (np.float32, np.float64) or 0 in a.shape + b.shape):
        return (a.T if trans_a else a) @ (b.T if trans_b else b)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    m, k = a.shape[::-1] if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    if (b.shape[1] if trans_b else b.shape[0]) != k:
        raise ValueError(f"matmul: op(a) is {(m, k)} and op(b) is "
                         f"{(b.shape[::-1] if trans_b else b.shape)}; their inner sizes differ")
    out = _aligned.empty((m, n), a.dtype)
    threads = _config.threads_for(2 * m * n * k, _config.SERIAL_FLOPS)
    with _config.kernel_blas_threads(1):
        _ext.gemm.gemm(a, b, out, trans_a, trans_b, threads)
    return out
