"""torch.nn.functional's conv2d and pooling, computed by fastconv's kernels.

The signatures are torch.nn.functional's (plus `algorithm=` on conv2d). Inputs are
(N, C, H, W) or unbatched (C, H, W) CPU float32/float64 tensors in either memory
format; outputs keep the input's memory format. Errors from fastconv's argument
checks (ValueError, TypeError) pass through unchanged.
"""
import torch

from . import _bridge
from ._functions import AvgPool2dFunction, Conv2dFunction, GlobalAvgPool2dFunction, MaxPool2dFunction

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"]


def _batched(input, name, op):
    """(4-D input, whether it was unbatched) after the device/dtype checks."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor. Received: {name} of type {type(input).__name__}")
    _bridge.check_tensor(input, name, op)
    if input.dim() == 3:
        return input.unsqueeze(0), True
    if input.dim() != 4:
        raise ValueError(
            f"{name} must be 4-D (N, C, H, W) or unbatched 3-D (C, H, W). Received: {name}.shape="
            f"{tuple(input.shape)}"
        )
    return input, False


def _unbatch(output, unbatched):
    return output.squeeze(0) if unbatched else output


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _conv_padding(padding, kernel, stride, dilation):
    """torch's "valid"/"same" as explicit padding; "same" splits odd totals extra-after, as torch."""
    if not isinstance(padding, str):
        return padding
    if padding == "valid":
        return 0
    if padding != "same":
        raise ValueError(f'padding must be an int, a pair, "valid" or "same". Received: padding={padding!r}')
    if any(s != 1 for s in _pair(stride)):
        raise ValueError(
            f"padding='same' is not supported for strided convolutions. Received: stride={stride!r}"
        )
    totals = [d * (k - 1) for d, k in zip(_pair(dilation), kernel)]
    return tuple((total // 2, total - total // 2) for total in totals)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, algorithm=None):
    """2-D cross-correlation, as torch.nn.functional.conv2d, on fastconv's kernels.

    Args:
        input: (N, C_in, H, W) or (C_in, H, W); contiguous or channels_last tensors are
            used in place (channels_last runs the NHWC kernels).
        weight: (C_out, C_in/groups, kh, kw), the dtype of input.
        bias: None or (C_out,).
        stride, dilation: int or (h, w).
        padding: int, (pad_h, pad_w), "valid" or "same" (stride 1 only, as in torch).
        groups: divides C_in and C_out.
        algorithm: a fastconv algorithm name, "auto", or None for fastconv's default.

    Returns:
        (N, C_out, oH, oW) in the input's memory format.

    Shape:
        oH = floor((H + 2*pad_h - dilation_h*(kh - 1) - 1) / stride_h) + 1, oW likewise.

    Raises:
        NotImplementedError: non-CPU or non-strided tensors; double backward.
        TypeError: dtypes other than float32/float64 (half, bfloat16, complex...), mixed dtypes.
        ValueError: bad shapes or geometry arguments (fastconv's checks).
    """
    input, unbatched = _batched(input, "input", "conv2d")
    _bridge.check_tensor(weight, "weight", "conv2d")
    if weight.dim() != 4:
        raise ValueError(
            f"weight must be 4-D (C_out, C_in/groups, kh, kw). Received: weight.shape={tuple(weight.shape)}"
        )
    if bias is not None:
        _bridge.check_tensor(bias, "bias", "conv2d")
    padding = _conv_padding(padding, tuple(weight.shape[2:]), stride, dilation)
    out = Conv2dFunction.apply(input, weight, bias, stride, padding, dilation, groups, algorithm)
    return _unbatch(out, unbatched)


def _default_stride(stride):
    """torch: stride None (or an empty sequence) means the kernel size."""
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return None
    return stride


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling, as torch.nn.functional.max_pool2d.

    Returns:
        The output, or (output, indices) with return_indices; indices are flat
        positions ih * W + iw in each H x W plane (int64), as torch's.

    Shape:
        oH = floor((H + 2*pad_h - dilation_h*(kh - 1) - 1) / stride_h) + 1 (ceil with
        ceil_mode, unless the last window would start in the padding); oW likewise.
    """
    input, unbatched = _batched(input, "input", "max_pool2d")
    out, indices = MaxPool2dFunction.apply(input, kernel_size, _default_stride(stride), padding,
                                           dilation, bool(ceil_mode))
    out, indices = _unbatch(out, unbatched), _unbatch(indices, unbatched)
    return (out, indices) if return_indices else out


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling, as torch.nn.functional.avg_pool2d.

    Shape:
        as max_pool2d with dilation 1.
    """
    input, unbatched = _batched(input, "input", "avg_pool2d")
    out = AvgPool2dFunction.apply(input, kernel_size, _default_stride(stride), padding, bool(ceil_mode),
                                  bool(count_include_pad), divisor_override)
    return _unbatch(out, unbatched)


def check_global_output_size(output_size):
    """fastconv pools adaptively to 1 x 1 only (global average pooling)."""
    if output_size not in (1, (1, 1), [1, 1]):
        raise ValueError(
            "fastconv.torch supports adaptive average pooling to output_size=1 (global average "
            f"pooling) only. Received: output_size={output_size!r}"
        )


def adaptive_avg_pool2d(input, output_size):
    """torch.nn.functional.adaptive_avg_pool2d for output_size 1: the mean over H and W.

    Shape:
        (N, C, 1, 1), or (C, 1, 1) for an unbatched input.
    """
    check_global_output_size(output_size)
    input, unbatched = _batched(input, "input", "adaptive_avg_pool2d")
    return _unbatch(GlobalAvgPool2dFunction.apply(input), unbatched)
