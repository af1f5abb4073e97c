"""Narrow layers (6-32 input channels per group) on direct's tap-list kernels."""
import numpy as np
import pytest

import fastconv
from fastconv.testing import ConvCase, conv_inputs
from fastconv.testing.tolerances import assert_close

CASES = [
    ConvCase("lenet_6_16_5x5", 4, 6, 14, 14, 16, (5, 5)),
    ConvCase("c16_3x3_padded", 2, 16, 13, 11, 16, (3, 3), padding=1),
    ConvCase("c16_3x3_dilated", 2, 16, 12, 12, 16, (3, 3), padding=2, dilation=2),
    ConvCase("c16_3x3_stride2", 3, 16, 15, 14, 32, (3, 3), stride=2, padding=1),
    ConvCase("c32_3x3_k8", 2, 32, 9, 10, 8, (3, 3), padding=1),
    ConvCase("c8_groups2_plane", 2, 16, 10, 10, 12, (3, 3), padding=1, groups=2),
    ConvCase("c33_above_narrow", 1, 33, 6, 6, 5, (3, 3)),     # the row kernels again
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_gradients_match_the_reference(case, data_format, dtype):
    x, w, b = conv_inputs(case, dtype, data_format)
    kw = dict(case.kwargs, data_format=data_format)
    y = fastconv.conv2d(x, w, b, algorithm="direct", **kw)
    gy = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    got = [y, *fastconv.conv2d_backward(gy, x, w, algorithm="direct", **kw)[:2]]
    x64, w64, b64, gy64 = (a.astype(np.float64) for a in (x, w, b, gy))
    want = [fastconv.conv2d(x64, w64, b64, algorithm="reference", **kw),
            *fastconv.conv2d_backward(gy64, x64, w64, algorithm="reference", **kw)[:2]]
    taps = case.in_channels // case.groups * case.kernel[0] * case.kernel[1]
    lengths = (taps, taps, y.size // case.out_channels)   # N*oH*oW terms per weight
    for name, g, r, length in zip(("forward", "grad_input", "grad_weight"), got, want, lengths):
        assert_close(g, r, dtype, length, name)
