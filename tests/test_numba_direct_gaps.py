"""numba_direct's register-blocked paths against the float64 reference, on 1 and 2 threads.

Those paths sum fixed-size blocks in stack arrays that LLVM keeps in registers:
    NCHW staged planes      runs of 32 elements x 4 output channels, or 128 x 1 channel
                            (depthwise, and the channels left over a block of 4), the last
                            run overlapping the one before; shorter outputs tap by tap
    NHWC groups == 1        forward 8 pixels x 32 output channels (the last pixel and
                            channel blocks overlapping), grad_weight 5 taps x 32 channels
                            over a tile of pixels (taps past the last dropped, overlapping
                            channel lanes added once)
    NHWC depthwise, C >= 32 grad_weight 3 taps of a kernel row x 32 channels along a row,
                            the edge columns tap by tap
So the cases sit on the edges of those blocks; both thread counts must give the same bits.
"""
import numpy as np
import pytest

from fastconv.algorithms import reference
from fastconv._geometry import conv2d_geometry
from test_direct_depthwise_first_layer import _ids
from test_numba_direct_fast_paths import (_problem, _run, _to_layout, _to_nchw,
                                          check_reference_on_1_and_2_threads)

# (N, C, H, W, K, kernel, kwargs)
CASES = [
    (2, 1, 9, 11, 40, (5, 5), dict(padding=2)),                   # K = 32 + 8, 99 pixels
    (1, 1, 3, 4, 32, (3, 3), dict(padding=1)),                    # fewer pixels than a block
    (1, 2, 40, 45, 40, (3, 3), dict(padding=1)),                  # grad_weight: 2 pixel tiles
    (2, 3, 6, 7, 33, (3, 3), dict(padding=1)),                    # 27 taps: 5 x 5 + 2
    (1, 2, 12, 12, 6, (3, 3), dict(padding=1, groups=2)),         # 3 channels a group
    (2, 40, 16, 16, 40, (3, 3), dict(padding=1, groups=40)),      # runs of 128, C = 32 + 8
    (1, 48, 9, 10, 48, (5, 5), dict(padding=2, groups=48)),       # 5-wide rows: 3 + 2 taps
    (2, 32, 11, 9, 32, (3, 3), dict(stride=2, padding=1, groups=32)),
    (1, 36, 10, 10, 36, (3, 3), dict(dilation=2, padding=2, groups=36)),
    (1, 32, 3, 2, 32, (3, 3), dict(padding=3, groups=32)),        # no interior columns
    (1, 32, 6, 9, 32, (2, 7), dict(padding=((1, 0), (3, 3)), groups=32)),   # 3 + 3 + 1
]


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_blocked_paths_match_reference_on_1_and_2_threads(case, dtype, data_format):
    check_reference_on_1_and_2_threads(case, dtype, data_format)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [CASES[0], CASES[5]], ids=_ids)
def test_blocked_paths_keep_nonfinite_values_where_they_belong(case, data_format):
    """An infinity in the input reaches only the outputs and weight gradients whose sums
    hold it: overlapping blocks recompute or skip their shared lanes, dropped taps are
    dropped."""
    x, weight, bias, grad_output, geom = _problem(case, np.float32, data_format)
    x[0, x.shape[1] - 1, 4, 5] = np.inf
    xs, ws, gs = _to_layout(x, weight, grad_output, data_format, np.float32)
    geom_l = conv2d_geometry(xs.shape, ws.shape, data_format=data_format, **case[-1])
    out, _, grad_weight = _to_nchw(
        _run(xs, ws, bias.astype(np.float32), gs, geom_l, data_format, 2), data_format)
    np.testing.assert_array_equal(
        np.isfinite(out), np.isfinite(reference.conv2d_forward(x, weight, bias, geom)))
    np.testing.assert_array_equal(
        np.isfinite(grad_weight),
        np.isfinite(reference.conv2d_grad_weight(grad_output, x, geom)))
