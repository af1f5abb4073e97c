"""Winograd's NCHW layers go through channels-last copies of the rows each block needs
(_to_channels_last / _from_channels_last in _conv_winograd.pyx): SSE transposes of 4 x 4
floats or 2 x 2 doubles in blocks of 32 pixels (64 on large planes), 4 destination rows at
a time where more of them than the L1's ways hold would share a few sets
(_transpose_rows).  The cases put channel counts and row runs on and off those blocks'
edges, for the forward (whose output comes back through the reverse copy), the input
gradient and the weight gradient."""
import numpy as np
import pytest

import fastconv
from fastconv.testing.tolerances import assert_close

CASES = [
    # (N, C, H, W, K): channels around multiples of 4 (and 2), rows of 5 to 35 pixels
    (2, 5, 9, 7, 3),
    (3, 37, 11, 13, 6),
    (1, 130, 6, 35, 9),
    (2, 8, 10, 10, 19),
    (1, 3, 33, 5, 130),
    (2, 6, 16, 16, 5),      # 16 x 16 planes (1 KB of floats)
    (1, 12, 32, 32, 10),    # back to 32 x 32 planes (4 KB apart): 4 channels at a time, then 2
    (1, 512, 6, 6, 2),      # 512 channels (rows 2 KB apart): 4 pixels at a time
    (1, 5, 64, 65, 3),      # a plane of 4160 pixels: blocks of 64
]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nchw_winograd_matches_the_reference(case, dtype):
    N, C, H, W, K = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, 3, 3)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    wide = [a.astype(np.float64) for a in (x, w, b)]
    out = fastconv.conv2d(x, w, b, padding=1, algorithm="winograd")
    assert_close(out, fastconv.conv2d(*wide, padding=1, algorithm="reference"), dtype, C * 9,
                 "forward")
    g = rng.standard_normal(out.shape).astype(dtype)
    grad_input, grad_weight, _ = fastconv.conv2d_backward(g, x, w, padding=1, algorithm="winograd")
    expected = fastconv.conv2d_backward(g.astype(np.float64), *wide[:2], padding=1,
                                        algorithm="reference")
    assert_close(grad_input, expected[0], dtype, K * 9, "grad_input")
    assert_close(grad_weight, expected[1], dtype, max(N * H * W, 16), "grad_weight")
