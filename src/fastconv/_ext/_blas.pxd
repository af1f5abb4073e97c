# Row-major GEMM on top of the Fortran BLAS that SciPy exports (scipy.linalg.cython_blas).
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
