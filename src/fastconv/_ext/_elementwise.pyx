"""Fused elementwise passes of fastconv.keras's training step.

NumPy evaluates `m += (g - m) * c` as three passes over memory on one core; Adam's update is
a dozen such passes (6 ms for the 3.2M weights of the Fashion-MNIST net's Dense layer). Here
each update is one pass on all threads.

Every element is computed by the operations of the NumPy expression it replaces, in the same
order and precision; the module is built without float reassociation, and for the baseline
x86-64 only (no FMA to contract into), so the results are the same bits.
"""
from cython.parallel cimport prange

from fastconv._ext._blas cimport floating
from libc.math cimport sqrt, sqrtf


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
    if grad_y.shape[0] != n or out.shape[0] != n:
        raise ValueError("relu_gradient: y, grad_y and out must have the same size")
    for i in prange(n, nogil=True, schedule="static", num_threads=max(num_threads, 1)):
        out[i] = grad_y[i] + 0 if y[i] > 0 else 0


def relu(const floating[::1] z, floating[::1] out, int num_threads):
    """out = np.maximum(z, 0): z where z > 0 or z is NaN (its sign kept), else +0. out may be z."""
    cdef Py_ssize_t i, n = z.shape[0]
    cdef floating v
    if out.shape[0] != n:
        raise ValueError("relu: z and out must have the same size")
    for i in prange(n, nogil=True, schedule="static", num_threads=max(num_threads, 1)):
        v = z[i]
        out[i] = v if (v > 0 or v != v) else 0
