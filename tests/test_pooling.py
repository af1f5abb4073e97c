"""Compiled pooling kernels against the NumPy reference, both layouts and dtypes."""
import numpy as np
import pytest

import fastconv
from fastconv._geometry import pool2d_geometry
from fastconv.algorithms import reference
from fastconv.testing import POOL_CASES, pool_input

CASES = pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)


@pytest.fixture(autouse=True, params=["cython", "numba"])
def pooling_backend(request):
    """Every pooling test runs on both kernel sets."""
    fastconv.set_pooling_backend(request.param)
    yield request.param
    fastconv.set_pooling_backend("cython")


def _geometry(case, x, data_format, dilation=None):
    return pool2d_geometry(x.shape, case.kernel, case.stride, case.padding,
                           case.dilation if dilation is None else dilation, case.ceil_mode, data_format)


@CASES
def test_max_pool2d_matches_reference(case, dtype, data_format):
    x = pool_input(case, dtype, data_format)
    kw = dict(case.kwargs, dilation=case.dilation, data_format=data_format)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    ref_out, ref_idx = reference.max_pool2d_forward(x, _geometry(case, x, data_format))
    assert out.dtype == dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)
    go = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    grad = fastconv.max_pool2d_backward(go, x, idx, **kw)
    expected = reference.max_pool2d_backward(go.astype(np.float64), ref_idx, _geometry(case, x, data_format))
    np.testing.assert_allclose(grad, expected, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("case", [c for c in POOL_CASES if c.dilation == 1], ids=lambda c: c.id)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_matches_reference(case, dtype, data_format, count_include_pad):
    x = pool_input(case, dtype, data_format)
    kw = dict(case.kwargs, count_include_pad=count_include_pad, data_format=data_format)
    geom = _geometry(case, x, data_format)
    include = count_include_pad and not isinstance(case.padding, str)
    out = fastconv.avg_pool2d(x, **kw)
    assert out.dtype == dtype
    rtol = 8 * np.finfo(dtype).eps * case.kernel if isinstance(case.kernel, int) else 1e-5
    np.testing.assert_allclose(out, reference.avg_pool2d_forward(x.astype(np.float64), geom, include),
                               rtol=rtol, atol=rtol)
    go = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    np.testing.assert_allclose(fastconv.avg_pool2d_backward(go, x, **kw),
                               reference.avg_pool2d_backward(go.astype(np.float64), geom, include),
                               rtol=rtol, atol=rtol)


def test_same_pooling_keeps_ceil_size_and_averages_inside_only():
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    out = fastconv.avg_pool2d(x, 2, 2, padding="same")
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, 2, 2] == x[0, 0, 4, 4]  # a corner window holding one real pixel
    assert fastconv.max_pool2d(x, 2, 2, padding="same")[0, 0, 2, 2] == 24


def test_ties_go_to_the_first_maximum(data_format):
    x = np.ones((1, 1, 4, 4))
    if data_format == "NHWC":
        x = x.transpose(0, 2, 3, 1).copy()
    _, idx = fastconv.max_pool2d(x, 2, return_indices=True, data_format=data_format)
    np.testing.assert_array_equal(idx.reshape(2, 2), [[0, 2], [8, 10]])


def test_nan_propagates(data_format):
    x = np.zeros((1, 4, 4, 1)) if data_format == "NHWC" else np.zeros((1, 1, 4, 4))
    x.reshape(-1)[5] = np.nan
    out = fastconv.max_pool2d(x, 2, data_format=data_format)
    assert np.isnan(out.reshape(-1)[0]) and not np.isnan(out.reshape(-1)[1:]).any()
    assert np.isnan(fastconv.avg_pool2d(x, 2, data_format=data_format).reshape(-1)[0])


def test_empty_batch_pooling(data_format):
    x = np.zeros((0, 3, 8, 8), np.float32)
    if data_format == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    out, idx = fastconv.max_pool2d(x, 2, return_indices=True, data_format=data_format)
    assert out.shape[0] == 0
    assert fastconv.max_pool2d_backward(out, x, idx, 2, data_format=data_format).shape == x.shape
    assert fastconv.avg_pool2d_backward(out, x, 2, data_format=data_format).shape == x.shape


def test_global_avg_pool2d_and_backward(data_format):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    axes = (2, 3)
    if data_format == "NHWC":
        x, axes = x.transpose(0, 2, 3, 1).copy(), (1, 2)
    out = fastconv.global_avg_pool2d(x, data_format=data_format)
    assert out.shape == (2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, x.mean(axis=axes), rtol=1e-6)
    grad = fastconv.global_avg_pool2d_backward(np.ones((2, 3), np.float32), x, data_format=data_format)
    assert grad.shape == x.shape
    np.testing.assert_allclose(grad, 1 / 20)
    keep = fastconv.global_avg_pool2d(x, data_format=data_format, keepdims=True)
    np.testing.assert_array_equal(
        fastconv.global_avg_pool2d_backward(np.ones_like(keep), x, data_format=data_format), grad)


def test_unknown_pooling_backend():
    with pytest.raises(ValueError, match="Received: name='cuda'"):
        fastconv.set_pooling_backend("cuda")
