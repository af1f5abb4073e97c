"""Pooling layers on fastconv's pooling ops: MaxPooling2D, AveragePooling2D and the global poolings."""
import numpy as np

import fastconv

from .. import backend
from .base import Layer, standardize_padding, standardize_tuple
from .convolutional import conv_output_length
from .core import check_ndim


class _Pooling2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        pool_size = standardize_tuple(pool_size, 2, "pool_size")
        strides = pool_size if strides is None else standardize_tuple(strides, 2, "strides")
        padding = standardize_padding(padding)
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.strides = strides
        self.padding = padding
        self.data_format = backend.standardize_data_format(data_format)

    @property
    def _fc_format(self):
        return "NHWC" if self.data_format == "channels_last" else "NCHW"

    def _check_input_shape(self, shape):
        check_ndim(self, shape, 4)
        out = self.compute_output_shape(shape)
        spatial = out[1:3] if self.data_format == "channels_last" else out[2:4]
        if any(d is not None and d <= 0 for d in spatial):
            raise ValueError(
                f"Computed output size would be negative for layer '{self.name}': pool_size={self.pool_size}, "
                f"strides={self.strides}, padding={self.padding!r}. Received: input_shape={tuple(shape)}"
            )

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_last":
            n, h, w, c = input_shape
        else:
            n, c, h, w = input_shape
        oh, ow = (conv_output_length(s, k, self.padding, st, 1)
                  for s, k, st in zip((h, w), self.pool_size, self.strides))
        return (n, oh, ow, c) if self.data_format == "channels_last" else (n, c, oh, ow)

    def _pool_args(self):
        return dict(kernel_size=self.pool_size, stride=self.strides, padding=self.padding,
                    data_format=self._fc_format)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=list(self.pool_size), strides=list(self.strides), padding=self.padding,
                      data_format=self.data_format)
        return config


class MaxPooling2D(_Pooling2D):
    """Max over pool_size windows; "same" pads bottom/right and never picks the padding."""

    def call(self, inputs, training=False):
        if not training:
            return fastconv.max_pool2d(inputs, **self._pool_args())
        out, indices = fastconv.max_pool2d(inputs, return_indices=True, **self._pool_args())
        self._cache = (inputs, indices)
        return out

    def backward(self, grad_output, needs_input=True):
        if not needs_input:
            return None
        x, indices = self._cache
        return fastconv.max_pool2d_backward(np.ascontiguousarray(grad_output), x, indices,
                                            **self._pool_args())


class AveragePooling2D(_Pooling2D):
    """Mean over pool_size windows; with "same" the padding is left out of each mean."""

    def call(self, inputs, training=False):
        if training:
            self._cache = inputs
        return fastconv.avg_pool2d(inputs, **self._pool_args())

    def backward(self, grad_output, needs_input=True):
        if not needs_input:
            return None
        return fastconv.avg_pool2d_backward(np.ascontiguousarray(grad_output), self._cache,
                                            **self._pool_args())


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D


class _GlobalPooling2D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = backend.standardize_data_format(data_format)
        self.keepdims = bool(keepdims)

    @property
    def _axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _check_input_shape(self, shape):
        check_ndim(self, shape, 4)

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return tuple(1 if i in self._axes else d for i, d in enumerate(input_shape))
        return tuple(d for i, d in enumerate(input_shape) if i not in self._axes)

    def get_config(self):
        config = super().get_config()
        config.update(data_format=self.data_format, keepdims=self.keepdims)
        return config


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over H and W."""

    def call(self, inputs, training=False):
        if training:
            self._cache = inputs
        fmt = "NHWC" if self.data_format == "channels_last" else "NCHW"
        return fastconv.global_avg_pool2d(inputs, data_format=fmt, keepdims=self.keepdims)

    def backward(self, grad_output, needs_input=True):
        if not needs_input:
            return None
        fmt = "NHWC" if self.data_format == "channels_last" else "NCHW"
        return fastconv.global_avg_pool2d_backward(grad_output, self._cache, data_format=fmt)


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over H and W; the gradient is shared equally between tied maxima (as TensorFlow's reduce_max)."""

    def call(self, inputs, training=False):
        out = inputs.max(axis=self._axes, keepdims=True)
        if training:
            self._cache = (inputs, out)
        return out if self.keepdims else out.reshape(np.delete(np.array(out.shape), self._axes))

    def backward(self, grad_output, needs_input=True):
        if not needs_input:
            return None
        x, out = self._cache
        mask = x == out
        count = mask.sum(axis=self._axes, keepdims=True).astype(x.dtype)
        return mask * (grad_output.reshape(out.shape) / count)


GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
