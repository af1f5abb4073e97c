"""Layer: the base class of every fastconv.keras layer, and the symbolic KerasTensor.

The layer protocol (one override point per step, as Keras 3):

- ``__init__`` validates every argument (``ValueError``/``TypeError`` ending in
  ``Received: name=value``); nothing is allocated.
- ``build(input_shape)`` creates the layer's Variables (``add_weight``); shapes include the batch
  dimension as ``None``.
- ``compute_output_shape(input_shape)`` gives the output shape without computing anything.
- ``call(inputs, training=False)`` computes the forward pass on NumPy arrays (NHWC for images) and stores
  in ``self._cache`` what ``backward`` needs (nothing when not training: inference keeps no cache).
- ``backward(grad_output, needs_input=True)`` returns the gradient with respect to the inputs (``None``
  when ``needs_input`` is false, so the first layer skips that work) and adds the gradients of the
  layer's trainable variables into ``self._grads`` (keyed by ``id(variable)``; the model zeroes them
  before each step). A frozen layer (``trainable=False``) computes no variable gradient.
- ``get_config()`` returns the JSON-able constructor arguments; ``from_config(config)`` rebuilds.

Models drive the cache explicitly (``_cache`` is read after ``call`` and written back before
``backward``), so a layer shared by several nodes of a graph keeps one cache per call.
"""
import re

import numpy as np

from .. import backend
from ..variables import Variable


def _snake_case(name):
    """Keras's default-name rule: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, ReLU -> re_lu."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def standardize_tuple(value, n, name, allow_zero=False):
    """(a, b) from an int or an n-sequence of ints, as keras.src.utils.argument_validation."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(
                f"The `{name}` argument must be a tuple of {n} integers. Received: {name}={value!r}"
            ) from None
        if len(values) != n or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            raise ValueError(
                f"The `{name}` argument must be a tuple of {n} integers. Received: {name}={value!r}"
            )
        values = tuple(int(v) for v in values)
    low = 0 if allow_zero else 1
    if any(v < low for v in values):
        qualifier = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"The `{name}` argument must be a tuple of {n} integers {qualifier}. Received: {name}={value!r}"
        )
    return values


def standardize_padding(padding):
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(
            f"The `padding` argument must be one of 'valid', 'same'. Received: padding={padding!r}"
        )
    return padding.lower()


def shape_to_str(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class KerasTensor:
    """A symbolic tensor of the functional API: a shape, a dtype and where it comes from."""

    def __init__(self, shape, dtype=None, name=None, node=None, index=0):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = dtype or backend.floatx()
        self.name = name
        self.node = node   # the Node that produced it (None only transiently)
        self.index = index  # which output of that node

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={shape_to_str(self.shape)}, dtype={self.dtype}, name={self.name}>"


class Node:
    """One call of a layer on symbolic inputs in a functional graph."""

    def __init__(self, layer, inputs, outputs, call_kwargs=None):
        self.layer = layer
        self.inputs = list(inputs)       # KerasTensors
        self.outputs = list(outputs)     # KerasTensors
        self.call_kwargs = call_kwargs or {}
        for i, tensor in enumerate(self.outputs):
            tensor.node, tensor.index = self, i
        layer._inbound_nodes.append(self)

    @property
    def is_input(self):
        return not self.inputs


def _is_symbolic(inputs):
    if isinstance(inputs, (list, tuple)):
        return any(isinstance(x, KerasTensor) for x in inputs)
    return isinstance(inputs, KerasTensor)


class Layer:
    """Base class: naming, weights, building, the symbolic call and the gradient buffers."""

    # Layers taking a list of tensors (Add, Concatenate) set this.
    _multi_input = False

    def __init__(self, trainable=True, name=None, dtype=None, input_shape=None, batch_input_shape=None,
                 input_dim=None, batch_size=None, **kwargs):
        # Keras 2 spellings that mean nothing here but are harmless.
        for ignored in ("autocast", "weights", "input_length"):
            kwargs.pop(ignored, None)
        if kwargs:
            unknown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise TypeError(
                f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}. "
                f"Received: {unknown}"
            )
        prefix = _snake_case(type(self).__name__)
        if name is None:
            uid = backend.get_uid(prefix)
            name = prefix if uid == 1 else f"{prefix}_{uid - 1}"
        if not isinstance(name, str) or not name:
            raise ValueError(f"The layer name must be a non-empty string. Received: name={name!r}")
        self.name = name
        self._trainable = bool(trainable)
        if dtype is not None and str(np.dtype(dtype)) not in ("float32", "float64"):
            raise ValueError(f"Layer dtype must be float32 or float64. Received: dtype={dtype!r}")
        self.dtype = str(np.dtype(dtype)) if dtype is not None else backend.floatx()
        self.built = False
        self._weights = []          # Variables in creation order
        self._grads = {}
        self._cache = None
        self._inbound_nodes = []
        self._batch_input_shape = None
        if batch_input_shape is not None:
            self._batch_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            self._batch_input_shape = (batch_size,) + tuple(input_shape)
        elif input_dim is not None:
            self._batch_input_shape = (batch_size, int(input_dim))

    # ------------------------------------------------------------------ weights
    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for layer in self._sublayers():
            layer.trainable = value

    def _sublayers(self):
        return []

    def add_weight(self, shape, initializer="glorot_uniform", name=None, trainable=True, regularizer=None,
                   constraint=None, dtype=None):
        from .. import initializers
        init = initializers.get(initializer)
        dtype = dtype or self.dtype
        value = np.asarray(init(tuple(shape), dtype=dtype), dtype=dtype)
        if value.shape != tuple(shape):
            value = np.broadcast_to(value, tuple(shape)).copy()
        variable = Variable(np.ascontiguousarray(value), name=name, trainable=trainable,
                            constraint=constraint, regularizer=regularizer, path=f"{self.name}/{name}")
        self._weights.append(variable)
        return variable

    @property
    def weights(self):
        return list(self._weights)

    @property
    def variables(self):
        return self.weights

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return [v for v in self._weights if v.trainable]

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return list(self._weights)
        return [v for v in self._weights if not v.trainable]

    non_trainable_variables = non_trainable_weights

    @property
    def losses(self):
        """Regularization penalties of the current weights, as floats."""
        return [float(v.regularizer(v.value)) for v in self._weights if v.regularizer is not None]

    def get_weights(self):
        return [v.numpy() for v in self._weights]

    def set_weights(self, weights):
        weights = list(weights)
        if len(weights) != len(self._weights):
            raise ValueError(
                f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of length "
                f"{len(weights)}, but the layer was expecting {len(self._weights)} weights."
            )
        for variable, value in zip(self._weights, weights):
            value = np.asarray(value)
            if value.shape != variable.shape:
                raise ValueError(
                    f"Layer {self.name} weight shape {variable.shape} is not compatible with provided "
                    f"weight shape {value.shape}."
                )
        for variable, value in zip(self._weights, weights):
            variable.value[...] = value

    def count_params(self):
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on layer '{self.name}', but the layer isn't built. "
                "You can build it manually via: `layer.build(input_shape)`."
            )
        return int(sum(int(np.prod(v.shape)) for v in self._weights))

    def _accumulate(self, variable, grad):
        key = id(variable)
        if key in self._grads:
            self._grads[key] += grad
        else:
            self._grads[key] = grad

    # ------------------------------------------------------------------ protocol
    def build(self, input_shape):
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, inputs, training=False):
        raise NotImplementedError

    def backward(self, grad_output, needs_input=True):
        raise NotImplementedError(f"{type(self).__name__} has no backward pass")

    def _check_input_shape(self, shape):
        """Raise Keras's incompatibility error when a built layer is fed another shape."""

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(input_shape)
            self.built = True

    def __call__(self, inputs, training=None, **kwargs):
        if kwargs:
            raise TypeError(f"Unexpected arguments when calling layer '{self.name}'. Received: {kwargs}")
        if _is_symbolic(inputs):
            return self._symbolic_call(inputs)
        if self._multi_input:
            arrays = [np.asarray(x, dtype=self.dtype) for x in inputs]
            shapes = [a.shape for a in arrays]
        else:
            arrays = np.asarray(inputs, dtype=self.dtype)
            shapes = arrays.shape
        self._maybe_build(shapes)
        self._check_input_shape(shapes)
        return self.call(arrays, training=bool(training))

    def _symbolic_call(self, inputs):
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        for t in tensors:
            if not isinstance(t, KerasTensor):
                raise ValueError(
                    f"All inputs of layer '{self.name}' must be symbolic tensors (from `keras.Input` or "
                    f"another layer). Received: {t!r}"
                )
        if self._multi_input:
            shapes = [t.shape for t in tensors]
        else:
            if len(tensors) != 1:
                raise ValueError(
                    f"Layer '{self.name}' expects 1 input, but it received {len(tensors)} input tensors."
                )
            shapes = tensors[0].shape
        self._maybe_build(shapes)
        self._check_input_shape(shapes)
        out_shape = self.compute_output_shape(shapes)
        output = KerasTensor(out_shape, self.dtype, name=self.name)
        Node(self, tensors, [output])
        return output

    # ------------------------------------------------------------------ config
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._batch_input_shape is not None:
            config["batch_input_shape"] = list(self._batch_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"
