"""The direct kernels' depthwise and few-input-channel paths against the float64 reference.

These paths vectorise over channels (NHWC) or whole planes (NCHW), so the shapes here
cover channel counts below, at and between vector widths, inputs that are not vector
aligned, strides, dilation, asymmetric padding and padding wider than the input; and the
results must not depend on the thread count at all (bitwise).
"""
import numpy as np
import pytest

import fastconv
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import reference
from fastconv.testing.tolerances import assert_close

# (N, C, H, W, K, kernel, kwargs)
DEPTHWISE = [
    (2, 1, 7, 9, 1, (3, 3), dict(padding=1, groups=1)),
    (2, 7, 6, 5, 7, (3, 3), dict(padding=1, groups=7)),
    (1, 16, 9, 8, 16, (3, 3), dict(padding=1, groups=16)),
    (2, 19, 8, 11, 19, (3, 3), dict(padding=1, groups=19)),
    (1, 40, 6, 7, 40, (5, 5), dict(padding=2, groups=40)),
    (2, 33, 9, 10, 33, (3, 3), dict(stride=2, padding=1, groups=33)),
    (1, 24, 9, 9, 24, (3, 3), dict(dilation=2, padding=2, groups=24)),
    (2, 20, 6, 7, 20, (3, 2), dict(padding=((0, 2), (1, 0)), groups=20)),
    (1, 18, 3, 2, 18, (3, 3), dict(padding=4, groups=18)),
    (1, 17, 5, 6, 17, (1, 3), dict(stride=(1, 2), padding=(0, 1), groups=17)),
    (2, 21, 7, 7, 42, (3, 3), dict(padding=1, groups=21)),
    # NHWC rows of 8 or more interior pixels (_dw_rows): runs that are not whole blocks,
    # pixel chunks with a last one of under 8, 1-3 valid kernel rows, stride 2, dilated
    # rows, channel tails and (misaligned) heads
    (2, 16, 5, 20, 16, (3, 3), dict(padding=1, groups=16)),
    (1, 70, 4, 29, 70, (3, 3), dict(padding=1, groups=70)),
    (1, 200, 3, 40, 200, (3, 3), dict(padding=1, groups=200)),
    (2, 33, 6, 37, 33, (3, 3), dict(stride=2, padding=1, groups=33)),
    (1, 20, 3, 30, 20, (3, 3), dict(padding=2, groups=20)),
    (1, 24, 9, 22, 24, (3, 3), dict(dilation=(2, 1), padding=(2, 1), groups=24)),
    (1, 18, 6, 25, 18, (3, 3), dict(stride=(1, 2), padding=((1, 0), (0, 1)), groups=18)),
]
FIRST_LAYER = [
    (3, 1, 12, 12, 32, (5, 5), dict(padding=2)),
    (2, 1, 9, 10, 5, (5, 5), dict(padding=2)),
    (2, 3, 11, 9, 33, (3, 3), dict(padding=1)),
    (2, 2, 8, 9, 17, (3, 3), dict(stride=2, padding=1)),
    (1, 3, 10, 11, 16, (3, 3), dict(dilation=2, padding=1)),
    (2, 1, 6, 7, 8, (3, 3), dict(padding=((2, 0), (0, 3)))),
    (1, 1, 2, 3, 12, (5, 5), dict(padding=4)),
]
CASES = DEPTHWISE + FIRST_LAYER


def _ids(case):
    n, c, h, w, k, kernel, kwargs = case
    options = "_".join(f"{a}{b}" for a, b in kwargs.items())
    return f"n{n}c{c}h{h}w{w}k{k}_{kernel[0]}x{kernel[1]}_{options}"


def _unaligned(array, offset):
    """A C-contiguous copy of array whose data starts `offset` elements into a fresh buffer."""
    buf = np.empty(array.size + offset, dtype=array.dtype)
    out = buf[offset:].reshape(array.shape)
    out[...] = array
    return out


def _inputs(case, dtype, data_format, offset):
    n, c, h, w, k, (kh, kw), kwargs = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((k, c // kwargs.get("groups", 1), kh, kw))
    bias = rng.standard_normal(k)
    if data_format == "NHWC":
        x, weight = x.transpose(0, 2, 3, 1), weight.transpose(2, 3, 1, 0)
    return (_unaligned(np.ascontiguousarray(x, dtype=dtype), offset),
            np.ascontiguousarray(weight, dtype=dtype), bias.astype(dtype), kwargs)


@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_direct_matches_reference(case, dtype, data_format, offset):
    x, weight, bias, kwargs = _inputs(case, dtype, data_format, offset)
    geom = conv2d_geometry(x.shape, weight.shape, data_format=data_format, **kwargs)
    f64 = (lambda a: a.astype(np.float64))
    out = fastconv.conv2d(x, weight, bias, data_format=data_format, algorithm="direct", **kwargs)
    assert_close(out, reference.conv2d_forward(f64(x), f64(weight), f64(bias), geom), dtype,
                 geom.reduction_length, "forward")
    grad_output = _unaligned(np.random.default_rng(5).standard_normal(out.shape).astype(dtype),
                             offset)
    grad_input, grad_weight, _ = fastconv.conv2d_backward(
        grad_output, x, weight, data_format=data_format, algorithm="direct", **kwargs)
    kg = geom.out_channels // geom.groups
    assert_close(grad_input, reference.conv2d_grad_input(f64(grad_output), f64(weight), geom),
                 dtype, kg * geom.kernel_h * geom.kernel_w, "grad_input")
    assert_close(grad_weight, reference.conv2d_grad_weight(f64(grad_output), f64(x), geom),
                 dtype, geom.batch * geom.out_h * geom.out_w, "grad_weight")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [DEPTHWISE[1], DEPTHWISE[3], DEPTHWISE[4], DEPTHWISE[12],
                                  DEPTHWISE[14], FIRST_LAYER[0], FIRST_LAYER[2]], ids=_ids)
def test_direct_is_bitwise_independent_of_threads(case, data_format):
    # The kernels are called directly: fastconv.conv2d runs problems this small on one thread.
    x, weight, bias, kwargs = _inputs(case, np.float32, data_format, 1)
    geom = conv2d_geometry(x.shape, weight.shape, data_format=data_format, **kwargs)
    kernels, suffix = fastconv._ext.conv_direct, data_format.lower()
    grad_output = np.cos(np.arange(np.prod(geom.output_shape), dtype=np.float32)).reshape(
        geom.output_shape)
    results = []
    for threads in (1, 2, 3):
        out = np.empty(geom.output_shape, np.float32)
        grad_input = np.empty(geom.input_shape, np.float32)
        grad_weight = np.empty(geom.weight_shape, np.float32)
        getattr(kernels, "forward_" + suffix)(x, weight, bias, out, *geom.kernel_args, threads)
        getattr(kernels, "grad_input_" + suffix)(grad_output, weight, grad_input,
                                                 *geom.kernel_args, threads)
        getattr(kernels, "grad_weight_" + suffix)(grad_output, x, grad_weight,
                                                  *geom.kernel_args, threads)
        results.append((out, grad_input, grad_weight))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)
