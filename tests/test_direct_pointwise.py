"""Direct's pointwise kernels: 1x1, unpadded, single-group layers (and strided ones).

NCHW: the input planes are flat runs of the output's pixels. Tasks are (sample, run of
pixels); blocks of 4 output channels, then single channels, in steps of 4 vectors, 1 vector
and scalars. NHWC: a GEMM of pixel rows by the weights in blocks of 8 pixels (then single
ones) x 2 vectors, 1 vector, half a vector and single output channels; strided forwards on
the staged-row kernels (tests/test_direct_nhwc_staged.py). In both layouts the stride-1 input gradient is the same kernel on
the transposed weights. numba_direct has NCHW's, on its staged-plane tap blocks."""
import numpy as np
import pytest

import fastconv
from fastconv.testing import ConvCase, conv_inputs
from fastconv.testing.tolerances import assert_close

CASES = [
    ConvCase("c1_k1_5x7", 2, 1, 5, 7, 1, (1, 1)),            # scalars only
    ConvCase("c3_k9_9x9", 2, 3, 9, 9, 9, (1, 1)),            # 2 blocks of 4 and a single channel
    ConvCase("c8_k16_20x20", 3, 8, 20, 20, 16, (1, 1)),      # 400 pixels: runs of whole vectors
    ConvCase("c64_k6_30x31", 2, 64, 30, 31, 6, (1, 1)),      # runs of 128 pixels and a tail
    ConvCase("c70_k5_13x11", 1, 70, 13, 11, 5, (1, 1)),
    ConvCase("c300_k4_11x12", 2, 300, 11, 12, 4, (1, 1)),    # the shortest runs (4 vectors)
    ConvCase("c16_k40_7x9", 3, 16, 7, 9, 40, (1, 1)),        # NHWC: 32 + 8 channels, 189 pixels
    ConvCase("c24_k73_6x5", 1, 24, 6, 5, 73, (1, 1)),        # NHWC: 64 + 8 + 1
    # strided: NHWC's forward runs on the staged rows, its input pixels sw*C apart
    ConvCase("c16_k40_s2", 2, 16, 9, 10, 40, (1, 1), stride=2),
    ConvCase("c24_k9_s_3_2", 1, 24, 11, 7, 9, (1, 1), stride=(3, 2)),
]


@pytest.mark.parametrize("algorithm", ["direct", "numba_direct"])   # numba_direct: NCHW's
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_input_gradient_match_the_reference(case, data_format, dtype, algorithm):
    x, w, b = conv_inputs(case, dtype, data_format)
    kw = dict(case.kwargs, data_format=data_format)
    y = fastconv.conv2d(x, w, b, algorithm=algorithm, **kw)
    gy = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    gx = fastconv.conv2d_backward(gy, x, w, algorithm=algorithm, needs=("input",), **kw)[0]
    x64, w64, b64, gy64 = (a.astype(np.float64) for a in (x, w, b, gy))
    assert_close(y, fastconv.conv2d(x64, w64, b64, algorithm="reference", **kw), dtype, case.in_channels,
                 "forward")
    want_gx = fastconv.conv2d_backward(gy64, x64, w64, algorithm="reference", needs=("input",), **kw)[0]
    assert_close(gx, want_gx, dtype, case.out_channels, "grad_input")


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CASES[2:5], ids=lambda c: c.id)
def test_results_do_not_depend_on_threads(case, data_format):
    x, w, b = conv_inputs(case, np.float32, data_format)
    results = []
    for threads in (1, 2, 3):
        with fastconv.num_threads(threads):
            results.append(fastconv.conv2d(x, w, b, algorithm="direct", data_format=data_format))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_auto_runs_resnet_bottleneck_1x1_on_it(data_format):
    case = ConvCase("resnet_1x1", 1, 64, 28, 28, 256, (1, 1))  # NCHW: 4 pixels per input channel
    x, w, b = conv_inputs(case, np.float32, data_format)
    kw = dict(data_format=data_format)
    np.testing.assert_array_equal(fastconv.conv2d(x, w, b, **kw), fastconv.conv2d(x, w, b, algorithm="direct", **kw))
