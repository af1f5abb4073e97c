"""Fused elementwise passes of the training step, and the bias gradient's channel sums.

NumPy evaluates `m += (g - m) * c` as three passes over memory on one core; Adam's update is
a dozen such passes (6 ms for the 3.2M weights of the Fashion-MNIST net's Dense layer). Here
each update is one pass on all threads.

Every element is computed by the operations of the NumPy expression it replaces, in the same
order and precision; the module is built without float reassociation, and for the baseline
x86-64 only (no FMA to contract into), so the results are the same bits. The bias gradient's
channel sums are not NumPy's: they accumulate in double, in a fixed order, on all threads.
"""
from cython.parallel cimport prange

from fastconv._ext._blas cimport floating
from libc.math cimport sqrt, sqrtf
from libc.stdlib cimport calloc, free


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)     # in single precision, as NumPy's float32 sqrt
    else:
        return sqrt(x)


def adam(floating[::1] value, const floating[::1] gradient, floating[::1] m, floating[::1] v,
         floating[::1] v_hat, floating alpha, floating decay_1, floating decay_2,
         floating epsilon, bint amsgrad, int num_threads):
    """Keras 3's Adam step in place, decay_i = 1 - beta_i:
        m += (g - m) * decay_1;  v += (g*g - v) * decay_2;  v_hat = max(v_hat, v) (amsgrad)
        value -= (m * alpha) / (sqrt(v or v_hat) + epsilon)
    v_hat is only touched with amsgrad (pass any array of the right size otherwise)."""
    cdef Py_ssize_t i, n = value.shape[0]
    cdef floating g, mi, vi, vh
    if gradient.shape[0] != n or m.shape[0] != n or v.shape[0] != n or (
            amsgrad and v_hat.shape[0] != n):
        raise ValueError("adam: value, gradient and the slots must have the same size")
    for i in prange(n, nogil=True, schedule="static", num_threads=max(num_threads, 1)):
        g = gradient[i]
        mi = m[i] + (g - m[i]) * decay_1
        vi = v[i] + (g * g - v[i]) * decay_2
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vh = v_hat[i]
            if vh == vh and not (vh >= vi):     # np.maximum: a NaN on either side wins
                vh = vi
            v_hat[i] = vh
            vi = vh
        value[i] = value[i] - (mi * alpha) / (_sqrt(vi) + epsilon)


def relu_gradient(const floating[::1] y, const floating[::1] grad_y, floating[::1] out,
                  int num_threads):
    """out = grad_y + 0 where y > 0, else +0: the gradient of relu given its output (the + 0
    turns -0.0 into +0.0, and a NaN gradient of a dead unit becomes 0, as np.where's)."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef floating g
    if grad_y.shape[0] != n or out.shape[0] != n:
        raise ValueError("relu_gradient: y, grad_y and out must have the same size")
    for i in prange(n, nogil=True, schedule="static", num_threads=max(num_threads, 1)):
        # grad_y is read whatever y is, so the choice compiles to a vector blend: read only
        # where y > 0, it was a branch, mispredicted on half the units (15 ms -> 1 ms here)
        g = grad_y[i] + 0
        out[i] = g if y[i] > 0 else 0


def relu(const floating[::1] z, floating[::1] out, int num_threads):
    """out = np.maximum(z, 0): z where z > 0 or z is NaN (its sign kept), else +0. out may be z."""
    cdef Py_ssize_t i, n = z.shape[0]
    cdef floating v
    if out.shape[0] != n:
        raise ValueError("relu: z and out must have the same size")
    for i in prange(n, nogil=True, schedule="static", num_threads=max(num_threads, 1)):
        v = z[i]
        out[i] = v if (v > 0 or v != v) else 0



cdef Py_ssize_t _CHUNKS = 64    # row chunks of sum_rows: fixed, so results do not depend on threads


def sum_rows(const floating[:, ::1] a, floating[::1] out, int num_threads):
    """out[k] = sum over p of a[p, k]: an NHWC bias gradient, a = grad_output as (N*H*W, K).

    Up to 64 fixed chunks of rows are summed in double on the threads, then the chunks in
    order: the same bits on any thread count."""
    cdef Py_ssize_t P = a.shape[0], K = a.shape[1], chunks = min(_CHUNKS, max(P, 1))
    cdef Py_ssize_t c, p, k, p0, p1
    cdef double *partial
    cdef double total
    if out.shape[0] != K:
        raise ValueError("sum_rows: out must have a.shape[1] elements")
    partial = <double *> calloc(chunks * K, sizeof(double))
    if partial == NULL:
        raise MemoryError()
    for c in prange(chunks, nogil=True, schedule="static", num_threads=max(num_threads, 1)):
        p0 = P * c // chunks
        p1 = P * (c + 1) // chunks
        for p in range(p0, p1):
            for k in range(K):
                partial[c * K + k] += a[p, k]
    for k in range(K):
        total = 0
        for c in range(chunks):
            total = total + partial[c * K + k]
        out[k] = <floating> total
    free(partial)


def sum_planes(const floating[:, :, ::1] a, floating[::1] out, int num_threads):
    """out[k] = sum over n, p of a[n, k, p]: an NCHW bias gradient, a as (N, K, H*W).

    Each k is summed in double by one thread, in 8 interleaved partial sums (independent
    adds, so they vectorise) combined in order: the same bits on any thread count."""
    cdef Py_ssize_t N = a.shape[0], K = a.shape[1], P = a.shape[2], n, k
    if out.shape[0] != K:
        raise ValueError("sum_planes: out must have a.shape[1] elements")
    for k in prange(K, nogil=True, schedule="static", num_threads=max(num_threads, 1)):
        out[k] = <floating> _plane_sums(a, N, k, P)


cdef double _plane_sums(const floating[:, :, ::1] a, Py_ssize_t N, Py_ssize_t k,
                        Py_ssize_t P) noexcept nogil:
    cdef double lanes[8]
    cdef Py_ssize_t n, p, l, P8 = P - P % 8
    cdef double total = 0
    cdef const floating *row
    for l in range(8):
        lanes[l] = 0
    for n in range(N):
        row = &a[n, k, 0]
        for p in range(0, P8, 8):
            for l in range(8):
                lanes[l] += row[p + l]
        for p in range(P8, P):
            lanes[p - P8] += row[p]
    for l in range(8):
        total = total + lanes[l]
    return total
