"""Winograd F(2x2, 5x5): 5x5 layers with 16 or more channels per group, the forward (and the
input gradient, the forward of the transposed convolution) and the weight gradient."""
import numpy as np
import pytest

import fastconv
from fastconv.testing.tolerances import assert_close

CASES = [
    # (N, C, H, W, K, groups, padding)
    (2, 16, 9, 9, 8, 1, 0),                   # odd output (5x5): edge tiles on both sides
    (3, 32, 14, 14, 64, 1, 2),                # fmnist_conv2
    (1, 20, 7, 12, 24, 1, "same"),
    (2, 17, 8, 6, 5, 1, ((0, 3), (2, 1))),    # asymmetric, output wider than the input
    (2, 32, 10, 11, 16, 2, 1),                # groups of 16
    (1, 48, 5, 5, 48, 3, 0),                  # a single output pixel per sample
]


def _inputs(case, dtype, data_format, seed=0):
    N, C, H, W, K, groups, _ = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // groups, 5, 5)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    if data_format == "NHWC":
        x, w = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    return x, w, b


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_and_gradients_match_the_reference(case, data_format, dtype):
    x, w, b = _inputs(case, dtype, data_format)
    kwargs = dict(padding=case[6], groups=case[5], data_format=data_format)
    reduction = x.shape[1 if data_format == "NCHW" else 3] // case[5] * 25
    out = fastconv.conv2d(x, w, b, algorithm="winograd", **kwargs)
    assert_close(out, fastconv.conv2d(x.astype(np.float64), w.astype(np.float64),
                                      b.astype(np.float64), algorithm="reference", **kwargs),
                 dtype, reduction, "forward")
    g = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    grad_input = fastconv.conv2d_backward(g, x, w, needs=["input"], algorithm="winograd", **kwargs)[0]
    expected = fastconv.conv2d_backward(g.astype(np.float64), x.astype(np.float64),
                                         w.astype(np.float64), needs=["input"],
                                         algorithm="reference", **kwargs)[0]
    assert_close(grad_input, expected, dtype, case[4] // case[5] * 25, "grad_input")
    grad_weight = fastconv.conv2d_backward(g, x, w, needs=["weight"], algorithm="winograd",
                                           **kwargs)[1]
    expected = fastconv.conv2d_backward(g.astype(np.float64), x.astype(np.float64),
                                        w.astype(np.float64), needs=["weight"],
                                        algorithm="reference", **kwargs)[1]
    # each element sums N*oH*oW products, and its 6x6 transforms add rounding of their own
    # whatever that count (a single product in the last case)
    assert_close(grad_weight, expected, dtype, max(g.size // case[4], 36), "grad_weight")


def test_float32_error_stays_near_a_direct_sums():
    """F(2x2, 5x5)'s transforms scale by up to 5 and 1/24: its float32 error is a few times
    a direct sum's, far inside the test tolerance; a wrong transform would be O(1)."""
    x, w, b = _inputs(CASES[1], np.float32, "NHWC")
    exact = fastconv.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                            padding=2, data_format="NHWC", algorithm="reference")
    errors = {a: np.sqrt(np.mean((fastconv.conv2d(x, w, b, padding=2, data_format="NHWC",
                                                  algorithm=a) - exact) ** 2))
              for a in ("winograd", "direct")}
    assert errors["winograd"] < 8 * errors["direct"], errors


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_infinities_and_nan_land_where_a_direct_sum_puts_them(data_format, bad):
    x, w, b = _inputs(CASES[0], np.float64, data_format)
    x[(1, 3, 4, 2) if data_format == "NCHW" else (1, 4, 2, 3)] = bad
    out = fastconv.conv2d(x, w, b, data_format=data_format, algorithm="winograd")
    expected = fastconv.conv2d(x, w, b, data_format=data_format, algorithm="reference")
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_two_threads_match_one_up_to_rounding_and_repeat_bitwise(data_format):
    x, w, b = _inputs(CASES[1], np.float32, data_format)
    kwargs = dict(padding=2, data_format=data_format, algorithm="winograd")
    with fastconv.num_threads(1):
        one = fastconv.conv2d(x, w, b, **kwargs)
    with fastconv.num_threads(2):
        two, again = fastconv.conv2d(x, w, b, **kwargs), fastconv.conv2d(x, w, b, **kwargs)
    np.testing.assert_array_equal(two, again)
    assert_close(two, one, np.float32, 32 * 25)     # blocks differ in size: BLAS rounds apart
