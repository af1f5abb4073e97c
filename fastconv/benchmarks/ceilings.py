"""This machine's ceilings, measured in the same run as the kernels."""
import numpy as np

from .timing import median_seconds


def sgemm_gflops(size=2048, repeats=5):
    """float32 GEMM through NumPy's BLAS, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def copy_gbytes(nbytes=256 * 2**20, repeats=5):
    """Memory-copy bandwidth, bytes read plus bytes written, in GB/s."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    return 2 * nbytes / median_seconds(lambda: np.copyto(dst, src), repeats) / 1e9
