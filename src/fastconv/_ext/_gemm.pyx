"""A row-major GEMM on OpenMP's threads, each calling single-threaded BLAS on its share.

fastconv.keras's Dense layers multiply through here, so a training step runs on one pool of
threads: OpenMP's. With OpenBLAS's own threads doing the products, each pool's idle workers
either spin and take the cores the other pool needs (OpenMP spins for milliseconds by
default), or sleep and are woken, for tens of microseconds, at every hand-over.

The rows of C (or its columns, when it has more of them) are cut into one block per thread,
on 16-element boundaries. OpenBLAS picks its kernels by the sizes it is given, so the last
bits depend on the blocks, as a threaded BLAS's depend on its thread count: the same thread
count gives the same bits.
"""
from cython.parallel cimport parallel, threadid

from fastconv._ext._blas cimport floating, gemm as _gemm

cdef Py_ssize_t _ALIGN = 16     # block edges on 64-byte boundaries of float32 rows


def gemm(const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] c,
         bint trans_a, bint trans_b, int num_threads):
    """c := op(a) @ op(b), op transposing when asked; c is (m, n), the product's shape.

    The caller checks the shapes (fastconv._matmul) and keeps BLAS at one thread meanwhile.
    """
    cdef Py_ssize_t m = c.shape[0], n = c.shape[1]
    cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
    cdef Py_ssize_t lda = a.shape[1], ldb = b.shape[1], ldc = c.shape[1]
    cdef const floating *pa = &a[0, 0]
    cdef const floating *pb = &b[0, 0]
    cdef floating *pc = &c[0, 0]
    cdef bint by_rows = m >= n
    cdef Py_ssize_t extent = m if by_rows else n
    cdef Py_ssize_t share = (extent + num_threads - 1) // num_threads
    cdef Py_ssize_t lo = 0, hi = 0, t = 0
    cdef int nt = num_threads if num_threads > 1 and extent >= 2 * _ALIGN else 1
    share = (share + _ALIGN - 1) // _ALIGN * _ALIGN
    with nogil, parallel(num_threads=nt):
        t = threadid()
        lo = t * share if nt > 1 else 0
        hi = min(lo + share, extent) if nt > 1 else extent
        if lo < hi and by_rows:     # rows [lo, hi) of op(a) and of c
            _gemm(trans_a, trans_b, hi - lo, n, k, pa + (lo if trans_a else lo * lda), lda,
                  pb, ldb, 0, pc + lo * ldc, ldc)
        elif lo < hi:               # columns [lo, hi) of op(b) and of c
            _gemm(trans_a, trans_b, m, hi - lo, k, pa, lda,
                  pb + (lo * ldb if trans_b else lo), ldb, 0, pc + lo, ldc)
