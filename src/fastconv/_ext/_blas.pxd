# Row-major GEMM on top of the Fortran BLAS that SciPy exports (scipy.linalg.cython_blas).
from cython.parallel cimport parallel, threadid
from scipy.linalg.cython_blas cimport dgemm, sgemm

ctypedef fused floating:
    float
    double


cdef inline void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      const floating *a, Py_ssize_t lda, const floating *b, Py_ssize_t ldb,
                      floating beta, floating *c, Py_ssize_t ldc) noexcept nogil:
    """Row-major C (m, n) := op(A) @ op(B) + beta * C (BLAS called as C^T = op(B)^T op(A)^T).

    Sizes must fit in int (the callers tile to make sure).
    """
    cdef char *ta = b"T" if trans_a else b"N"
    cdef char *tb = b"T" if trans_b else b"N"
    cdef int mi = <int>m, ni = <int>n, ki = <int>k
    cdef int la = <int>lda, lb = <int>ldb, lc = <int>ldc
    cdef floating one = 1
    if m <= 0 or n <= 0 or k <= 0:
        return
    if floating is float:
        sgemm(tb, ta, &ni, &mi, &ki, &one, <float *>b, &lb, <float *>a, &la, &beta, c, &lc)
    else:
        dgemm(tb, ta, &ni, &mi, &ki, &one, <double *>b, &lb, <double *>a, &la, &beta, c, &lc)


cdef inline void gemm_on(int nt, bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                         Py_ssize_t k, const floating *a, Py_ssize_t lda, const floating *b,
                         Py_ssize_t ldb, floating beta, floating *c, Py_ssize_t ldc) noexcept nogil:
    """gemm on nt OpenMP threads (called outside any parallel region, BLAS at one thread): C's
    rows, or its columns when it has more of them, cut into one block per thread on
    16-element boundaries. OpenBLAS picks its kernels by the sizes it is given, so the last
    bits depend on the blocks, as a threaded BLAS's depend on its thread count."""
    cdef bint by_rows = m >= n
    cdef Py_ssize_t extent = m if by_rows else n
    cdef Py_ssize_t share = ((extent + nt - 1) // nt + 15) // 16 * 16 if nt > 1 else extent
    cdef Py_ssize_t lo = 0, hi = 0
    cdef int t = 0
    if nt <= 1 or extent < 32:
        gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc)
        return
    with parallel(num_threads=nt):
        t = threadid()
        lo = t * share
        hi = min(lo + share, extent)
        if lo < hi and by_rows:     # rows [lo, hi) of op(a) and of c
            gemm(trans_a, trans_b, hi - lo, n, k, a + (lo if trans_a else lo * lda), lda,
                 b, ldb, beta, c + lo * ldc, ldc)
        elif lo < hi:               # columns [lo, hi) of op(b) and of c
            gemm(trans_a, trans_b, m, hi - lo, k, a, lda,
                 b + (lo * ldb if trans_b else lo), ldb, beta, c + lo, ldc)
