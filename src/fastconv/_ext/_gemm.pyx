"""A row-major GEMM on OpenMP's threads, each calling single-threaded BLAS on its share.

fastconv.keras's Dense layers multiply through here, so a training step runs on one pool of
threads: OpenMP's. With OpenBLAS's own threads doing the products, each pool's idle workers
either spin and take the cores the other pool needs (OpenMP spins for milliseconds by
default), or sleep and are woken, for tens of microseconds, at every hand-over.
"""
from fastconv._ext._blas cimport floating, gemm_on


def gemm(const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] c,
         bint trans_a, bint trans_b, int num_threads):
    """c := op(a) @ op(b), op transposing when asked; c is (m, n), the product's shape.

    The caller keeps BLAS at one thread meanwhile (fastconv._matmul).
    """
    cdef Py_ssize_t m = c.shape[0], n = c.shape[1]
    cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
    if ((a.shape[1] if trans_a else a.shape[0]) != m or (b.shape[0] if trans_b else b.shape[1]) != n
            or (b.shape[1] if trans_b else b.shape[0]) != k):
        raise ValueError(f"gemm: op(a) @ op(b) does not fit c. Received: a {a.shape[0]}x{a.shape[1]}"
                         f" (trans_a={trans_a}), b {b.shape[0]}x{b.shape[1]} (trans_b={trans_b}),"
                         f" c {m}x{n}")
    if m == 0 or n == 0:
        return
    if k == 0:
        c[:, :] = 0
        return
    with nogil:
        gemm_on(num_threads, trans_a, trans_b, m, n, k, &a[0, 0], a.shape[1], &b[0, 0],
                b.shape[1], 0, &c[0, 0], c.shape[1])
