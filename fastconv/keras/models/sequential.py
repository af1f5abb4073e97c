"""Sequential: a stack of single-input layers (a list, or add/pop), built into a graph once shaped."""
from ..layers.base import KerasTensor, Layer
from ..layers.core import InputLayer
from .model import Model


class Sequential(Model):
    """`Sequential([layer, ...])` or `Sequential()` then `add(layer)`.

    The model builds as soon as its input shape is known: from an `Input`/`InputLayer` first, from
    `input_shape=`/`input_dim=` on the first layer, from `build(input_shape)`, or from the first data.
    """

    def __init__(self, layers=None, name=None, trainable=True, **kwargs):
        Model.__init__(self, name=name, trainable=trainable, **kwargs)
        self.built = False
        self._stack = []
        self._input_layer = None
        self.inputs, self.outputs = [], []
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_rebuild()

    @property
    def layers(self):
        return list(self._stack)

    @property
    def _layers(self):
        return ([self._input_layer] if self._input_layer is not None else []) + list(self._stack)

    @_layers.setter
    def _layers(self, value):
        pass  # the stack is the source of truth

    def add(self, layer, rebuild=True):
        if isinstance(layer, KerasTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer
        if not isinstance(layer, Layer):
            raise ValueError(
                "Only instances of `keras.Layer` can be added to a Sequential model. "
                f"Received: {layer!r} (of type {type(layer)})"
            )
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._stack:
                raise ValueError(
                    "Sequential model '{}' has already been configured to use an input shape; an InputLayer "
                    "must come first. Received: {}".format(self.name, layer.name)
                )
            self._input_layer = layer
        else:
            if any(existing.name == layer.name for existing in self._layers):
                raise ValueError(
                    "All layers added to a Sequential model should have unique names. Name "
                    f"'{layer.name}' is already the name of a layer in this model. Update the `name` argument "
                    "to pass a unique name."
                )
            if layer._multi_input:
                raise ValueError(f"Layer '{layer.name}' takes several inputs and cannot go in a Sequential model.")
            if not self._stack and self._input_layer is None and layer._batch_input_shape is not None:
                self._input_layer = InputLayer(batch_shape=layer._batch_input_shape, dtype=layer.dtype)
            self._stack.append(layer)
        if rebuild:
            self._maybe_rebuild()

    def pop(self, rebuild=True):
        if not self._stack:
            raise TypeError("There are no layers in the model.")
        layer = self._stack.pop()
        self.built = False
        if rebuild:
            self._maybe_rebuild()
        return layer

    def _maybe_rebuild(self):
        self.built = False
        if self._input_layer is not None and self._stack:
            self._build_graph(self._input_layer)

    def _build_graph(self, input_layer):
        x = input_layer.output
        for layer in self._stack:
            x = layer(x)
        Model._init_graph(self, input_layer.output, x)

    def build(self, input_shape=None):
        if input_shape is None:
            if self._input_layer is None:
                raise ValueError("You must provide an `input_shape` argument.")
        else:
            shape = tuple(input_shape)
            if self._input_layer is None or tuple(self._input_layer.batch_shape) != shape:
                self._input_layer = InputLayer(batch_shape=(None,) + shape[1:], dtype=self.dtype)
        if not self._stack:
            raise ValueError(f"Sequential model {self.name} cannot be built because it has no layers.")
        self._build_graph(self._input_layer)

    def _build_from_arrays(self, inputs):
        if not self.built:
            shape = tuple(getattr(inputs, "shape", ()))
            if len(shape) < 1:
                raise ValueError(f"Cannot build Sequential model '{self.name}' from input of shape {shape}")
            self.build((None,) + shape[1:])

    def _summary_rows(self):
        if not self.built:
            return [(layer, "?", None) for layer in self._stack]
        return [(layer, shape, None) for (layer, shape, _) in Model._summary_rows(self)
                if not isinstance(layer, InputLayer)]

    @property
    def input_shape(self):
        if not self.built:
            raise AttributeError(f"Sequential model '{self.name}' has no defined input shape yet.")
        return Model.input_shape.fget(self)

    def get_config(self):
        from .saving import serialize_layer
        layers = [serialize_layer(layer) for layer in self._layers]
        config = {"name": self.name, "trainable": self.trainable, "layers": layers}
        if self._input_layer is not None:
            config["build_input_shape"] = list(self._input_layer.batch_shape)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .saving import deserialize_layer
        model = cls(name=config["name"])
        for spec in config["layers"]:
            model.add(deserialize_layer(spec, custom_objects), rebuild=False)
        if not model.built and model._input_layer is None and config.get("build_input_shape"):
            model._input_layer = InputLayer(batch_shape=config["build_input_shape"])
        model._maybe_rebuild()
        if not config.get("trainable", True):
            model.trainable = False
        return model
