"""Shapes of 2-D convolution and pooling: checked arguments in, output sizes out.

Dimension legend used throughout fastconv:
    N batch, C input channels, H, W input height and width,
    K output channels, kh, kw kernel height and width, G groups,
    oH, oW output height and width.

Output size along one axis (PyTorch's formula, with separate before/after padding):
    o = floor((n + pad_before + pad_after - d*(k - 1) - 1) / s) + 1
and, for pooling in ceil_mode, the division rounds up but the last window must
start inside the input or the leading padding.
"""
from dataclasses import dataclass

import numpy as np

from . import _args


@dataclass(frozen=True)
class Conv2dGeometry:
    """Everything a convolution kernel needs to know, as plain Python ints."""

    batch: int
    in_channels: int
    in_h: int
    in_w: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    groups: int
    stride: tuple
    padding: tuple  # ((top, bottom), (left, right))
    dilation: tuple
    out_h: int
    out_w: int
    data_format: str  # "NCHW" or "NHWC"

    @property
    def channels_last(self):
        return self.data_format == "NHWC"

    def _layout(self, n, c, h, w):
        return (n, h, w, c) if self.channels_last else (n, c, h, w)

    @property
    def input_shape(self):
        return self._layout(self.batch, self.in_channels, self.in_h, self.in_w)

    @property
    def output_shape(self):
        return self._layout(self.batch, self.out_channels, self.out_h, self.out_w)

    @property
    def weight_shape(self):
        cg = self.in_channels // self.groups
        if self.channels_last:
            return (self.kernel_h, self.kernel_w, cg, self.out_channels)
        return (self.out_channels, cg, self.kernel_h, self.kernel_w)

    @property
    def kernel_args(self):
        """Scalars in the order every compiled conv kernel takes them."""
        return (self.stride[0], self.stride[1], self.padding[0][0], self.padding[1][0],
                self.dilation[0], self.dilation[1], self.groups)

    @property
    def flops(self):
        """Multiply-adds times two of one forward pass (the same for each gradient)."""
        return (2 * self.batch * self.out_channels * (self.in_channels // self.groups)
                * self.kernel_h * self.kernel_w * self.out_h * self.out_w)

    @property
    def reduction_length(self):
        """How many products each output sums: sets the rounding error to expect."""
        return (self.in_channels // self.groups) * self.kernel_h * self.kernel_w

    @property
    def is_depthwise(self):
        return self.groups == self.in_channels and self.groups > 1


@dataclass(frozen=True)
class Pool2dGeometry:
    batch: int
    channels: int
    in_h: int
    in_w: int
    kernel: tuple
    stride: tuple
    padding: tuple  # ((top, bottom), (left, right))
    dilation: tuple
    out_h: int
    out_w: int
    data_format: str

    @property
    def channels_last(self):
        return self.data_format == "NHWC"

    @property
    def input_shape(self):
        n, c, h, w = self.batch, self.channels, self.in_h, self.in_w
        return (n, h, w, c) if self.channels_last else (n, c, h, w)

    @property
    def output_shape(self):
        n, c, h, w = self.batch, self.channels, self.out_h, self.out_w
        return (n, h, w, c) if self.channels_last else (n, c, h, w)


def _split_shape(shape, data_format, name):
    shape = tuple(shape)
    if len(shape) != 4:
        layout = "(N, H, W, C)" if data_format == "NHWC" else "(N, C, H, W)"
        raise ValueError(f"{name} must be 4-D {layout}. Received: {name}.shape={shape}")
    if data_format == "NHWC":
        n, h, w, c = shape
    else:
        n, c, h, w = shape
    return n, c, h, w


def _output_size(size, kernel, stride, before, after, dilation, ceil_mode=False):
    span = size + before + after - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + before:
        out -= 1
    return out


def _resolve_padding(padding, sizes, kernel, stride, dilation):
    """((top, bottom), (left, right)) for explicit padding or a "valid"/"same" mode."""
    if isinstance(padding, str):
        if _args.padding_mode(padding) == "valid":
            return (0, 0), (0, 0)
        return tuple(_args.same_padding(n, k, s, d)
                     for n, k, s, d in zip(sizes, kernel, stride, dilation))
    return _args.explicit_padding(padding)


def _check_fits(sizes, kernel, dilation, padding, input_name):
    for axis, n, k, d, (before, after) in zip("HW", sizes, kernel, dilation, padding):
        effective = d * (k - 1) + 1
        if effective > n + before + after:
            raise ValueError(
                f"the kernel (size {k}, dilation {d}: {effective} pixels) is larger than the "
                f"padded input along {axis} ({n} + {before} + {after} pixels). "
                f"Received: {input_name} {axis}={n}, kernel size {k}, dilation={d}, padding={(before, after)}"
            )


def _has_window_outside_input(size, out, kernel, stride, before, dilation):
    """Does a dilated window skip over every input pixel? (Possible only when dilation > 1.)"""
    rows = np.arange(out)[:, None] * stride - before + np.arange(kernel)[None, :] * dilation
    return not bool(np.all(np.any((rows >= 0) & (rows < size), axis=1)))


def conv2d_geometry(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                    data_format="NCHW"):
    """Check a convolution's shapes and arguments; return its Conv2dGeometry."""
    data_format = _args.normalize_data_format(data_format)
    n, c, h, w = _split_shape(input_shape, data_format, "x")
    weight_shape = tuple(weight_shape)
    if len(weight_shape) != 4:
        layout = "(kh, kw, C_in/groups, C_out)" if data_format == "NHWC" else "(C_out, C_in/groups, kh, kw)"
        raise ValueError(f"weight must be 4-D {layout}. Received: weight.shape={weight_shape}")
    if data_format == "NHWC":
        kh, kw, cg, k = weight_shape
    else:
        k, cg, kh, kw = weight_shape
    stride = _args.as_pair(stride, "stride", 1)
    dilation = _args.as_pair(dilation, "dilation", 1)
    groups = _args.as_int(groups, "groups", 1)
    if min(c, h, w) == 0 or min(weight_shape) == 0:
        raise ValueError(
            "x and weight must have non-zero channel, height, width and kernel sizes (only the "
            f"batch may be empty). Received: x.shape={tuple(input_shape)}, weight.shape={weight_shape}"
        )
    for size_name, value in (("kernel height", kh), ("kernel width", kw)):
        _args.as_int(value, size_name, 1)
    if c % groups or k % groups:
        raise ValueError(
            f"groups must divide both the input channels ({c}) and the output channels ({k}). "
            f"Received: groups={groups}"
        )
    if cg != c // groups:
        raise ValueError(
            f"weight expects {cg} input channels per group but x has {c} channels in {groups} "
            f"group(s) ({c // groups} per group). Received: x.shape={tuple(input_shape)}, "
            f"weight.shape={weight_shape}, groups={groups}"
        )
    pad = _resolve_padding(padding, (h, w), (kh, kw), stride, dilation)
    _check_fits((h, w), (kh, kw), dilation, pad, "x")
    out_h = _output_size(h, kh, stride[0], *pad[0], dilation[0])
    out_w = _output_size(w, kw, stride[1], *pad[1], dilation[1])
    return Conv2dGeometry(n, c, h, w, k, kh, kw, groups, stride, pad, dilation,
                          out_h, out_w, data_format)


def pool2d_geometry(input_shape, kernel_size, stride=None, padding=0, dilation=1,
                    ceil_mode=False, data_format="NCHW"):
    """Check a pooling's shapes and arguments; return its Pool2dGeometry."""
    data_format = _args.normalize_data_format(data_format)
    n, c, h, w = _split_shape(input_shape, data_format, "x")
    kernel = _args.as_pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else _args.as_pair(stride, "stride", 1)
    dilation = _args.as_pair(dilation, "dilation", 1)
    if not isinstance(ceil_mode, (bool, int)):
        raise TypeError(f"ceil_mode must be a bool. Received: ceil_mode={ceil_mode!r}")
    if min(c, h, w) == 0:
        raise ValueError(
            "x must have non-zero channel, height and width sizes (only the batch may be "
            f"empty). Received: x.shape={tuple(input_shape)}"
        )
    pad = _resolve_padding(padding, (h, w), kernel, stride, dilation)
    if not isinstance(padding, str):
        for k, (before, after) in zip(kernel, pad):
            if max(before, after) > k // 2:
                raise ValueError(
                    "pooling padding must be at most half the kernel size. "
                    f"Received: padding={padding!r}, kernel_size={kernel_size!r}"
                )
    _check_fits((h, w), kernel, dilation, pad, "x")
    out_h = _output_size(h, kernel[0], stride[0], *pad[0], dilation[0], bool(ceil_mode))
    out_w = _output_size(w, kernel[1], stride[1], *pad[1], dilation[1], bool(ceil_mode))
    axes = zip("HW", (h, w), (out_h, out_w), kernel, stride, pad, dilation)
    for axis, size, out, k, s, (before, _), d in axes:
        if d > 1 and _has_window_outside_input(size, out, k, s, before, d):
            raise ValueError(
                f"with this dilation some pooling windows along {axis} hold no input pixel, only "
                f"padding. Received: {axis}={size}, kernel_size={k}, stride={s}, padding={before}, "
                f"dilation={d}"
            )
    return Pool2dGeometry(n, c, h, w, kernel, stride, pad, dilation, out_h, out_w, data_format)


def conv2d_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                        *, data_format="NCHW"):
    """Shape of conv2d's output for these shapes and arguments (the input's layout).

    Shape:
        oH = floor((H + pad_top + pad_bottom - dilation_h*(kh - 1) - 1) / stride_h) + 1,
        and likewise oW.
    """
    return conv2d_geometry(input_shape, weight_shape, stride, padding, dilation, groups,
                           data_format).output_shape


def pool2d_output_shape(input_shape, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, *, data_format="NCHW"):
    """Shape of max_pool2d's / avg_pool2d's output (avg pooling has dilation 1).

    Shape:
        oH = floor_or_ceil((H + 2*pad_h - dilation_h*(kh - 1) - 1) / stride_h) + 1,
        in ceil_mode minus one if the last window would start in the bottom padding.
    """
    return pool2d_geometry(input_shape, kernel_size, stride, padding, dilation, ceil_mode,
                           data_format).output_shape
