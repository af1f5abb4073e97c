"""numba_direct's specialised paths against the float64 reference, on 1 and 2 threads.

The paths are chosen by shape inside fastconv/algorithms/numba_direct.py:
    NHWC, groups == 1, K <= 256   staged rows; forward 4 pixels x 4 taps a pass (the last
                                  block of a task overlapping the one before), grad_weight
                                  4 taps x 4 pixels in sample chunks
    NHWC depthwise                forward in place (interior columns 4 pixels at a time, or
                                  8 a kernel row a pass for 3-wide rows at stride 1 or 2, the
                                  edge columns tap by tap), grad_input as the forward with
                                  the flipped kernel (stride 1), grad_weight on staged rows
                                  (blocks of 4 taps, channels in blocks of 256)
    NCHW, stride 1, few C/G       forward on whole staged planes (kw column-shifted copies
                                  written straight to the output where K/G > (kw - 1)*C/G,
                                  else padded planes whose sums are copied out), 4 channels a
                                  block (and the stride-1 grad_input, a forward), grad_weight
                                  for C/G == 1 as flat dot products in sample chunks
(with 32 channels or more, and for long plane runs, the register-blocked paths that
test_numba_direct_gaps.py checks on their edges take over.)
So the cases below sit on their edges: output channels at, below and past multiples of 4
and of the 256-channel accumulator, tap counts that leave 1 to 3 taps over, outputs with
fewer pixels than a block, padding wider than the kernel (a negative padding in the
transposed forward), no interior columns, strides, dilation, batch 1.  The kernels are
called directly, so that the thread count is really 1 or 2 (fastconv.conv2d runs problems
this small on one thread), and both counts must give the same bits.
"""
import numpy as np
import pytest

from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import numba_direct, reference
from fastconv.testing.tolerances import assert_close
from test_direct_depthwise_first_layer import _ids

# (N, C, H, W, K, kernel, kwargs)
GROUPS_1 = [
    (3, 1, 12, 12, 32, (5, 5), dict(padding=2)),                  # fmnist_conv1
    (2, 3, 7, 9, 17, (3, 3), dict(padding=1)),                    # RGB, K = 16 + 1
    (1, 1, 5, 6, 5, (3, 3), dict(padding=((2, 0), (0, 3)))),      # asymmetric, 9 taps
    (2, 2, 9, 8, 6, (3, 3), dict(stride=2, padding=1)),
    (1, 3, 10, 11, 8, (3, 3), dict(dilation=2, padding=1)),
    (2, 16, 8, 8, 16, (3, 3), dict(padding=1)),                   # cifar_res20, narrow
    (1, 4, 3, 3, 4, (3, 3), dict()),                              # one output pixel
    (1, 2, 2, 3, 7, (5, 5), dict(padding=4)),                     # padding past the kernel
    (1, 1, 4, 4, 256, (2, 2), dict(padding="same")),              # the accumulator's width
    (1, 2, 4, 5, 257, (3, 3), dict(padding=1)),                   # past it: generic kernel
]
DEPTHWISE = [
    (2, 7, 6, 5, 7, (3, 3), dict(padding=1, groups=7)),
    (1, 144, 7, 8, 144, (3, 3), dict(padding=1, groups=144)),     # mobilenet_dw
    (1, 144, 6, 20, 144, (3, 3), dict(padding=1, groups=144)),    # rows of 8: 18 interior
    (2, 20, 7, 23, 20, (3, 3), dict(stride=2, padding=1, groups=20)),  # 2 blocks overlapping
    (1, 16, 3, 12, 16, (3, 3), dict(padding=2, groups=16)),       # 1 to 3 kernel rows valid
    (1, 260, 5, 4, 260, (3, 3), dict(padding=1, groups=260)),     # two channel blocks
    (2, 9, 9, 10, 9, (3, 3), dict(stride=2, padding=1, groups=9)),
    (1, 6, 9, 9, 6, (3, 3), dict(dilation=2, padding=2, groups=6)),
    (2, 5, 6, 7, 5, (3, 2), dict(padding=((0, 2), (1, 0)), groups=5)),
    (1, 4, 3, 2, 4, (3, 3), dict(padding=4, groups=4)),           # no interior columns
    (1, 3, 5, 6, 3, (5, 5), dict(padding="same", groups=3)),      # 25 taps: 1 over
    (3, 8, 4, 4, 16, (3, 3), dict(padding=1, groups=8)),          # multiplier: other paths
]
NCHW_PLANES = [
    (2, 2, 6, 8, 8, (3, 3), dict(padding=1, groups=2)),           # C/G = 1, 4 channels a group
    (1, 12, 5, 6, 6, (3, 3), dict(padding=1, groups=3)),          # C/G = 4, K/G = 2
    (2, 1, 7, 5, 3, (1, 1), dict()),
    (1, 1, 2, 3, 8, (5, 5), dict(padding=4)),                     # shifted copies past the plane
    (1, 8, 3, 4, 1, (3, 3), dict(padding=3)),                     # grad_input: of a cropped plane
]
CASES = GROUPS_1 + DEPTHWISE + NCHW_PLANES


def _problem(case, dtype, data_format):
    n, c, h, w, k, (kh, kw), kwargs = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((k, c // kwargs.get("groups", 1), kh, kw))
    bias = rng.standard_normal(k)
    geom = conv2d_geometry(x.shape, weight.shape, data_format="NCHW", **kwargs)
    grad_output = rng.standard_normal(geom.output_shape)
    return x, weight, bias, grad_output, geom


def _to_layout(x, weight, grad_output, data_format, dtype):
    if data_format == "NHWC":
        x, grad_output = x.transpose(0, 2, 3, 1), grad_output.transpose(0, 2, 3, 1)
        weight = weight.transpose(2, 3, 1, 0)
    return tuple(np.ascontiguousarray(a, dtype=dtype) for a in (x, weight, grad_output))


def _run(x, weight, bias, grad_output, geom, data_format, threads):
    """forward, grad_input and grad_weight straight from the kernels, in data_format"""
    results = (np.empty(grad_output.shape, x.dtype), np.empty(x.shape, x.dtype),
               np.empty(weight.shape, x.dtype))
    operands = ((x, weight, bias), (grad_output, weight), (grad_output, x))
    for op, args, result in zip(("forward", "grad_input", "grad_weight"), operands, results):
        kernel = getattr(numba_direct, f"{op}_{data_format.lower()}")
        kernel(*args, result, *geom.kernel_args, threads)
    return results


def _to_nchw(results, data_format):
    if data_format == "NCHW":
        return results
    out, grad_input, grad_weight = results
    return (out.transpose(0, 3, 1, 2), grad_input.transpose(0, 3, 1, 2),
            grad_weight.transpose(3, 2, 0, 1))


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_fast_paths_match_reference_on_1_and_2_threads(case, dtype, data_format):
    check_reference_on_1_and_2_threads(case, dtype, data_format)


def check_reference_on_1_and_2_threads(case, dtype, data_format):
    """The three ops against the reference, and bitwise the same on 1 and 2 threads."""
    x, weight, bias, grad_output, geom = _problem(case, dtype, data_format)
    want = (reference.conv2d_forward(x, weight, bias, geom),
            reference.conv2d_grad_input(grad_output, weight, geom),
            reference.conv2d_grad_weight(grad_output, x, geom))
    kg = geom.out_channels // geom.groups
    lengths = (geom.reduction_length, kg * geom.kernel_h * geom.kernel_w,
               geom.batch * geom.out_h * geom.out_w)
    xs, ws, gs = _to_layout(x, weight, grad_output, data_format, dtype)
    geom_l = conv2d_geometry(xs.shape, ws.shape, data_format=data_format, **case[-1])
    runs = [_run(xs, ws, bias.astype(dtype), gs, geom_l, data_format, threads)
            for threads in (1, 2)]
    for got, expected, length, name in zip(_to_nchw(runs[0], data_format), want, lengths,
                                           ("forward", "grad_input", "grad_weight")):
        assert_close(got, expected, dtype, length, name)
    for one, two in zip(*runs):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_fast_paths_keep_nonfinite_values_where_they_belong(data_format):
    """An infinity in the input spreads to the outputs whose windows hold it, nowhere else
    (the overlapping last pixel block recomputes, it does not add twice)."""
    case = (1, 1, 6, 7, 8, (3, 3), dict(padding=1))
    x, weight, bias, grad_output, geom = _problem(case, np.float32, data_format)
    x[0, 0, 5, 6] = np.inf
    xs, ws, gs = _to_layout(x, weight, grad_output, data_format, np.float32)
    geom_l = conv2d_geometry(xs.shape, ws.shape, data_format=data_format, **case[-1])
    out, _, _ = _to_nchw(_run(xs, ws, bias.astype(np.float32), gs, geom_l, data_format, 2),
                         data_format)
    expected = reference.conv2d_forward(x, weight, bias, geom)
    np.testing.assert_array_equal(np.isfinite(out), np.isfinite(expected))
