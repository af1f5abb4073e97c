"""conv2d and conv2d_backward: validation, shapes and dispatch to an algorithm."""
import numpy as np

from .. import _aligned, _args, _config, _ext, algorithms
from .._geometry import conv2d_geometry

_GRADIENTS = ("input", "weight", "bias")


def _layouts(data_format):
    if data_format == "NHWC":
        return "(N, H, W, C)", "(kh, kw, C_in/groups, C_out)"
    return "(N, C, H, W)", "(C_out, C_in/groups, kh, kw)"


def _prepare(x, weight, stride, padding, dilation, groups, data_format, **others):
    """Checked contiguous arrays and the geometry shared by forward and backward."""
    data_format = _args.normalize_data_format(data_format)
    x_layout, w_layout = _layouts(data_format)
    x = _args.as_float_array(x, "x", 4, x_layout)
    weight = _args.as_float_array(weight, "weight", 4, w_layout)
    _args.check_same_dtype(x=x, weight=weight, **others)
    geom = conv2d_geometry(x.shape, weight.shape, stride, padding, dilation, groups, data_format)
    return x, weight, geom


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           data_format="NCHW", algorithm=None):
    """2-D cross-correlation, as torch.nn.functional.conv2d.

    Args:
        x: input, (N, C, H, W) for "NCHW"/"channels_first" or (N, H, W, C) for
            "NHWC"/"channels_last"; float32 or float64, any memory layout.
        weight: (C_out, C_in/groups, kh, kw) for NCHW, (kh, kw, C_in/groups, C_out)
            for NHWC (Keras's layout); the dtype of x.
        bias: None or (C_out,).
        stride, dilation: int or (h, w), positive.
        padding: int, (pad_h, pad_w), ((top, bottom), (left, right)), "valid" or
            "same" (Keras/TensorFlow: output ceil(in / stride), any extra pixel
            bottom/right; allowed with stride > 1).
        groups: divides C_in and C_out; groups == C_in is depthwise.
        data_format: layout of x, the output and the weight.
        algorithm: "auto", a name from fastconv.list_algorithms(), or None for the
            default (set_default_algorithm / use_algorithm; "auto" unless changed).

    Returns:
        The output in the input's layout and dtype.

    Shape:
        oH = floor((H + pad_top + pad_bottom - dilation_h*(kh - 1) - 1) / stride_h) + 1,
        oW likewise.

    Raises:
        TypeError: non-float or mixed dtypes, non-integer size arguments.
        ValueError: wrong ranks or shapes, non-positive stride/dilation/groups,
            negative padding, a kernel larger than the padded input.
    """
    if bias is not None:
        bias = _args.as_float_array(bias, "bias", 1, "(C_out,)")
    x, weight, geom = _prepare(x, weight, stride, padding, dilation, groups, data_format,
                               bias=bias)
    if bias is not None:
        _args.check_shape(bias, (geom.out_channels,), "bias", "one value per output channel")
    chosen = algorithms.select("forward", geom, x.dtype, algorithm)
    if geom.batch == 0:
        return np.zeros(geom.output_shape, dtype=x.dtype)
    with np.errstate(all="ignore"):  # IEEE results (NaN, Inf) without warnings, as PyTorch
        return chosen.forward(x, weight, bias, geom)


def _check_needs(needs):
    if isinstance(needs, str):
        needs = (needs,)
    try:
        needs = frozenset(needs)
    except TypeError:
        raise TypeError(f"needs must be a collection of {_GRADIENTS}. Received: needs={needs!r}") from None
    unknown = needs - set(_GRADIENTS)
    if unknown:
        raise ValueError(
            f"needs may only name {_GRADIENTS}. Received: needs={tuple(sorted(needs, key=str))!r}"
        )
    return needs


def conv2d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    data_format="NCHW", needs=_GRADIENTS, algorithm=None):
    """Gradients of conv2d with respect to its input, weight and bias.

    Args:
        grad_output: gradient of the loss with respect to conv2d's output.
        x, weight, stride, padding, dilation, groups, data_format: as given to conv2d.
        needs: which of "input", "weight", "bias" to compute; the others are None.
        algorithm: "auto", a name from fastconv.list_algorithms(), or None for the default.

    Returns:
        (grad_input, grad_weight, grad_bias), shaped like x, weight and (C_out,).
    """
    needs = _check_needs(needs)
    data_format_name = _args.normalize_data_format(data_format)
    grad_output = _args.as_float_array(grad_output, "grad_output", 4, _layouts(data_format_name)[0])
    x, weight, geom = _prepare(x, weight, stride, padding, dilation, groups, data_format,
                               grad_output=grad_output)
    _args.check_shape(grad_output, geom.output_shape, "grad_output", "the shape of conv2d's output")
    with np.errstate(all="ignore"):  # IEEE results (NaN, Inf) without warnings, as PyTorch
        return _backward(grad_output, x, weight, geom, needs, algorithm)


def _backward(grad_output, x, weight, geom, needs, algorithm):
    """The gradients in `needs`, each from the algorithm chosen for it (zeros for an empty batch)."""
    empty = geom.batch == 0
    grad_input = grad_weight = grad_bias = None
    if "input" in needs:
        chosen = algorithms.select("grad_input", geom, x.dtype, algorithm)
        grad_input = np.zeros_like(x) if empty else chosen.grad_input(grad_output, weight, geom)
    if "weight" in needs:
        chosen = algorithms.select("grad_weight", geom, x.dtype, algorithm)
        grad_weight = np.zeros_like(weight) if empty else chosen.grad_weight(grad_output, x, geom)
    if "bias" in needs:
        grad_bias = _bias_gradient(grad_output, geom)
    return grad_input, grad_weight, grad_bias


def _bias_gradient(grad_output, geom):
    """grad_output summed over all but the channel axis: one pass on all threads, in double."""
    grad_bias = _aligned.empty((geom.out_channels,), grad_output.dtype)
    threads = _config.threads_for(grad_output.nbytes, _config.SERIAL_BYTES)
    if geom.channels_last:
        _ext.elementwise.sum_rows(grad_output.reshape(-1, geom.out_channels), grad_bias, threads)
    else:
        planes = grad_output.reshape(geom.batch, geom.out_channels, geom.out_h * geom.out_w)
        _ext.elementwise.sum_planes(planes, grad_bias, threads)
    return grad_bias
