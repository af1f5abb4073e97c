"""NHWC grouped convolution with narrow groups (fastconv._ext.conv_grouped, via "direct")."""
import numpy as np
import pytest

import fastconv
from fastconv import _ext
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms.compiled import DirectConv
from fastconv.testing import ConvCase, conv_inputs
from fastconv.testing.tolerances import assert_close

CASES = [
    ConvCase("g4_resnext", 2, 32, 9, 7, 32, (3, 3), padding=1, groups=8),
    ConvCase("g2_strided", 3, 16, 11, 10, 16, (3, 3), stride=2, padding=1, groups=8),
    ConvCase("g8_dilated", 2, 32, 12, 12, 32, (3, 3), dilation=2, padding=2, groups=4),
    ConvCase("g16_forward_only", 2, 48, 8, 8, 48, (3, 3), padding=1, groups=3),
    ConvCase("g4_5x5_asymmetric", 2, 64, 9, 9, 64, (5, 5), padding=((2, 1), (1, 2)), groups=16),
    ConvCase("g4_1x3_valid", 2, 16, 6, 9, 16, (1, 3), groups=4),
    ConvCase("g2_one_column", 2, 32, 3, 1, 32, (3, 1), padding=(1, 0), groups=16),
    ConvCase("g4_stride_hw", 1, 16, 13, 11, 16, (3, 2), stride=(3, 2), padding=(1, 0), groups=4),
]


def _geom(case, x, w):
    return conv2d_geometry(x.shape, w.shape, data_format="NHWC", **case.kwargs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_the_float64_reference(case):
    x, w, b = conv_inputs(case, np.float32, "NHWC")
    geom = _geom(case, x, w)
    assert DirectConv()._grouped("forward", geom, np.float32)
    kw = dict(case.kwargs, data_format="NHWC")
    gy = np.random.default_rng(1).standard_normal(geom.output_shape).astype(np.float32)
    x64, w64, b64, gy64 = (a.astype(np.float64) for a in (x, w, b, gy))
    got = [fastconv.conv2d(x, w, b, algorithm="direct", **kw),
           *fastconv.conv2d_backward(gy, x, w, algorithm="direct", **kw)[:2]]
    want = [fastconv.conv2d(x64, w64, b64, algorithm="reference", **kw),
            *fastconv.conv2d_backward(gy64, x64, w64, algorithm="reference", **kw)[:2]]
    taps = geom.in_channels // geom.groups * geom.kernel_h * geom.kernel_w
    for name, g, r, length in zip(("forward", "grad_input", "grad_weight"), got, want,
                                  (taps, taps, geom.batch * geom.out_h * geom.out_w)):
        assert_close(g, r, np.float32, length, name)


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: c.id)
def test_bitwise_the_same_on_any_thread_count(case):
    x, w, b = conv_inputs(case, np.float32, "NHWC")
    kw = dict(case.kwargs, data_format="NHWC", algorithm="direct")
    gy = np.ones(_geom(case, x, w).output_shape, np.float32)
    results = []
    for threads in (1, 2, 3):
        with fastconv.num_threads(threads):
            results.append([fastconv.conv2d(x, w, b, **kw),
                            fastconv.conv2d_backward(gy, x, w, **kw)[1]])
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)


def test_which_layers_it_takes():
    supports = _ext.conv_grouped.supports
    assert supports(128, 128, 32, "forward") and supports(128, 128, 32, "grad_weight")
    assert supports(48, 48, 3, "forward") and not supports(48, 48, 3, "grad_weight")  # g = 16
    assert not supports(48, 48, 16, "forward")      # g = 3
    assert not supports(24, 24, 6, "forward")       # C not a multiple of 16
    assert not supports(32, 64, 8, "forward")       # a channel multiplier
    assert not supports(32, 32, 1, "forward")       # not grouped
    assert not supports(32, 32, 32, "forward")      # depthwise: _conv_direct's own kernels
    assert not supports(32, 32, 8, "grad_input")    # the transposed forward instead
    case = CASES[0]
    x, w, _ = conv_inputs(case, np.float64, "NHWC")     # float64: _conv_direct
    assert not DirectConv()._grouped("forward", _geom(case, x, w), np.float64)


def test_the_kernels_reject_layers_they_do_not_take():
    x = np.zeros((1, 4, 4, 24), np.float32)
    w = np.zeros((3, 3, 4, 24), np.float32)
    out = np.zeros((1, 2, 2, 24), np.float32)
    with pytest.raises(ValueError, match="Received: C=24, K=24, groups=6"):
        _ext.conv_grouped.forward_nhwc(x, w, np.zeros(24, np.float32), out, 1, 1, 0, 0, 1, 1, 6, 1)
