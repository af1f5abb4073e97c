"""torch.autograd.Function classes running fastconv's kernels forward and backward.

Each backward computes only the gradients autograd asks for (ctx.needs_input_grad)
and refuses to run with create_graph=True, since its result is not differentiable.
"""
import torch

import fastconv

from . import _bridge


class Conv2dFunction(torch.autograd.Function):
    """conv2d(x, weight, bias) with fixed, already normalised geometry arguments."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, algorithm):
        data_format = _bridge.data_format_of(x)
        out = fastconv.conv2d(
            _bridge.to_array(x, data_format), _bridge.weight_to_array(weight, data_format),
            _bridge.vector_to_array(bias), stride, padding, dilation, groups,
            data_format=data_format, algorithm=algorithm)
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation, groups)
        ctx.data_format, ctx.algorithm = data_format, algorithm
        return _bridge.from_array(out, data_format)

    @staticmethod
    def backward(ctx, grad_output):
        _bridge.check_no_double_backward("conv2d")
        x, weight = ctx.saved_tensors
        fmt = ctx.data_format
        needs = tuple(name for name, needed in zip(("input", "weight", "bias"), ctx.needs_input_grad)
                      if needed)
        grad_input, grad_weight, grad_bias = fastconv.conv2d_backward(
            _bridge.to_array(grad_output, fmt), _bridge.to_array(x, fmt),
            _bridge.weight_to_array(weight, fmt), *ctx.geometry, data_format=fmt, needs=needs,
            algorithm=ctx.algorithm)
        return (
            None if grad_input is None else _bridge.from_array(grad_input, fmt),
            None if grad_weight is None else _bridge.weight_from_array(grad_weight, fmt),
            None if grad_bias is None else torch.from_numpy(grad_bias),
            None, None, None, None, None,
        )


class MaxPool2dFunction(torch.autograd.Function):
    """max_pool2d(x) -> (output, indices); indices are not differentiable."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        data_format = _bridge.data_format_of(x)
        out, indices = fastconv.max_pool2d(
            _bridge.to_array(x, data_format), kernel_size, stride, padding, dilation, ceil_mode,
            return_indices=True, data_format=data_format)
        indices = _bridge.from_array(indices, data_format)
        ctx.mark_non_differentiable(indices)
        ctx.save_for_backward(x, indices)
        ctx.window = (kernel_size, stride, padding, dilation, ceil_mode)
        ctx.data_format = data_format
        return _bridge.from_array(out, data_format), indices

    @staticmethod
    def backward(ctx, grad_output, _grad_indices):
        _bridge.check_no_double_backward("max_pool2d")
        x, indices = ctx.saved_tensors
        fmt = ctx.data_format
        grad_input = fastconv.max_pool2d_backward(
            _bridge.to_array(grad_output, fmt), _bridge.to_array(x, fmt),
            _bridge.to_array(indices, fmt), *ctx.window, data_format=fmt)
        return _bridge.from_array(grad_input, fmt), None, None, None, None, None


class AvgPool2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        data_format = _bridge.data_format_of(x)
        options = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        out = fastconv.avg_pool2d(_bridge.to_array(x, data_format), *options, data_format=data_format)
        ctx.save_for_backward(x)
        ctx.options, ctx.data_format = options, data_format
        return _bridge.from_array(out, data_format)

    @staticmethod
    def backward(ctx, grad_output):
        _bridge.check_no_double_backward("avg_pool2d")
        (x,) = ctx.saved_tensors
        fmt = ctx.data_format
        grad_input = fastconv.avg_pool2d_backward(
            _bridge.to_array(grad_output, fmt), _bridge.to_array(x, fmt), *ctx.options,
            data_format=fmt)
        return (_bridge.from_array(grad_input, fmt),) + (None,) * 6


class GlobalAvgPool2dFunction(torch.autograd.Function):
    """Mean over H and W with keepdims: (N, C, 1, 1)."""

    @staticmethod
    def forward(ctx, x):
        data_format = _bridge.data_format_of(x)
        out = fastconv.global_avg_pool2d(_bridge.to_array(x, data_format), data_format=data_format,
                                         keepdims=True)
        ctx.save_for_backward(x)
        ctx.data_format = data_format
        return _bridge.from_array(out, data_format)

    @staticmethod
    def backward(ctx, grad_output):
        _bridge.check_no_double_backward("adaptive_avg_pool2d")
        (x,) = ctx.saved_tensors
        fmt = ctx.data_format
        grad_input = fastconv.global_avg_pool2d_backward(
            _bridge.to_array(grad_output, fmt), _bridge.to_array(x, fmt), data_format=fmt)
        return _bridge.from_array(grad_input, fmt)
