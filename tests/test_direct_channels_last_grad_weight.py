"""Direct's NCHW weight gradient of single-group layers with 5-32 input and 16 or more output
channels: NHWC's whole-image kernel on channels-last copies of the input and the output
gradient (compiled._channels_last: a blocked transpose per sample), its HWIO result
transposed back to (K, C, kh, kw) (compiled._oihw_weight)."""
import numpy as np
import pytest

import fastconv
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import _REGISTRY, reference
from fastconv.testing.tolerances import assert_close

# (N, C, H, W, K, kernel, kwargs)
CASES = [
    (2, 5, 9, 11, 16, (3, 3), dict(padding=1)),                   # the fewest channels taken
    (3, 16, 8, 8, 16, (3, 3), dict(padding=2, dilation=2)),
    (2, 32, 9, 10, 40, (3, 3), dict(stride=2, padding=1)),        # 2 vectors + 8 channels
    (2, 6, 14, 14, 16, (5, 5), dict()),                           # LeNet's 6 -> 16
    (1, 12, 7, 9, 33, (2, 3), dict(stride=(1, 2), padding=((1, 0), (0, 2)))),
]


def _ids(case):
    n, c, h, w, k, kernel, kwargs = case
    return f"{n}x{c}x{h}x{w}-k{k}-{kernel[0]}x{kernel[1]}-" + "-".join(
        f"{key}{value}" for key, value in kwargs.items())


def _inputs(case, dtype):
    n, c, h, w, k, (kh, kw), kwargs = case
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((k, c, kh, kw)).astype(dtype)
    geom = conv2d_geometry(x.shape, weight.shape, **kwargs)
    grad_output = rng.standard_normal(geom.output_shape).astype(dtype)
    return x, weight, grad_output, geom, kwargs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_the_reference(case, dtype):
    x, weight, grad_output, geom, kwargs = _inputs(case, dtype)
    assert _REGISTRY["direct"]._weight_gradient_channels_last(geom)
    got = fastconv.conv2d_backward(grad_output, x, weight, needs=("weight",),
                                   algorithm="direct", **kwargs)[1]
    want = reference.conv2d_grad_weight(grad_output.astype(np.float64), x.astype(np.float64),
                                        geom)
    assert got.shape == weight.shape
    assert_close(got, want, dtype, geom.batch * geom.out_h * geom.out_w, "grad_weight")


@pytest.mark.parametrize("case", CASES[:3], ids=_ids)
def test_is_nhwc_result_transposed(case):
    """The same bits as the NHWC layer's weight gradient, in NCHW's weight layout."""
    x, weight, grad_output, geom, kwargs = _inputs(case, np.float32)
    nchw = fastconv.conv2d_backward(grad_output, x, weight, needs=("weight",),
                                    algorithm="direct", **kwargs)[1]
    nhwc = fastconv.conv2d_backward(
        np.ascontiguousarray(grad_output.transpose(0, 2, 3, 1)),
        np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
        np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), needs=("weight",),
        data_format="NHWC", algorithm="direct", **kwargs)[1]
    np.testing.assert_array_equal(nchw, nhwc.transpose(3, 2, 0, 1))


def test_first_layers_and_narrow_outputs_keep_the_planes():
    direct = _REGISTRY["direct"]
    rgb = conv2d_geometry((2, 3, 8, 8), (16, 3, 3, 3), padding=1)
    narrow_out = conv2d_geometry((2, 16, 8, 8), (8, 16, 3, 3), padding=1)
    grouped = conv2d_geometry((2, 16, 8, 8), (16, 8, 3, 3), padding=1, groups=2)
    for geom in (rgb, narrow_out, grouped):
        assert not direct._weight_gradient_channels_last(geom)
