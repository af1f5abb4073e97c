"""Analytic gradients against central finite differences, in float64."""
import numpy as np
import pytest

import fastconv
from fastconv.testing import CONV_CASES, POOL_CASES, conv_inputs, pool_input
from fastconv.testing.gradcheck import numeric_gradient

GRAD_CASES = [c for c in CONV_CASES if c.id in (
    "strided", "dilated_strided", "asymmetric_padding", "same_stride2", "grouped",
    "depthwise_multiplier", "kernel_1x1_strided_padded", "non_square_kernel")]


def _numeric_gradient(loss, array, eps=1e-6):
    return numeric_gradient(loss, array, eps).reshape(array.shape)


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_conv2d_gradients(case, algorithm, data_format):
    x, weight, bias = conv_inputs(case, np.float64, data_format, seed=11)
    shape = fastconv.conv2d_output_shape(x.shape, weight.shape, data_format=data_format, **case.kwargs)
    upstream = np.random.default_rng(12).standard_normal(shape)

    def loss():
        out = fastconv.conv2d(x, weight, bias, data_format=data_format, algorithm=algorithm, **case.kwargs)
        return float(np.sum(out * upstream))

    gx, gw, gb = fastconv.conv2d_backward(upstream, x, weight, data_format=data_format,
                                          algorithm=algorithm, **case.kwargs)
    np.testing.assert_allclose(gx, _numeric_gradient(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, _numeric_gradient(loss, weight), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gb, _numeric_gradient(loss, bias), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", POOL_CASES[:6], ids=lambda c: c.id)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_pooling_gradients(case, data_format):
    # Distinct, well-separated values keep max pooling differentiable at x.
    rng = np.random.default_rng(2)
    x = pool_input(case, np.float64, data_format)
    x = rng.permutation(x.size).reshape(x.shape).astype(np.float64) * 0.01
    kw = dict(case.kwargs, data_format=data_format)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    upstream = rng.standard_normal(out.shape)
    numeric = _numeric_gradient(lambda: float(np.sum(fastconv.max_pool2d(x, **kw) * upstream)), x, 1e-4)
    np.testing.assert_allclose(fastconv.max_pool2d_backward(upstream, x, idx, **kw), numeric, atol=1e-8)
    for include in (True, False):
        akw = dict(kw, count_include_pad=include)
        out = fastconv.avg_pool2d(x, **akw)
        numeric = _numeric_gradient(lambda: float(np.sum(fastconv.avg_pool2d(x, **akw) * upstream)), x)
        np.testing.assert_allclose(fastconv.avg_pool2d_backward(upstream, x, **akw), numeric,
                                   rtol=1e-6, atol=1e-8)
