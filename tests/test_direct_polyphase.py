"""Direct's NCHW plane kernels on strided and dilated layers: the input planes are staged
as sh x sw polyphase components, so every tap is a unit-stride run (forward, and the weight
gradient for up to 32 input channels per group); a strided depthwise layer's input gradient
is computed a polyphase component at a time."""
import numpy as np
import pytest

import fastconv
from fastconv.testing import ConvCase, conv_inputs
from fastconv.testing.tolerances import assert_close

CASES = [
    ConvCase("dw_3x3_s2", 2, 8, 15, 14, 8, (3, 3), stride=2, padding=1, groups=8),
    ConvCase("dw_3x3_s2_wide", 2, 4, 40, 40, 4, (3, 3), stride=2, padding=1, groups=4),
    ConvCase("dw_5x5_s3_dilated", 1, 3, 23, 21, 3, (5, 5), stride=3, dilation=2, padding=4,
             groups=3),
    ConvCase("rgb_3x3_s2", 2, 3, 33, 34, 8, (3, 3), stride=2, padding=1),
    ConvCase("rgb_2x3_s_2_1", 1, 3, 11, 12, 5, (2, 3), stride=(2, 1), padding=(1, 0)),
    # strided weight gradients take runs of several blocks of 4 output channels, and the
    # channels left over one by one
    ConvCase("rgb_3x3_s2_k15", 2, 3, 13, 12, 15, (3, 3), stride=2, padding=1),
    ConvCase("mono_1x1_s2", 2, 1, 9, 9, 6, (1, 1), stride=2),
    ConvCase("c6_16_5x5_s2", 2, 6, 17, 16, 16, (5, 5), stride=2, padding=2),
    ConvCase("c16_3x3_dilated", 2, 16, 12, 12, 16, (3, 3), padding=2, dilation=2),
    ConvCase("c32_3x3_s2", 1, 32, 10, 9, 8, (3, 3), stride=2, padding=1),
    ConvCase("g2_3x3_s_1_2", 2, 8, 9, 14, 6, (3, 3), stride=(1, 2), padding=1, groups=2),
    # input gradients by polyphase components: odd and even left padding, a component no
    # tap reaches, rows and columns no output reaches
    ConvCase("dw_3x3_s2_pad2", 2, 5, 12, 13, 5, (3, 3), stride=2, padding=2, groups=5),
    ConvCase("dw_2x2_s3", 1, 4, 11, 14, 4, (2, 2), stride=3, padding=(0, 1), groups=4),
    ConvCase("dw_3x3_s_2_1_dilated", 2, 3, 10, 9, 3, (3, 3), stride=(2, 1), dilation=2,
             groups=3),
]


def _reference(x, w, b, gy, kw):
    x, w, b, gy = (a.astype(np.float64) for a in (x, w, b, gy))
    return [fastconv.conv2d(x, w, b, algorithm="reference", **kw),
            *fastconv.conv2d_backward(gy, x, w, algorithm="reference", **kw)[:2]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_gradients_match_the_reference(case, dtype):
    x, w, b = conv_inputs(case, dtype, "NCHW")
    y = fastconv.conv2d(x, w, b, algorithm="direct", **case.kwargs)
    gy = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    gx, gw = fastconv.conv2d_backward(gy, x, w, algorithm="direct", **case.kwargs)[:2]
    want_y, want_gx, want_gw = _reference(x, w, b, gy, case.kwargs)
    taps = case.in_channels // case.groups * case.kernel[0] * case.kernel[1]
    assert_close(y, want_y, dtype, taps, "forward")
    assert_close(gx, want_gx, dtype, taps * case.out_channels, "grad_input")
    assert_close(gw, want_gw, dtype, y.size // case.out_channels, "grad_weight")


@pytest.mark.parametrize("case", CASES[:4], ids=lambda c: c.id)
def test_weight_gradient_does_not_depend_on_threads(case):
    x, w, _ = conv_inputs(case, np.float32, "NCHW")
    y = fastconv.conv2d(x, w, algorithm="direct", **case.kwargs)
    gy = np.random.default_rng(6).standard_normal(y.shape).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        with fastconv.num_threads(threads):
            results.append(fastconv.conv2d_backward(gy, x, w, algorithm="direct",
                                                    needs=("weight",), **case.kwargs)[1])
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_infinity_in_a_column_beyond_the_output_gives_the_reference_values():
    # Staged grad_output rows are zero beyond oW; the weight gradient's flat dot products
    # multiply those zeros by input pixels, so an infinity there would give NaN where a
    # direct sum gives an infinity. The kernel then recomputes with real products only.
    case = ConvCase("rgb_3x3_s2", 1, 3, 9, 9, 4, (3, 3), stride=2)
    x, w, _ = conv_inputs(case, np.float32, "NCHW")
    x[0, 1, 3, 0] = np.inf
    y = fastconv.conv2d(x, w, algorithm="direct", **case.kwargs)
    gy = np.abs(np.random.default_rng(7).standard_normal(y.shape)).astype(np.float32) + 0.5
    gw = fastconv.conv2d_backward(gy, x, w, algorithm="direct", needs=("weight",),
                                  **case.kwargs)[1]
    want = _reference(x, w, np.zeros(4, np.float32), gy, case.kwargs)[2]
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(gw), np.isposinf(want))
    finite = np.isfinite(want)
    assert_close(gw[finite], want[finite], np.float32, y.size, "grad_weight")
