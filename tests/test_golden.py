"""Golden values from the classic course examples (Andrew Ng's CNN course)."""
import numpy as np
import pytest

import fastconv

IMAGE = np.array([
    [3, 0, 1, 2, 7, 4],
    [1, 5, 8, 9, 3, 1],
    [2, 7, 2, 5, 1, 3],
    [0, 1, 3, 1, 7, 8],
    [4, 2, 1, 6, 2, 8],
    [2, 4, 5, 2, 3, 9],
], dtype=np.float64)
VERTICAL_EDGE = np.array([[-1, 0, 1]] * 3, dtype=np.float64)
# A widely copied slide prints +2 at row 1, column 2; the correct value is -2.
EDGES = np.array([[5, 4, 0, -8], [10, 2, -2, -3], [0, 2, 4, 7], [3, 2, 3, 16]], dtype=np.float64)

POOL_INPUT = np.array([[1, 3, 2, 1], [3, 6, 8, 9], [8, 3, 3, 9], [4, 6, 8, 2]], dtype=np.float64)

ALL_ALGORITHMS = fastconv.list_algorithms()


def _nchw(image):
    return image[None, None]


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS + ["auto"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vertical_edge_detector(algorithm, dtype):
    out = fastconv.conv2d(_nchw(IMAGE).astype(dtype), _nchw(VERTICAL_EDGE).astype(dtype),
                          algorithm=algorithm)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[0, 0], EDGES)


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_vertical_edge_detector_channels_last(algorithm):
    x = IMAGE[None, :, :, None]
    w = VERTICAL_EDGE[:, :, None, None]
    out = fastconv.conv2d(x, w, data_format="channels_last", algorithm=algorithm)
    np.testing.assert_array_equal(out[0, :, :, 0], EDGES)


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
@pytest.mark.parametrize("padding", [1, "same"])
def test_same_padding_keeps_size(algorithm, padding):
    out = fastconv.conv2d(_nchw(IMAGE), _nchw(VERTICAL_EDGE), padding=padding, algorithm=algorithm)
    assert out.shape == (1, 1, 6, 6)
    np.testing.assert_array_equal(out[0, 0, 1:-1, 1:-1], EDGES)
    # Top-left corner: only the right column of the filter sees the image.
    assert out[0, 0, 0, 0] == IMAGE[0, 1] + IMAGE[1, 1]


def test_max_pooling():
    out = fastconv.max_pool2d(_nchw(POOL_INPUT), 2, stride=2)
    np.testing.assert_array_equal(out[0, 0], [[6, 9], [8, 9]])


def test_average_pooling():
    out = fastconv.avg_pool2d(_nchw(POOL_INPUT), 2, stride=2)
    np.testing.assert_array_equal(out[0, 0], [[3.25, 5], [5.25, 5.5]])


@pytest.mark.parametrize("n, k, p, s, d", [(6, 3, 0, 1, 1), (6, 3, 1, 1, 1), (7, 3, 1, 2, 1),
                                           (10, 3, 2, 1, 2), (224, 7, 3, 2, 1), (5, 5, 0, 3, 1)])
def test_output_size_formula(n, k, p, s, d):
    expected = (n + 2 * p - d * (k - 1) - 1) // s + 1
    shape = fastconv.conv2d_output_shape((1, 1, n, n), (1, 1, k, k), stride=s, padding=p, dilation=d)
    assert shape == (1, 1, expected, expected)
