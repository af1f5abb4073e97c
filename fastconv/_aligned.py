"""Arrays whose data start on a 64-byte boundary: a cache line, and an AVX-512 vector.

NumPy aligns what it allocates to 16 bytes. The kernels move whole vectors of channels, and
a vector that straddles two cache lines costs two accesses: an NHWC depthwise layer of 32
channels (16 x 56 x 56, one thread) took 0.23 ms on an input that starts on a line and 0.36
on one 16 bytes past it. A layer's output is the next layer's input, so what fastconv returns
starts on a line, as PyTorch's CPU allocator does."""
import math

import numpy as np

ALIGNMENT = 64


def empty(shape, dtype):
    """np.empty(shape, dtype) whose first element is ALIGNMENT-byte aligned (C order); for
    dtypes whose size divides ALIGNMENT (float32, float64, int64), else plain np.empty."""
    dtype = np.dtype(dtype)
    if ALIGNMENT % dtype.itemsize:
        return np.empty(shape, dtype)
    count = math.prod(shape)
    try:
        raw = np.empty(count + ALIGNMENT // dtype.itemsize, dtype)
    except (ValueError, MemoryError):   # NumPy's own error, for the shape asked for
        return np.empty(shape, dtype)
    start = -raw.__array_interface__["data"][0] % ALIGNMENT // dtype.itemsize
    return raw[start:start + count].reshape(shape)
