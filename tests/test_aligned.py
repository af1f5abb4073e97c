"""Arrays fastconv returns start on a 64-byte boundary (fastconv/_aligned.py): a layer's
output is the next layer's input, and the kernels' vectors of channels then never straddle
two cache lines."""
import numpy as np
import pytest

import fastconv
from fastconv import _aligned


def _address(a):
    return a.__array_interface__["data"][0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape", [(), (0, 5), (7,), (3, 5, 7, 9)])
def test_empty_is_aligned_contiguous_and_writable(shape, dtype):
    for _ in range(8):   # NumPy's own alignment varies from one allocation to the next
        a = _aligned.empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable
        assert a.size == 0 or _address(a) % _aligned.ALIGNMENT == 0
        a[...] = 1   # the whole array lies inside its buffer
        assert (a == 1).all()


def test_empty_falls_back_for_sizes_that_do_not_divide_the_alignment():
    a = _aligned.empty((4, 3), np.dtype("V3"))
    assert a.shape == (4, 3) and a.dtype == np.dtype("V3")


def _misaligned(shape, rng):
    """A float32 array 16 bytes past a 64-byte boundary, as NumPy often gives"""
    buf = _aligned.empty((int(np.prod(shape)) + 4,), np.float32)
    a = buf[4:].reshape(shape)
    a[...] = rng.standard_normal(shape)
    return a


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "winograd", "numba_direct"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_conv_results_are_aligned(algorithm, data_format):
    rng = np.random.default_rng(0)
    x = _misaligned((2, 6, 9, 8) if data_format == "NCHW" else (2, 9, 8, 6), rng)
    w = _misaligned((5, 6, 3, 3) if data_format == "NCHW" else (3, 3, 6, 5), rng)
    kw = dict(padding=1, data_format=data_format, algorithm=algorithm)
    out = fastconv.conv2d(x, w, None, **kw)
    grads = fastconv.conv2d_backward(_misaligned(out.shape, rng), x, w, **kw)
    for a in (out, *[g for g in grads if g is not None]):
        assert _address(a) % 64 == 0, a.shape


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_pooling_results_are_aligned(data_format):
    rng = np.random.default_rng(1)
    x = _misaligned((2, 3, 8, 8) if data_format == "NCHW" else (2, 8, 8, 3), rng)
    out, indices = fastconv.max_pool2d(x, 2, return_indices=True, data_format=data_format)
    grad_max = fastconv.max_pool2d_backward(_misaligned(out.shape, rng), x, indices, 2,
                                            data_format=data_format)
    avg = fastconv.avg_pool2d(x, 2, data_format=data_format)
    grad_avg = fastconv.avg_pool2d_backward(_misaligned(avg.shape, rng), x, 2,
                                            data_format=data_format)
    for a in (out, indices, grad_max, avg, grad_avg):
        assert _address(a) % 64 == 0, a.shape
