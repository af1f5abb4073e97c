"""Central finite differences: the check every analytic gradient is held to (in float64)."""
import numpy as np


def numeric_gradient(f, array, eps=1e-6, indices=None):
    """d f() / d array.flat[i] for i in `indices` (all entries by default), by central differences.

    `array` is perturbed in place, one entry at a time, and restored. Returns the
    derivatives as a float64 array in the order of `indices`.
    """
    flat = array.reshape(-1)
    indices = range(flat.size) if indices is None else indices
    grads = []
    for i in indices:
        saved = flat[i]
        flat[i] = saved + eps
        plus = f()
        flat[i] = saved - eps
        minus = f()
        flat[i] = saved
        grads.append((plus - minus) / (2 * eps))
    return np.asarray(grads, dtype=np.float64)
