"""Direct's single-group forwards at any channel count: an implicit GEMM on staged rows.

forward_nhwc stages the zero-padded input rows of a block of output rows (whole images,
or as many rows as fit _ROW_STAGE = 64 Ki elements a thread) and sums one broadcast input
value per tap (i, j, c) against vectors of output channels, in register blocks of 14 pixels
x 2 vectors (a half block of 7 for a short tail: 17 pixels are 14 + 7), 8 pixels x 2
vectors for rows of 16, 24, 32 ... pixels, or 16 x 1 for 16-31 channels.  forward_nchw
does the same for layers past its plane kernels (more than 32 input channels, or strided
with more than 4; 16 or more output channels) on channels-last copies: the rows staged by blocked transposes, the sums
transposed back into the output planes.  The cases here have more channels than the first
layers of tests/test_direct_first_layer_speed_paths.py: strided and dilated layers (which
"auto" runs here), strided 1x1 layers, rows cut short by the stride, and rows wide enough
for the staging to be split into blocks of a few rows (the stage reused, its padding kept).
"""
import numpy as np
import pytest

import fastconv
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import reference
from fastconv.testing.tolerances import assert_close

# (N, C, H, W, K, kernel, kwargs)
CASES = [
    (2, 40, 9, 31, 48, (3, 3), dict(stride=2, padding=1)),       # 16 pixels a row, K = 32 + 16
    (1, 33, 7, 64, 40, (3, 3), dict(stride=2, padding=1)),       # 32 pixels, overlapping vectors
    (2, 36, 6, 17, 33, (3, 3), dict(padding=1, dilation=2)),     # 14 + 7 pixels (a tail of 3)
    (1, 64, 5, 29, 70, (3, 3), dict(stride=2, padding=1)),       # 15 pixels: 14 + 7
    (2, 48, 9, 11, 24, (3, 1), dict(padding=(1, 0))),            # rows of 11: half blocks
    (2, 64, 9, 14, 96, (1, 1), dict(stride=2)),                  # a strided 1x1: 7 pixels a row
    (1, 40, 6, 20, 17, (1, 1), dict(stride=(1, 2))),
    (2, 40, 7, 10, 16, (3, 3), dict(stride=2)),                  # the last input column unread
    # strided NCHW layers of 5-32 input channels: the staged rows, not the polyphase planes
    (2, 16, 9, 20, 32, (3, 3), dict(stride=2, padding=1)),
    (1, 8, 8, 13, 16, (3, 3), dict(stride=(2, 1), padding=1)),
    # 256 channels x 68 staged pixels a row: 3 rows fit 64 Ki elements, so the 10 output rows
    # run in blocks of 1 (stride 1, 3x3) or 2 (stride 2, 1x3 rows), the stage reused
    (1, 256, 10, 66, 20, (3, 3), dict(padding=1)),
    (1, 256, 10, 68, 20, (1, 3), dict(stride=2, padding=(0, 1))),
]


def _ids(case):
    n, c, h, w, k, kernel, kwargs = case
    return f"{n}x{c}x{h}x{w}-k{k}-{kernel[0]}x{kernel[1]}-" + "-".join(
        f"{key}{value}" for key, value in kwargs.items())


def _inputs(case, dtype, data_format):
    n, c, h, w, k, (kh, kw), kwargs = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    weight = rng.standard_normal((kh, kw, c, k)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    if data_format == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        weight = np.ascontiguousarray(weight.transpose(3, 2, 0, 1))
    return x, weight, bias, kwargs


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_staged_forward_matches_the_reference(case, dtype, data_format):
    x, weight, bias, kwargs = _inputs(case, dtype, data_format)
    geom = conv2d_geometry(x.shape, weight.shape, data_format=data_format, **kwargs)
    out = fastconv.conv2d(x, weight, bias, data_format=data_format, algorithm="direct", **kwargs)
    want = reference.conv2d_forward(*(a.astype(np.float64) for a in (x, weight, bias)), geom)
    assert_close(out, want, dtype, geom.reduction_length, "forward")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[7]], ids=_ids)
def test_staged_forward_is_bitwise_repeatable(case, data_format):
    """The same bits whatever the thread count: each task owns its output rows (the
    kernel is called directly, as fastconv.conv2d runs problems this small on one thread)."""
    x, weight, bias, kwargs = _inputs(case, np.float32, data_format)
    geom = conv2d_geometry(x.shape, weight.shape, data_format=data_format, **kwargs)
    forward = getattr(fastconv._ext.conv_direct, "forward_" + data_format.lower())
    results = []
    for threads in (1, 2, 3):
        out = np.empty(geom.output_shape, np.float32)
        forward(x, weight, bias, out, *geom.kernel_args, threads)
        results.append(out)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
