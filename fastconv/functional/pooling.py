"""Max, average and global-average 2-D pooling, forward and backward."""
import numpy as np

from .. import _aligned, _args, _config
from .. import _ext
from .._geometry import pool2d_geometry


def _layout(data_format):
    return "(N, H, W, C)" if data_format == "NHWC" else "(N, C, H, W)"


def _input(x, data_format):
    data_format = _args.normalize_data_format(data_format)
    return _args.as_float_array(x, "x", 4, _layout(data_format)), data_format


_POOLING_BACKENDS = ("cython", "numba")
_pooling_backend = "cython"


def set_pooling_backend(name):
    """Run pooling on the "cython" kernels (default) or the "numba" ones."""
    global _pooling_backend
    if name not in _POOLING_BACKENDS:
        raise ValueError(f"the pooling backend must be one of {_POOLING_BACKENDS}. Received: name={name!r}")
    if name == "numba":
        _numba_pooling()  # fail now, not at the next call, if numba is missing
    _pooling_backend = name


def get_pooling_backend():
    return _pooling_backend


def _numba_pooling():
    from ..algorithms import numba_pooling
    return numba_pooling


def _kernel(name, geom):
    module = _ext.pooling if _pooling_backend == "cython" else _numba_pooling()
    return getattr(module, f"{name}_{'nhwc' if geom.channels_last else 'nchw'}")


def _check_grad_output(grad_output, x, geom, op):
    grad_output = _args.as_float_array(grad_output, "grad_output", 4, _layout(geom.data_format))
    _args.check_same_dtype(grad_output=grad_output, x=x)
    _args.check_shape(grad_output, geom.output_shape, "grad_output", f"the shape of {op}'s output")
    return grad_output


def _threads(*arrays):
    return _config.threads_for(sum(a.nbytes for a in arrays), _config.SERIAL_BYTES)


def _window_args(geom):
    return (*geom.kernel, *geom.stride, geom.padding[0][0], geom.padding[1][0])


# --------------------------------------------------------------------------- max pooling
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, data_format="NCHW"):
    """2-D max pooling, as torch.nn.functional.max_pool2d.

    Args:
        x: (N, C, H, W) or, with data_format "NHWC", (N, H, W, C); float32/float64.
        kernel_size, stride (default kernel_size), dilation: int or (h, w).
        padding: int or (h, w), at most half the kernel; or "valid"/"same" (Keras).
        ceil_mode: round the output size up (the last window must start inside).
        return_indices: also return the argmax of each window as a flat index
            ih * W + iw into its H x W plane (int64, the output's shape).

    Ties go to the first maximum in the window; NaN propagates.

    Shape:
        oH = floor((H + 2*pad_h - dilation_h*(kh - 1) - 1) / stride_h) + 1 (ceil in
        ceil_mode, unless the last window would start in the padding); oW likewise.
    """
    x, data_format = _input(x, data_format)
    geom = pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode, data_format)
    out = _aligned.empty(geom.output_shape, x.dtype)
    # Without return_indices the kernel keeps each task's indices in scratch (8 bytes an
    # output not written to memory: a third of an NHWC 2x2 pool's traffic).
    indices = _aligned.empty(geom.output_shape, np.int64) if return_indices else None
    if out.size:
        _kernel("max_pool2d_forward", geom)(
            x, out, indices, *_window_args(geom), *geom.dilation, _threads(x, out))
    return (out, indices) if return_indices else out


def max_pool2d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, *, data_format="NCHW"):
    """Gradient of max_pool2d: each grad_output value goes to its window's argmax.

    Args:
        grad_output: gradient with respect to max_pool2d's output.
        x: max_pool2d's input (for its shape and dtype).
        indices: the indices max_pool2d returned with return_indices=True.
        The rest: as given to max_pool2d.

    Returns:
        grad_input, shaped like x.
    """
    x, data_format = _input(x, data_format)
    geom = pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode, data_format)
    grad_output = _check_grad_output(grad_output, x, geom, "max_pool2d")
    indices = _index_array(indices, geom)
    grad_input = _aligned.empty(geom.input_shape, x.dtype)
    if not grad_input.size:
        return grad_input
    threads = _threads(grad_input, grad_output)
    # Windows that tile the plane: each element is written once. That kernel only compares
    # the indices with its windows' positions (any value is safe), and declines if one lies
    # outside its window. The scatter writes where they point, once it has checked that
    # each lies in its plane (and declines, writing nothing there, if one does not).
    if geom.channels_last and _windows_tile(geom) and _kernel("max_pool2d_backward_tiles", geom)(
            grad_output, indices, grad_input, *geom.kernel, threads):
        return grad_input
    if not _kernel("max_pool2d_backward", geom)(grad_output, indices, grad_input, threads):
        raise _index_range_error(indices, geom)
    return grad_input


def _windows_tile(geom):
    """Whether the pooling windows cover the plane without overlap or gaps (2x2 stride 2 on
    an even plane)."""
    return (geom.stride == geom.kernel and geom.dilation == (1, 1)
            and geom.padding == ((0, 0), (0, 0))
            and (geom.in_h, geom.in_w) == (geom.out_h * geom.kernel[0], geom.out_w * geom.kernel[1]))


def _index_array(indices, geom):
    indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must be an integer array. Received: indices.dtype={indices.dtype}")
    _args.check_shape(indices, geom.output_shape, "indices", "the shape of max_pool2d's output")
    return np.ascontiguousarray(indices, dtype=np.int64)


def _index_range_error(indices, geom):
    """The error for indices that max_pool2d_backward's scatter found outside the plane."""
    plane = geom.in_h * geom.in_w
    low, high = int(indices.min()), int(indices.max())
    return ValueError(
        f"indices must lie in [0, H*W) = [0, {plane}). Received: indices between {low} and {high}")


# --------------------------------------------------------------------------- average pooling
def _avg_options(padding, count_include_pad, divisor_override):
    if divisor_override is not None:
        divisor_override = _args.as_int(divisor_override, "divisor_override", 1)
    if isinstance(padding, str) and _args.padding_mode(padding) == "same":
        count_include_pad = False  # Keras's "same" averages leave the padding out.
    return bool(count_include_pad), divisor_override or 0


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, data_format="NCHW"):
    """2-D average pooling, as torch.nn.functional.avg_pool2d.

    Args:
        x: (N, C, H, W) or, with data_format "NHWC", (N, H, W, C); float32/float64.
        kernel_size, stride (default kernel_size): int or (h, w).
        padding: int or (h, w), at most half the kernel; or "valid"/"same" (Keras;
            "same" averages over the pixels inside the input only).
        ceil_mode: round the output size up.
        count_include_pad: count zero padding in the divisor (PyTorch's default).
        divisor_override: a fixed positive divisor for every window.

    Shape:
        as max_pool2d with dilation 1.
    """
    x, data_format = _input(x, data_format)
    geom = pool2d_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode, data_format)
    include_pad, divisor = _avg_options(padding, count_include_pad, divisor_override)
    out = _aligned.empty(geom.output_shape, x.dtype)
    if out.size:
        (top, bottom), (left, right) = geom.padding
        _kernel("avg_pool2d_forward", geom)(
            x, out, *geom.kernel, *geom.stride, top, bottom, left, right, include_pad, divisor,
            _threads(x, out))
    return out


def avg_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, data_format="NCHW"):
    """Gradient of avg_pool2d: each grad_output value spread evenly over its window."""
    x, data_format = _input(x, data_format)
    geom = pool2d_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode, data_format)
    include_pad, divisor = _avg_options(padding, count_include_pad, divisor_override)
    grad_output = _check_grad_output(grad_output, x, geom, "avg_pool2d")
    grad_input = _aligned.empty(geom.input_shape, x.dtype)
    if grad_input.size:
        (top, bottom), (left, right) = geom.padding
        _kernel("avg_pool2d_backward", geom)(
            grad_output, grad_input, *geom.kernel, *geom.stride, top, bottom, left, right,
            include_pad, divisor, _threads(grad_input, grad_output))
    return grad_input


# --------------------------------------------------------------------------- global average
def _spatial_axes(data_format):
    return (1, 2) if data_format == "NHWC" else (2, 3)


def global_avg_pool2d(x, *, data_format="NCHW", keepdims=False):
    """Mean over H and W: (N, C), or with keepdims the 4-D shape with H = W = 1."""
    x, data_format = _input(x, data_format)
    if min(x.shape[1:]) == 0:
        raise ValueError(f"x must have non-zero channel, height and width sizes. Received: x.shape={x.shape}")
    threads = _threads(x)
    if data_format == "NHWC":
        n, h, w, c = x.shape
        mean = _aligned.empty((n, c), x.dtype)
        _ext.pooling.global_avg_pool2d_forward_nhwc(x.reshape(n, h * w, c), mean, threads)
        return mean.reshape((n, 1, 1, c) if keepdims else (n, c))
    n, c, h, w = x.shape     # each (n, c) plane is a contiguous row
    mean = _aligned.empty((n * c,), x.dtype)
    _ext.pooling.global_avg_pool2d_forward_nchw(x.reshape(n * c, h * w), mean, threads)
    return mean.reshape((n, c, 1, 1) if keepdims else (n, c))


def global_avg_pool2d_backward(grad_output, x, *, data_format="NCHW"):
    """Gradient of global_avg_pool2d: grad_output / (H*W) at every pixel.

    grad_output may be (N, C) or the keepdims shape.
    """
    x, data_format = _input(x, data_format)
    axes = _spatial_axes(data_format)
    grad_output = np.asarray(grad_output)
    if grad_output.ndim == 2:
        grad_output = np.expand_dims(grad_output, axes)
    grad_output = _args.as_float_array(grad_output, "grad_output", 4, _layout(data_format))
    _args.check_same_dtype(grad_output=grad_output, x=x)
    pooled = tuple(1 if axis in axes else size for axis, size in enumerate(x.shape))
    _args.check_shape(grad_output, pooled, "grad_output", "global_avg_pool2d's output with keepdims")
    count = x.shape[axes[0]] * x.shape[axes[1]]
    with np.errstate(all="ignore"):
        return np.broadcast_to(grad_output / x.dtype.type(count), x.shape).copy()
