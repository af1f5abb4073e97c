"""Model: the functional graph (`Model(inputs, outputs)`), its weights, forward and backward.

Training, evaluation and prediction live in `trainer.Trainer`; saving in `saving`.
"""
import numpy as np

from ..layers.base import KerasTensor, Layer, shape_to_str
from ..layers.core import InputLayer
from . import summary as summary_utils
from .trainer import Trainer


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


class Model(Trainer, Layer):
    """A graph of layers from symbolic inputs to outputs (Keras's functional API).

    `Model(inputs, outputs, name=None)`; inputs/outputs may be one tensor, a list or a dict.
    A Model is itself a Layer: it can be called on symbolic tensors or arrays and nested.
    """

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        if type(self) is Model and (inputs is None or outputs is None):
            raise ValueError(
                "A functional Model needs `inputs` and `outputs` (subclassed models with a custom `call` "
                f"are not supported: fastconv has no automatic differentiation). Received: inputs={inputs}, "
                f"outputs={outputs}"
            )
        Layer.__init__(self, name=name, trainable=True, **kwargs)
        Trainer.__init__(self)
        if inputs is not None:
            self._init_graph(inputs, outputs)
        if not trainable:
            self.trainable = False

    # ------------------------------------------------------------------ graph
    def _init_graph(self, inputs, outputs):
        self._input_names_dict = list(inputs.keys()) if isinstance(inputs, dict) else None
        self._output_dict_keys = list(outputs.keys()) if isinstance(outputs, dict) else None
        self._inputs_struct = inputs
        self.inputs = list(inputs.values()) if isinstance(inputs, dict) else _as_list(inputs)
        self.outputs = list(outputs.values()) if isinstance(outputs, dict) else _as_list(outputs)
        self._single_output = not isinstance(outputs, (list, tuple, dict))
        for t in self.inputs + self.outputs:
            if not isinstance(t, KerasTensor):
                raise ValueError(
                    "All `inputs` and `outputs` of a functional model must be symbolic tensors returned by "
                    f"`keras.Input` or by a layer. Received: {t!r}"
                )
        for t in self.inputs:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(
                    f"Model inputs must come from `keras.Input`. Received: {t!r} (produced by layer "
                    f"'{t.node.layer.name}')"
                )
        # Topological order of the nodes between inputs and outputs (depth-first from the outputs).
        input_ids = {id(t) for t in self.inputs}
        order, seen, visiting = [], set(), set()

        def visit(tensor):
            node = tensor.node
            if id(node) in seen:
                return
            if id(tensor) in input_ids:
                seen.add(id(node))
                return
            if node.is_input:
                raise ValueError(
                    f"Graph disconnected: cannot obtain the value of tensor {tensor!r} from the model "
                    f"inputs. The input '{node.layer.name}' was not passed to `inputs`."
                )
            if id(node) in visiting:  # pragma: no cover (graphs built by calls are acyclic)
                raise ValueError("The graph has a cycle")
            visiting.add(id(node))
            for t in node.inputs:
                visit(t)
            visiting.discard(id(node))
            seen.add(id(node))
            order.append(node)

        for t in self.outputs:
            visit(t)
        self._nodes = order
        layers = [t.node.layer for t in self.inputs]
        for node in order:
            if node.layer not in layers:
                layers.append(node.layer)
        names = [layer.name for layer in layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"All layer names should be unique. The model has duplicate names: {duplicates}"
            )
        self._layers = layers
        self.built = True

    @property
    def layers(self):
        return [layer for layer in self._layers if not isinstance(layer, InputLayer)]

    def _sublayers(self):
        return self.layers

    def _flat_layers(self):
        """Every leaf layer (nested models expanded), each once."""
        out = []
        for layer in self.layers:
            for leaf in (layer._flat_layers() if isinstance(layer, Model) else [layer]):
                if leaf not in out:
                    out.append(leaf)
        return out

    def get_layer(self, name=None, index=None):
        if index is not None and name is not None:
            raise ValueError(
                f"Provide only a layer name or a layer index. Received: index={index}, name={name}."
            )
        if index is not None:
            if len(self.layers) <= index:
                raise ValueError(
                    f"Was asked to retrieve layer at index {index} but model only has {len(self.layers)} layers."
                )
            return self.layers[index]
        if name is not None:
            for layer in self._layers:
                if layer.name == name:
                    return layer
            raise ValueError(
                f"No such layer: {name}. Existing layers are: {[layer.name for layer in self._layers]}."
            )
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    # ------------------------------------------------------------------ weights
    @property
    def weights(self):
        out, seen = [], set()
        for layer in self._flat_layers():
            for v in layer.weights:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        out, seen = [], set()
        for layer in self._flat_layers():
            for v in layer.trainable_weights:
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self):
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    non_trainable_variables = non_trainable_weights

    @property
    def losses(self):
        return [loss for layer in self._flat_layers() for loss in layer.losses]

    def get_weights(self):
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        variables = self.weights
        if len(weights) != len(variables):
            raise ValueError(
                f"You called `set_weights(weights)` on model '{self.name}' with a weight list of length "
                f"{len(weights)}, but the model was expecting {len(variables)} weights."
            )
        for v, w in zip(variables, weights):
            w = np.asarray(w)
            if w.shape != v.shape:
                raise ValueError(
                    f"Weight '{v.path}' has shape {v.shape}, which is not compatible with the provided "
                    f"weight shape {w.shape}."
                )
        for v, w in zip(variables, weights):
            v.value[...] = w

    def count_params(self):
        if not self.built:
            raise ValueError(
                "This model has not yet been built. Build the model first by calling `build()` or by calling "
                "the model on a batch of data."
            )
        return int(sum(int(np.prod(v.shape)) for v in self.weights))

    def _zero_grads(self):
        for layer in self._flat_layers():
            layer._grads = {}

    def _gradients(self):
        """[(grad, variable)] for every trainable variable, regularizer gradients included."""
        pairs = []
        for layer in self._flat_layers():
            for v in layer.trainable_weights:
                g = layer._grads.get(id(v))
                if g is None:
                    g = np.zeros_like(v.value)
                if v.regularizer is not None:
                    g = g + np.asarray(v.regularizer.gradient(v.value), dtype=v.dtype)
                pairs.append((g, v))
        return pairs

    # ------------------------------------------------------------------ shapes
    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_names(self):
        return [t.node.layer.name for t in self.inputs]

    @property
    def output_names(self):
        if self._output_dict_keys is not None:
            return list(self._output_dict_keys)
        return [t.node.layer.name for t in self.outputs]

    def _check_input_arrays(self, arrays):
        if len(arrays) != len(self.inputs):
            raise ValueError(
                f'Layer "{self.name}" expects {len(self.inputs)} input(s), but it received {len(arrays)} '
                "input tensors."
            )
        for i, (a, t) in enumerate(zip(arrays, self.inputs)):
            expected = t.shape
            if a.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected[1:], a.shape[1:])):
                raise ValueError(
                    f'Input {i} of layer "{self.name}" is incompatible with the layer: expected '
                    f"shape={shape_to_str(expected)}, found shape={shape_to_str(a.shape)}"
                )

    # ------------------------------------------------------------------ forward / backward
    def _forward(self, arrays, training):
        """Outputs (a list) for the input arrays (a list); in training the node caches are kept."""
        values = {id(t): a for t, a in zip(self.inputs, arrays)}
        caches = {}
        for node in self._nodes:
            ins = [values[id(t)] for t in node.inputs]
            layer = node.layer
            y = layer.call(ins if layer._multi_input else ins[0], training=training)
            if training:
                caches[id(node)] = layer._cache
                layer._cache = None
            values[id(node.outputs[0])] = y
        self._node_caches = caches
        return [values[id(t)] for t in self.outputs]

    def _requires_grad(self):
        """ids of tensors whose gradient some trainable variable upstream needs."""
        needed = set()
        for node in self._nodes:
            if node.layer.trainable_weights or any(id(t) in needed for t in node.inputs):
                needed.add(id(node.outputs[0]))
        return needed

    def _backward(self, grad_outputs, needs_input=False):
        """Backpropagate the output gradients; returns the input gradients when needs_input."""
        grads = {}
        for t, g in zip(self.outputs, grad_outputs):
            if g is not None:
                grads[id(t)] = grads[id(t)] + g if id(t) in grads else g
        needed = self._requires_grad()
        caches = self._node_caches
        for node in reversed(self._nodes):
            g = grads.pop(id(node.outputs[0]), None)
            if g is None:
                continue
            layer = node.layer
            wants = any(id(t) in needed for t in node.inputs) or (needs_input and self._reaches_input(node))
            layer._cache = caches[id(node)]
            gin = layer.backward(g, needs_input=wants)
            layer._cache = None
            if not wants:
                continue
            gins = gin if layer._multi_input else [gin]
            for t, gi in zip(node.inputs, gins):
                if id(t) in grads:
                    grads[id(t)] = grads[id(t)] + gi
                else:
                    grads[id(t)] = gi
        self._node_caches = {}
        if needs_input:
            return [grads.get(id(t)) for t in self.inputs]
        return None

    def _reaches_input(self, node):
        if not hasattr(self, "_reach_cache"):
            self._reach_cache = {}
        key = id(node)
        if key not in self._reach_cache:
            input_ids = {id(t) for t in self.inputs}
            stack, found, seen = list(node.inputs), False, set()
            while stack and not found:
                t = stack.pop()
                if id(t) in input_ids:
                    found = True
                elif id(t) not in seen:
                    seen.add(id(t))
                    stack.extend(t.node.inputs)
            self._reach_cache[key] = found
        return self._reach_cache[key]

    # Layer protocol, so a Model nests inside another model.
    @property
    def _multi_input(self):
        return len(self.inputs) > 1

    def compute_output_shape(self, input_shape):
        return self.output_shape

    def call(self, inputs, training=False):
        arrays = list(inputs) if self._multi_input else [inputs]
        outs = self._forward(arrays, training)
        if training:
            self._cache = self._node_caches
            self._node_caches = {}
        return outs[0] if len(outs) == 1 else outs

    def backward(self, grad_output, needs_input=True):
        self._node_caches = self._cache
        self._cache = None
        grads = grad_output if len(self.outputs) > 1 else [grad_output]
        gin = self._backward(grads, needs_input=needs_input)
        if not needs_input:
            return None
        return gin if self._multi_input else gin[0]

    def __call__(self, inputs, training=None, **kwargs):
        if not self.built and not isinstance(inputs, KerasTensor):
            self._build_from_arrays(inputs)
        return Layer.__call__(self, inputs, training=training, **kwargs)

    def _build_from_arrays(self, inputs):
        pass

    def _maybe_build(self, input_shape):
        pass

    def _check_input_shape(self, shapes):
        shapes = shapes if self._multi_input else [shapes]
        for i, (s, t) in enumerate(zip(shapes, self.inputs)):
            if len(s) != len(t.shape) or any(e is not None and a is not None and e != a
                                             for e, a in zip(t.shape[1:], s[1:])):
                raise ValueError(
                    f'Input {i} of layer "{self.name}" is incompatible with the layer: expected '
                    f"shape={shape_to_str(t.shape)}, found shape={shape_to_str(tuple(s))}"
                )

    # ------------------------------------------------------------------ summary
    def _summary_rows(self):
        node_ids = {id(n) for n in self._nodes}
        sequential_like = all(len(n.inputs) <= 1 for n in self._nodes) and len(self.inputs) == 1 \
            and len(self.outputs) == 1 and all(
                sum(1 for n in layer._inbound_nodes if id(n) in node_ids) <= 1 for layer in self.layers) \
            and self._is_chain()
        rows = []
        for layer in self._layers:
            nodes = [n for n in layer._inbound_nodes if id(n) in node_ids or n.is_input]
            shape = summary_utils.format_shape(
                [n.outputs[0].shape for n in nodes][0] if len(nodes) == 1 else [n.outputs[0].shape for n in nodes])
            if sequential_like:
                connected = None
            else:
                links = []
                for n in nodes:
                    for t in n.inputs:
                        producer = t.node.layer
                        links.append(f"{producer.name}[{producer._inbound_nodes.index(t.node)}][{t.index}]")
                connected = ", ".join(links) or "-"
            rows.append((layer, shape, connected))
        return rows

    def _is_chain(self):
        consumers = {}
        for n in self._nodes:
            for t in n.inputs:
                consumers[id(t)] = consumers.get(id(t), 0) + 1
        return all(c == 1 for c in consumers.values())

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        summary_utils.print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn,
                                    show_trainable=show_trainable)

    # ------------------------------------------------------------------ config
    def get_config(self):
        layer_configs = []
        for layer in self._layers:
            inbound = []
            for node in layer._inbound_nodes:
                if node.is_input or id(node) not in {id(n) for n in self._nodes}:
                    continue
                inbound.append([[t.node.layer.name, t.node.layer._inbound_nodes.index(t.node), t.index]
                                for t in node.inputs])
            from .saving import _class_name
            layer_configs.append({
                "class_name": _class_name(layer),
                "name": layer.name,
                "config": layer.get_config(),
                "inbound_nodes": inbound,
            })

        def ref(t):
            return [t.node.layer.name, t.node.layer._inbound_nodes.index(t.node), t.index]

        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": layer_configs,
            "input_layers": [ref(t) for t in self.inputs],
            "output_layers": [ref(t) for t in self.outputs],
            "single_output": self._single_output,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .saving import deserialize_layer
        created, node_outputs = {}, {}
        pending = list(config["layers"])
        for spec in pending:
            if spec["class_name"] == "InputLayer":
                layer = deserialize_layer(spec, custom_objects)
                created[spec["name"]] = layer
                node_outputs[(spec["name"], 0)] = layer.output
            else:
                created[spec["name"]] = deserialize_layer(spec, custom_objects)
        # Replay the calls until every node exists (inbound layers may come later in the list).
        remaining = [(spec, i, nodes) for spec in pending for i, nodes in enumerate(spec["inbound_nodes"])]
        progress = True
        while remaining and progress:
            progress = False
            for item in list(remaining):
                spec, index, inbound = item
                keys = [(name, node_index) for name, node_index, _ in inbound]
                if all(k in node_outputs for k in keys) and all(
                        (spec["name"], j) in node_outputs for j in range(index)):
                    tensors = [node_outputs[k] for k in keys]
                    layer = created[spec["name"]]
                    out = layer(tensors if layer._multi_input else tensors[0])
                    node_outputs[(spec["name"], index)] = out
                    remaining.remove(item)
                    progress = True
        if remaining:
            raise ValueError(f"Cannot rebuild the model graph from its config: unresolved layers "
                             f"{sorted({item[0]['name'] for item in remaining})}")
        inputs = [node_outputs[(name, index)] for name, index, _ in config["input_layers"]]
        outputs = [node_outputs[(name, index)] for name, index, _ in config["output_layers"]]
        if config.get("single_output", len(outputs) == 1) and len(outputs) == 1:
            outputs = outputs[0]
        model = cls(inputs=inputs if len(inputs) > 1 else inputs[0], outputs=outputs, name=config["name"])
        model.trainable = config.get("trainable", True)
        return model

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


Functional = Model
