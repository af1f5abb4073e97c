"""conv2d_backward's bias gradient: channel sums in double, the same bits on any thread count."""
import numpy as np
import pytest

import fastconv
from fastconv import _ext


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", [(3, 7, 5, 9), (64, 16, 11, 13), (1, 1, 1, 1)])
def test_sums_in_double_on_any_thread_count(shape, data_format):
    rng = np.random.default_rng(0)
    n, k, h, w = shape
    x = rng.standard_normal((n, 2, h + 2, w + 2)).astype(np.float32)
    weight = rng.standard_normal((k, 2, 3, 3)).astype(np.float32)
    grad_output = (rng.standard_normal((n, k, h, w)) * 1e3 + 1e4).astype(np.float32)
    axes = (0, 2, 3)
    if data_format == "NHWC":
        x, grad_output = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in (x, grad_output))
        weight, axes = np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), (0, 1, 2)
    exact = grad_output.astype(np.float64).sum(axis=axes)
    results = []
    for threads in (1, 2, 3):
        with fastconv.num_threads(threads):
            results.append(fastconv.conv2d_backward(grad_output, x, weight, needs=("bias",),
                                                    data_format=data_format)[2])
    for got in results:
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, results[0])
        # one rounding of the double sum: closer than float32 accumulation gets
        np.testing.assert_allclose(got, exact, rtol=2 * np.finfo(np.float32).eps)


def test_empty_batch_and_bad_sizes():
    out = np.empty(4, np.float32)
    _ext.elementwise.sum_rows(np.zeros((0, 4), np.float32), out, 2)
    np.testing.assert_array_equal(out, 0)
    _ext.elementwise.sum_planes(np.zeros((0, 4, 9), np.float32), out, 2)
    np.testing.assert_array_equal(out, 0)
    with pytest.raises(ValueError, match="out must have"):
        _ext.elementwise.sum_rows(np.zeros((3, 5), np.float32), out, 1)
