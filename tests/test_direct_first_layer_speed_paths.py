"""The direct kernels' register-blocked paths for first layers and depthwise layers, on
images wide enough to take them, against the float64 reference.

The NCHW forward writes whole output rows in place, a vector at a time, when a row holds
at least one vector (16 float32 / 8 float64 lanes with AVX-512), the last vector of a row
overlapping the one before; narrower rows keep the flat path that
tests/test_direct_depthwise_first_layer.py covers.  So the widths here sit at, just above
and between multiples of the vector widths, with channel counts that give blocks of 4 output
channels and leftover single channels, and the stride-1 grad_input (a forward with the
flipped kernel) goes through the same code.  Planes are staged by whole-vector row copies
into zeroed scratch when they fit inside it, element by element otherwise (padding larger
than the kernel makes the grad_input's padding negative): both are here.  The NHWC
first-layer grad_weight sums whole images in registers, a kernel row's taps in runs of 3 to
12, for vectors of output channels and the channels left over; its forward takes blocks of
14 pixels, or 7 in rows of 7 to 13, or 16 for one vector of channels in rows of 32 or 48.
"""
import numpy as np
import pytest

import fastconv
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import reference
from fastconv.testing.tolerances import assert_close
from test_direct_depthwise_first_layer import _ids, _inputs

# (N, C, H, W, K, kernel, kwargs)
WIDE = [
    (2, 1, 28, 28, 32, (5, 5), dict(padding=2)),                  # fmnist_conv1
    (2, 1, 9, 16, 32, (5, 5), dict(padding=2)),                   # one float32 vector a row
    (1, 1, 7, 17, 6, (3, 3), dict(padding=1)),                    # K = 4 + 2 leftovers
    (2, 3, 6, 33, 8, (3, 3), dict(padding=1)),                    # RGB
    (1, 2, 5, 40, 5, (3, 3), dict(padding=((2, 0), (1, 3)))),     # asymmetric padding
    (1, 1, 6, 31, 4, (5, 5), dict(dilation=2, padding=3)),
    (2, 1, 6, 24, 16, (3, 3), dict(padding=0)),                   # no padding
    (1, 3, 5, 21, 12, (1, 1), dict()),
    (2, 12, 5, 19, 12, (3, 3), dict(padding=1, groups=12)),       # depthwise
    (1, 8, 4, 57, 16, (3, 3), dict(padding=1, groups=8)),         # 2 channels a group
    (1, 5, 6, 18, 5, (5, 5), dict(padding=2, dilation=(1, 2), groups=5)),
    (2, 2, 5, 23, 8, (3, 3), dict(stride=2, padding=1)),          # strided: other paths
    (1, 1, 6, 18, 40, (3, 3), dict(padding=1)),                   # K: 2 vectors + 8
    (1, 2, 5, 19, 24, (2, 3), dict(padding=1)),                   # K: 1 vector + 8
    (1, 3, 9, 20, 8, (7, 7), dict(stride=2, padding=3)),          # 21 taps a kernel row
    (1, 1, 5, 20, 4, (3, 3), dict(padding=3)),                    # grad_input: padding -1
    (2, 4, 6, 17, 4, (3, 3), dict(padding=(0, 4), groups=4)),     # wider than the plane
    # NHWC rows of 6, 7, 13 and 15 output pixels: one at a time, half blocks of 7 (the last
    # overlapping), a block of 14 and a half block
    (2, 3, 5, 6, 32, (3, 3), dict(padding=1)),
    (1, 6, 6, 11, 16, (5, 5), dict()),                            # LeNet's 6 -> 16
    (1, 16, 4, 13, 16, (3, 3), dict(padding=2, dilation=2)),
    (2, 1, 3, 15, 20, (3, 3), dict(padding=1)),
    # one vector of float32 channels (16, or 24 as two overlapping) over rows of 32 and 48
    # pixels: blocks of 16
    (2, 3, 5, 32, 16, (3, 3), dict(padding=1)),
    (1, 16, 4, 48, 24, (3, 3), dict(padding=2, dilation=2)),
    # NHWC weight gradients in runs of up to 12 taps: a kernel row of 4 channels (12), 9
    # channels of a dilated tap; 2 vectors + 8 channels, 1 vector
    (2, 4, 6, 15, 40, (3, 3), dict(padding=1)),
    (1, 9, 7, 16, 16, (3, 3), dict(padding=2, dilation=2)),
    (2, 20, 5, 14, 33, (3, 3), dict(stride=2, padding=1)),       # kernel rows of 60: 5 x 12
]


@pytest.mark.parametrize("offset", [0, 3])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", WIDE, ids=_ids)
def test_wide_direct_matches_reference(case, dtype, data_format, offset):
    x, weight, bias, kwargs = _inputs(case, dtype, data_format, offset)
    geom = conv2d_geometry(x.shape, weight.shape, data_format=data_format, **kwargs)
    f64 = (lambda a: a.astype(np.float64))
    out = fastconv.conv2d(x, weight, bias, data_format=data_format, algorithm="direct", **kwargs)
    assert_close(out, reference.conv2d_forward(f64(x), f64(weight), f64(bias), geom), dtype,
                 geom.reduction_length, "forward")
    grad_output = np.random.default_rng(5).standard_normal(out.shape).astype(dtype)
    grad_input, grad_weight, _ = fastconv.conv2d_backward(
        grad_output, x, weight, data_format=data_format, algorithm="direct", **kwargs)
    kg = geom.out_channels // geom.groups
    assert_close(grad_input, reference.conv2d_grad_input(f64(grad_output), f64(weight), geom),
                 dtype, kg * geom.kernel_h * geom.kernel_w, "grad_input")
    assert_close(grad_weight, reference.conv2d_grad_weight(f64(grad_output), f64(x), geom),
                 dtype, geom.batch * geom.out_h * geom.out_w, "grad_weight")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [WIDE[0], WIDE[2], WIDE[8]], ids=_ids)
def test_wide_direct_is_bitwise_repeatable(case, data_format):
    """Every call gives the same bits, whatever the thread count (kernels called directly:
    fastconv.conv2d runs problems this small on one thread)."""
    x, weight, bias, kwargs = _inputs(case, np.float32, data_format, 1)
    geom = conv2d_geometry(x.shape, weight.shape, data_format=data_format, **kwargs)
    kernels, suffix = fastconv._ext.conv_direct, data_format.lower()
    grad_output = np.cos(np.arange(np.prod(geom.output_shape), dtype=np.float32)).reshape(
        geom.output_shape)
    results = []
    for threads in (1, 2, 3, 2):
        out = np.empty(geom.output_shape, np.float32)
        grad_weight = np.empty(geom.weight_shape, np.float32)
        getattr(kernels, "forward_" + suffix)(x, weight, bias, out, *geom.kernel_args, threads)
        getattr(kernels, "grad_weight_" + suffix)(grad_output, x, grad_weight,
                                                  *geom.kernel_args, threads)
        results.append((out, grad_weight))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [WIDE[0], WIDE[3], WIDE[8]], ids=_ids)
def test_wide_direct_accepts_strided_views(case, data_format):
    """Inputs that are views with gaps (every other sample, a crop of a wider image) give
    the same bits as their contiguous copies."""
    x, weight, bias, kwargs = _inputs(case, np.float32, data_format, 0)
    wide = np.zeros((2 * x.shape[0],) + x.shape[1:-1] + (x.shape[-1] + 5,), x.dtype)
    wide[::2, ..., 2:x.shape[-1] + 2] = x
    view = wide[::2, ..., 2:x.shape[-1] + 2]
    assert not view.flags.c_contiguous
    want = fastconv.conv2d(x, weight, bias, data_format=data_format, algorithm="direct",
                           **kwargs)
    got = fastconv.conv2d(view, weight, bias, data_format=data_format, algorithm="direct",
                          **kwargs)
    np.testing.assert_array_equal(got, want)


# NCHW first layers whose staged input planes exceed the plane kernel's 64 Ki elements take
# them in bands of output rows, the last band shorter: stride 1, a 7x7 stride-2 stem
# (4 polyphase components), dilation, blocks of 4 output channels and leftovers, and a
# batch that gives each task all the output channels.
BANDED = [
    (1, 3, 150, 160, 5, (3, 3), dict(padding=1)),
    (1, 3, 230, 190, 8, (7, 7), dict(stride=2, padding=3)),
    (1, 2, 180, 200, 7, (3, 3), dict(padding=2, dilation=2)),
    (3, 1, 300, 230, 6, (5, 5), dict(padding=(2, 1))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", BANDED, ids=_ids)
def test_nchw_forward_on_bands_of_large_planes_matches_reference(case, dtype):
    from fastconv.algorithms.auto import _nchw_bands_fit, _nchw_planes_fit
    x, weight, bias, kwargs = _inputs(case, dtype, "NCHW", 1)
    geom = conv2d_geometry(x.shape, weight.shape, data_format="NCHW", **kwargs)
    assert not _nchw_planes_fit(geom) and _nchw_bands_fit(geom)
    f64 = (lambda a: a.astype(np.float64))
    want = reference.conv2d_forward(f64(x), f64(weight), f64(bias), geom)
    for threads in (1, 2, 3):
        out = np.empty(geom.output_shape, dtype)
        fastconv._ext.conv_direct.forward_nchw(x, weight, bias, out, *geom.kernel_args, threads)
        assert_close(out, want, dtype, geom.reduction_length, "forward")
        if threads == 1:
            first = out
        np.testing.assert_array_equal(out, first)    # the same bits on any thread count
