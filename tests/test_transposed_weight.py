"""The transposed convolution's kernel (stride-1 input gradients run as its forward)."""
import dataclasses

import numpy as np
import pytest

from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import compiled


def _expected(weight, groups, channels_last):
    """NumPy's strided copy, the definition: each group's (in, out) swapped, kernel flipped."""
    if channels_last:   # (kh, kw, Cg, K) -> (kh, kw, Kg, C)
        kh, kw, cg, k = weight.shape
        flipped = weight[::-1, ::-1].reshape(kh, kw, cg, groups, k // groups)
        return flipped.transpose(0, 1, 4, 3, 2).reshape(kh, kw, k // groups, groups * cg)
    k, cg, kh, kw = weight.shape
    flipped = weight[:, :, ::-1, ::-1].reshape(groups, k // groups, cg, kh, kw)
    return flipped.transpose(0, 2, 1, 3, 4).reshape(groups * cg, k // groups, kh, kw)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [
    # (C, K, kh, kw, groups): blocks of 32 channels with ragged edges, non-square kernels
    (3, 5, 3, 3, 1), (33, 70, 3, 3, 1), (64, 32, 5, 5, 1), (40, 97, 1, 3, 1), (512, 512, 3, 3, 1),
    (32, 64, 3, 3, 4), (12, 12, 3, 3, 12), (1, 1, 1, 1, 1),
])
def test_equals_numpys_flip_and_transpose(shape, dtype, data_format):
    C, K, kh, kw, groups = shape
    weight_shape = (kh, kw, C // groups, K) if data_format == "NHWC" else (K, C // groups, kh, kw)
    input_shape = (2, 9, 9, C) if data_format == "NHWC" else (2, C, 9, 9)
    geom = conv2d_geometry(input_shape, weight_shape, padding=1, groups=groups,
                           data_format=data_format)
    weight = np.random.default_rng(0).standard_normal(weight_shape).astype(dtype)
    got = compiled._transposed_weight(weight, geom)
    assert got.flags.c_contiguous and got.dtype == dtype
    np.testing.assert_array_equal(got, _expected(weight, groups, data_format == "NHWC"))


def test_threads_split_the_blocks_without_changing_a_bit(monkeypatch):
    from fastconv import _config
    weight = np.random.default_rng(1).standard_normal((3, 3, 200, 300)).astype(np.float32)
    geom = conv2d_geometry((1, 5, 5, 200), weight.shape, padding=1, data_format="NHWC")
    monkeypatch.setattr(_config, "SERIAL_BYTES", 0)
    with __import__("fastconv").num_threads(2):
        two = compiled._transposed_weight(weight, geom)
    np.testing.assert_array_equal(two, _expected(weight, 1, True))


def test_a_wrong_destination_is_refused_with_its_shape():
    from fastconv import _ext
    src = np.zeros((9, 4, 6, 1), np.float32)
    with pytest.raises(ValueError, match=r"dst must have shape \(9, 6, 4, 1\).*\(9, 4, 6, 1\)"):
        _ext.layout.flip_transpose(src, np.zeros((9, 4, 6, 1), np.float32), True, False, 1)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_im2col_input_gradient_runs_the_transposed_forward_where_weights_outweigh_columns(
        data_format, monkeypatch):
    """4 samples of 3x3 pixels and 40 output channels: 36 columns < 2 threads x 40."""
    import fastconv
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 24, 3, 3) if data_format == "NCHW" else (4, 3, 3, 24))
    w = rng.standard_normal((40, 24, 3, 3) if data_format == "NCHW" else (3, 3, 24, 40))
    g = rng.standard_normal((4, 40, 3, 3) if data_format == "NCHW" else (4, 3, 3, 40))
    calls = []
    original = compiled._transposed_weight
    monkeypatch.setattr(compiled, "_transposed_weight",
                        lambda *a: calls.append(a) or original(*a))
    kwargs = dict(padding=1, data_format=data_format, needs=["input"])
    with fastconv.num_threads(2):
        got = fastconv.conv2d_backward(g, x, w, algorithm="im2col", **kwargs)[0]
    assert calls, "the transposed forward did not run"
    expected = fastconv.conv2d_backward(g, x, w, algorithm="reference", **kwargs)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3, 3, 3), (70, 33, 3, 3), (32, 64, 5, 5), (97, 40, 1, 3),
                                   (512, 512, 3, 3), (1, 1, 1, 1)])
def test_hwio_weight_equals_numpys_transpose(shape, dtype):
    """Winograd's NCHW weights in Keras's HWIO layout, through two blocked transposes."""
    weight = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    got = compiled._hwio_weight(weight)
    assert got.flags.c_contiguous and got.dtype == dtype
    np.testing.assert_array_equal(got, weight.transpose(2, 3, 1, 0))
