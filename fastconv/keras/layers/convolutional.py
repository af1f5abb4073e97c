"""Conv2D on fastconv.conv2d / conv2d_backward; kernels stored HWIO as Keras stores them."""
import numpy as np

import fastconv

from .. import backend, constraints, initializers, regularizers
from . import _activation
from .base import Layer, standardize_padding, standardize_tuple
from .core import _serialize_optional, check_axis, check_ndim

def _check_algorithm(algorithm):
    if algorithm != "auto" and algorithm not in fastconv.list_algorithms():
        raise ValueError(
            f"The `algorithm` argument must be 'auto' or one of {fastconv.list_algorithms()}. "
            f"Received: algorithm={algorithm!r}"
        )


def conv_output_length(length, kernel, padding, stride, dilation):
    if length is None:
        return None
    effective = (kernel - 1) * dilation + 1
    if padding == "same":
        return -(-length // stride)
    return (length - effective) // stride + 1


class Conv2D(Layer):
    """2-D convolution: activation(conv2d(x, kernel) + bias), kernel (kh, kw, C_in/groups, filters)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, algorithm=None, **kwargs):
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(
                "Invalid value for argument `filters`. Expected a strictly positive value. "
                f"Received filters={filters!r}."
            )
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups <= 0:
            raise ValueError(
                "The number of groups must be a positive integer. "
                f"Received: groups={groups!r}."
            )
        if filters % groups:
            raise ValueError(
                "The number of filters must be evenly divisible by the number of groups. "
                f"Received: groups={groups}, filters={filters}."
            )
        kernel_size = standardize_tuple(kernel_size, 2, "kernel_size")
        strides = standardize_tuple(strides, 2, "strides")
        dilation_rate = standardize_tuple(dilation_rate, 2, "dilation_rate")
        padding = standardize_padding(padding)
        if max(strides) > 1 and max(dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={strides} and dilation_rate={dilation_rate}"
            )
        if activity_regularizer is not None:
            raise ValueError(
                f"activity_regularizer is not supported. Received: activity_regularizer={activity_regularizer!r}"
            )
        if algorithm is not None:
            _check_algorithm(algorithm)
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.data_format = backend.standardize_data_format(data_format)
        self.dilation_rate = dilation_rate
        self.groups = int(groups)
        self.activation, self._act_name = _activation.resolve(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.algorithm = algorithm
        self.kernel = self.bias = None
        self._channel_axis = -1 if self.data_format == "channels_last" else 1
        # The first layer of a model gets needs_input=False and skips the input gradient.

    @property
    def _fc_format(self):
        return "NHWC" if self.data_format == "channels_last" else "NCHW"

    def build(self, input_shape):
        check_ndim(self, input_shape, 4)
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                "The channel dimension of the inputs should be defined. "
                f"Received: input_shape={input_shape}"
            )
        if channels % self.groups:
            raise ValueError(
                "The number of input channels must be evenly divisible by the number of groups. "
                f"Received groups={self.groups}, but the input has {channels} channels "
                f"(full input shape is {input_shape})."
            )
        shape = self.kernel_size + (channels // self.groups, self.filters)
        self.kernel = self.add_weight(shape, self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight((self.filters,), self.bias_initializer, "bias",
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.built = True

    def _check_input_shape(self, shape):
        check_ndim(self, shape, 4)
        check_axis(self, shape, self._channel_axis, self.kernel.shape[2] * self.groups)
        spatial = shape[1:3] if self.data_format == "channels_last" else shape[2:4]
        out = self.compute_output_shape(shape)
        out_spatial = out[1:3] if self.data_format == "channels_last" else out[2:4]
        if any(d is not None and d <= 0 for d in out_spatial):
            raise ValueError(
                f"Computed output size would be negative for layer '{self.name}': spatial input "
                f"{tuple(spatial)}, kernel_size={self.kernel_size}, strides={self.strides}, "
                f"dilation_rate={self.dilation_rate}, padding={self.padding!r}. "
                f"Received: input_shape={tuple(shape)}"
            )

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_last":
            n, h, w = input_shape[0], input_shape[1], input_shape[2]
        else:
            n, h, w = input_shape[0], input_shape[2], input_shape[3]
        oh, ow = (conv_output_length(s, k, self.padding, st, d) for s, k, st, d in
                  zip((h, w), self.kernel_size, self.strides, self.dilation_rate))
        if self.data_format == "channels_last":
            return (n, oh, ow, self.filters)
        return (n, self.filters, oh, ow)

    def _weight(self):
        kernel = self.kernel.value
        return kernel if self.data_format == "channels_last" else kernel.transpose(3, 2, 0, 1)

    def _conv_args(self):
        return dict(stride=self.strides, padding=self.padding, dilation=self.dilation_rate,
                    groups=self.groups, data_format=self._fc_format,
                    algorithm=self.algorithm)  # None: fastconv's default (set_default_algorithm)

    def call(self, inputs, training=False):
        bias = self.bias.value if self.use_bias and self.data_format == "channels_last" else None
        z = fastconv.conv2d(inputs, self._weight(), bias, **self._conv_args())
        if self.use_bias and bias is None:
            z += self.bias.value.reshape(-1, 1, 1)
        if self._act_name == "relu":    # the pre-activation is not needed: overwrite it
            y = _activation.forward(self.activation, "relu", z, in_place=True)
            z = None
        else:
            y = _activation.forward(self.activation, self._act_name, z)
        if training:
            keep_z = _activation.needs_pre_activation(self._act_name)
            self._cache = (inputs, z if keep_z else None, y)
        return y

    def backward(self, grad_output, needs_input=True):
        x, z, y = self._cache
        g = _activation.backward(self.activation, self._act_name, z, y, grad_output)
        needs = []
        if needs_input:
            needs.append("input")
        if self.trainable:
            needs.append("weight")
            if self.use_bias:
                needs.append("bias")
        if not needs:
            return None
        args = self._conv_args()
        grad_input, grad_weight, grad_bias = fastconv.conv2d_backward(
            np.ascontiguousarray(g), x, self._weight(), needs=needs, **args)
        if grad_weight is not None:
            if self.data_format != "channels_last":
                grad_weight = grad_weight.transpose(2, 3, 1, 0)
            self._accumulate(self.kernel, np.ascontiguousarray(grad_weight))
        if grad_bias is not None:
            self._accumulate(self.bias, grad_bias)
        return grad_input

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
            padding=self.padding, data_format=self.data_format, dilation_rate=list(self.dilation_rate),
            groups=self.groups, activation=_activation.serialize(self.activation, self._act_name),
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            kernel_regularizer=_serialize_optional(regularizers, self.kernel_regularizer),
            bias_regularizer=_serialize_optional(regularizers, self.bias_regularizer),
            kernel_constraint=_serialize_optional(constraints, self.kernel_constraint),
            bias_constraint=_serialize_optional(constraints, self.bias_constraint),
            algorithm=self.algorithm,
        )
        return config


Convolution2D = Conv2D
