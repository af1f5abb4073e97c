"""How close an algorithm must come to the float64 reference.

Rounding error of a sum of L products grows with L; we allow a few ulps of the
dtype per term, relative to the size of the result, so the bound is tight for
float64 and honest for float32.
"""
import numpy as np


def tolerance(dtype, reduction_length):
    eps = np.finfo(dtype).eps
    return 4.0 * eps * max(reduction_length, 1)


def assert_close(actual, expected, dtype, reduction_length, name="result"):
    """Assert max |actual - expected| <= tolerance * max(1, max |expected|)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    if actual.size == 0:
        return
    scale = max(1.0, float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    bound = tolerance(dtype, reduction_length) * scale
    assert error <= bound, f"{name}: max error {error:.3g} exceeds {bound:.3g} (L={reduction_length})"
