"""Core layers: Input, Dense, Activation, ReLU, Softmax, Dropout, Flatten, Reshape, Add, Concatenate."""
import math

import numpy as np

from ..._matmul import matmul
from .. import backend, constraints, initializers, regularizers
from . import _activation
from .base import KerasTensor, Layer, Node, shape_to_str


def incompatible(layer, detail, shape):
    return ValueError(
        f'Input 0 of layer "{layer.name}" is incompatible with the layer: {detail}, but received input '
        f"with shape {shape_to_str(shape)}"
    )


def check_min_ndim(layer, shape, ndim):
    if len(shape) < ndim:
        raise ValueError(
            f'Input 0 of layer "{layer.name}" is incompatible with the layer: expected min_ndim={ndim}, '
            f"found ndim={len(shape)}. Full shape received: {shape_to_str(shape)}"
        )


def check_ndim(layer, shape, ndim):
    if len(shape) != ndim:
        raise ValueError(
            f'Input 0 of layer "{layer.name}" is incompatible with the layer: expected ndim={ndim}, '
            f"found ndim={len(shape)}. Full shape received: {shape_to_str(shape)}"
        )


def check_axis(layer, shape, axis, value):
    if shape[axis] is not None and shape[axis] != value:
        raise incompatible(layer, f"expected axis {axis} of input shape to have value {value}", shape)


# --------------------------------------------------------------------------- Input
class InputLayer(Layer):
    """The layer behind `Input`: holds the model's input shape (batch dimension None)."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None,
                 input_shape=None, batch_input_shape=None, sparse=None, **kwargs):
        batch_shape = batch_shape if batch_shape is not None else batch_input_shape
        shape = shape if shape is not None else input_shape
        if shape is not None and batch_shape is not None:
            raise ValueError(
                "You cannot pass both `shape` and `batch_shape` at the same time. "
                f"Received: shape={shape}, batch_shape={batch_shape}"
            )
        if shape is None and batch_shape is None:
            raise ValueError("You must pass a `shape` argument. Received: shape=None, batch_shape=None")
        if sparse:
            raise ValueError(f"Sparse inputs are not supported. Received: sparse={sparse!r}")
        if batch_shape is None:
            if isinstance(shape, int):
                shape = (shape,)
            batch_shape = (batch_size,) + tuple(shape)
        batch_shape = tuple(None if d is None else int(d) for d in batch_shape)
        if any(d is not None and d < 0 for d in batch_shape):
            raise ValueError(f"Input dimensions must be non-negative. Received: shape={batch_shape[1:]}")
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.batch_shape = batch_shape
        self.built = True
        self.output = KerasTensor(batch_shape, self.dtype, name=self.name)
        Node(self, [], [self.output])

    def compute_output_shape(self, input_shape):
        return self.batch_shape

    def call(self, inputs, training=False):
        return inputs

    def backward(self, grad_output, needs_input=True):
        return grad_output if needs_input else None

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self.dtype, "name": self.name}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,
          **kwargs):
    """A symbolic input of a functional model (Keras's `keras.Input`)."""
    if tensor is not None:
        raise ValueError(f"`tensor` is not supported. Received: tensor={tensor!r}")
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                       batch_shape=batch_shape, name=name, **kwargs)
    return layer.output


# --------------------------------------------------------------------------- Dense
class Dense(Layer):
    """y = activation(x @ kernel + bias) on the last axis; kernel (in, units)."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(
                f"Received an invalid value for `units`, expected a positive integer. Received: units={units!r}"
            )
        if activity_regularizer is not None:
            raise ValueError(
                f"activity_regularizer is not supported. Received: activity_regularizer={activity_regularizer!r}"
            )
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation, self._act_name = _activation.resolve(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.kernel = self.bias = None

    def build(self, input_shape):
        check_min_ndim(self, input_shape, 2)
        in_features = input_shape[-1]
        if in_features is None:
            raise ValueError(
                f"The last dimension of the input of layer '{self.name}' must be defined. "
                f"Received: input_shape={shape_to_str(input_shape)}"
            )
        self.kernel = self.add_weight((in_features, self.units), self.kernel_initializer, "kernel",
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight((self.units,), self.bias_initializer, "bias",
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.built = True

    def _check_input_shape(self, shape):
        check_min_ndim(self, shape, 2)
        check_axis(self, shape, -1, self.kernel.shape[0])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, inputs, training=False):
        z = matmul(inputs.reshape(-1, inputs.shape[-1]), self.kernel.value)
        z = z.reshape(inputs.shape[:-1] + (self.units,))
        if self.use_bias:
            z += self.bias.value
        keep_z = _activation.needs_pre_activation(self._act_name)
        y = _activation.forward(self.activation, self._act_name, z, in_place=not keep_z)
        if training:
            self._cache = (inputs, z if keep_z else None, y)
        return y

    def backward(self, grad_output, needs_input=True):
        x, z, y = self._cache
        g = _activation.backward(self.activation, self._act_name, z, y, grad_output)
        if self.trainable:
            x2 = x.reshape(-1, x.shape[-1])
            g2 = g.reshape(-1, self.units)
            self._accumulate(self.kernel, matmul(x2, g2, trans_a=True))
            if self.use_bias:
                self._accumulate(self.bias, g2.sum(axis=0))
        if not needs_input:
            return None
        gin = matmul(g.reshape(-1, self.units), self.kernel.value, trans_b=True)
        return gin.reshape(g.shape[:-1] + (self.kernel.shape[0],))

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units, activation=_activation.serialize(self.activation, self._act_name),
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            kernel_regularizer=_serialize_optional(regularizers, self.kernel_regularizer),
            bias_regularizer=_serialize_optional(regularizers, self.bias_regularizer),
            kernel_constraint=_serialize_optional(constraints, self.kernel_constraint),
            bias_constraint=_serialize_optional(constraints, self.bias_constraint),
        )
        return config


def _serialize_optional(module, obj):
    return None if obj is None else module.serialize(obj)


# --------------------------------------------------------------------------- activations
class Activation(Layer):
    """Applies an activation function (a name or a callable)."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation, self._act_name = _activation.resolve(activation)

    def call(self, inputs, training=False):
        y = _activation.forward(self.activation, self._act_name, inputs)
        if training:
            keep_x = _activation.needs_pre_activation(self._act_name)
            self._cache = (inputs if keep_x else None, y)
        return y

    def backward(self, grad_output, needs_input=True):
        if not needs_input:
            return None
        x, y = self._cache
        return _activation.backward(self.activation, self._act_name, x, y, grad_output)

    def get_config(self):
        config = super().get_config()
        config["activation"] = _activation.serialize(self.activation, self._act_name)
        return config


class ReLU(Layer):
    """min(max_value, x) for x >= threshold, negative_slope * (x - threshold) below it."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        if max_value is not None and max_value < 0.0:
            raise ValueError(f"max_value of a ReLU layer cannot be a negative value. Received: max_value={max_value}")
        if negative_slope is None or negative_slope < 0.0:
            raise ValueError(
                f"negative_slope of a ReLU layer cannot be a negative value. Received: negative_slope={negative_slope}"
            )
        if threshold is None or threshold < 0.0:
            raise ValueError(f"threshold of a ReLU layer cannot be a negative value. Received: threshold={threshold}")
        super().__init__(**kwargs)
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)

    def _slopes(self, x):
        slope = np.where(x >= self.threshold, 1.0, self.negative_slope).astype(x.dtype) \
            if self.threshold else np.where(x > 0, 1.0, self.negative_slope).astype(x.dtype)
        if self.max_value is not None:
            slope[x >= self.max_value] = 0
        return slope

    def call(self, inputs, training=False):
        x = inputs
        if self.threshold:
            y = np.where(x >= self.threshold, x, self.negative_slope * (x - self.threshold))
        else:
            y = np.where(x > 0, x, self.negative_slope * x) if self.negative_slope else np.maximum(x, 0)
        if self.max_value is not None:
            y = np.minimum(y, self.max_value)
        if training:
            self._cache = x
        return y.astype(x.dtype, copy=False)

    def backward(self, grad_output, needs_input=True):
        return grad_output * self._slopes(self._cache) if needs_input else None

    def get_config(self):
        config = super().get_config()
        config.update(max_value=self.max_value, negative_slope=self.negative_slope, threshold=self.threshold)
        return config


class Softmax(Layer):
    """softmax along `axis` (default -1)."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, inputs, training=False):
        shifted = inputs - inputs.max(axis=self.axis, keepdims=True)
        e = np.exp(shifted)
        y = e / e.sum(axis=self.axis, keepdims=True)
        if training:
            self._cache = y
        return y

    def backward(self, grad_output, needs_input=True):
        if not needs_input:
            return None
        y = self._cache
        return y * (grad_output - np.sum(grad_output * y, axis=self.axis, keepdims=True))

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config


# --------------------------------------------------------------------------- Dropout
class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability `rate`, scale the rest by 1/(1-rate)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0 <= rate <= 1:
            raise ValueError(
                "Invalid value received for argument `rate`. Expected a float value between 0 and 1. "
                f"Received: rate={rate!r}"
            )
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._generator = np.random.default_rng(seed) if seed is not None else None

    def _noise_shape(self, shape):
        if self.noise_shape is None:
            return shape
        return tuple(s if n is None else n for s, n in zip(shape, self.noise_shape))

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            if training:
                self._cache = None
            return inputs
        if self.rate == 1:
            self._cache = np.zeros((1,) * inputs.ndim, inputs.dtype)
            return np.zeros_like(inputs)
        rng = self._generator if self._generator is not None else backend.rng()
        keep = rng.random(self._noise_shape(inputs.shape), dtype=np.float32) >= self.rate
        mask = keep * inputs.dtype.type(1.0 / (1.0 - self.rate))
        self._cache = mask
        return inputs * mask

    def backward(self, grad_output, needs_input=True):
        if not needs_input:
            return None
        return grad_output if self._cache is None else grad_output * self._cache

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, noise_shape=None if self.noise_shape is None else list(self.noise_shape),
                      seed=self.seed)
        return config


# --------------------------------------------------------------------------- reshaping
class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...); channels_first input is flattened in H, W, C order too."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = backend.standardize_data_format(data_format)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64))
        return (input_shape[0], size)

    def call(self, inputs, training=False):
        if training:
            self._cache = inputs.shape
        if self.data_format == "channels_first" and inputs.ndim > 2:
            inputs = np.moveaxis(inputs, 1, -1)
        return inputs.reshape(inputs.shape[0], -1)

    def backward(self, grad_output, needs_input=True):
        if not needs_input:
            return None
        shape = self._cache
        if self.data_format == "channels_first" and len(shape) > 2:
            moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
            return np.ascontiguousarray(np.moveaxis(grad_output.reshape(moved), -1, 1))
        return grad_output.reshape(shape)

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


class Reshape(Layer):
    """Reshape the non-batch dimensions to `target_shape` (one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        target_shape = tuple(target_shape)
        if sum(1 for d in target_shape if d == -1) > 1 or any(
                not isinstance(d, (int, np.integer)) or (d < 1 and d != -1) for d in target_shape):
            raise ValueError(
                "The `target_shape` argument must be a tuple of positive integers with at most one -1. "
                f"Received: target_shape={target_shape}"
            )
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)

    def _resolved(self, input_shape):
        rest = input_shape[1:]
        if any(d is None for d in rest):
            return tuple(None if d == -1 else d for d in self.target_shape)
        size = math.prod(rest)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ValueError(
                    f"The total size of the tensor must be unchanged. Received: input_shape={rest}, "
                    f"target_shape={self.target_shape}"
                )
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ValueError(
                f"The total size of the tensor must be unchanged. Received: input_shape={rest}, "
                f"target_shape={self.target_shape}"
            )
        return self.target_shape

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._resolved(input_shape)

    def call(self, inputs, training=False):
        if training:
            self._cache = inputs.shape
        return inputs.reshape((inputs.shape[0],) + self._resolved(inputs.shape))

    def backward(self, grad_output, needs_input=True):
        return grad_output.reshape(self._cache) if needs_input else None

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config


# --------------------------------------------------------------------------- merging
class Add(Layer):
    """Elementwise sum of a list of tensors of one shape."""

    _multi_input = True

    def _check_input_shape(self, shapes):
        if not isinstance(shapes, list) or len(shapes) < 2:
            raise ValueError(f"A merge layer should be called on a list of at least 2 inputs. Received: inputs={shapes}")
        first = tuple(shapes[0][1:])
        for s in shapes[1:]:
            if tuple(s[1:]) != first:
                raise ValueError(
                    "Inputs have incompatible shapes. Received: shapes "
                    + ", ".join(shape_to_str(s) for s in shapes)
                )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def call(self, inputs, training=False):
        if training:
            self._cache = len(inputs)
        out = inputs[0].copy()
        for x in inputs[1:]:
            out += x
        return out

    def backward(self, grad_output, needs_input=True):
        return [grad_output] * self._cache if needs_input else None


class Concatenate(Layer):
    """Concatenation of a list of tensors along `axis` (default -1)."""

    _multi_input = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def _check_input_shape(self, shapes):
        if not isinstance(shapes, list) or len(shapes) < 2:
            raise ValueError(
                f"A `Concatenate` layer should be called on a list of at least 2 inputs. Received: inputs={shapes}"
            )
        rank = len(shapes[0])
        axis = self.axis % rank
        for s in shapes[1:]:
            if len(s) != rank or any(a != b and i != axis and i != 0 for i, (a, b) in enumerate(zip(s, shapes[0]))):
                raise ValueError(
                    "A `Concatenate` layer requires inputs with matching shapes except for the concatenation "
                    "axis. Received: input_shape=" + str([shape_to_str(x) for x in shapes])
                )

    def compute_output_shape(self, input_shape):
        shape = list(input_shape[0])
        sizes = [s[self.axis] for s in input_shape]
        shape[self.axis] = None if None in sizes else sum(sizes)
        return tuple(shape)

    def call(self, inputs, training=False):
        if training:
            self._cache = np.cumsum([x.shape[self.axis] for x in inputs])[:-1]
        return np.concatenate(inputs, axis=self.axis)

    def backward(self, grad_output, needs_input=True):
        if not needs_input:
            return None
        return [np.ascontiguousarray(g) for g in np.split(grad_output, self._cache, axis=self.axis)]

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config
