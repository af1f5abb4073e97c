"""Saving and loading: HDF5 files holding the model config (JSON attributes) and the weights.

Layout of a model file (".keras", ".h5" or ".hdf5", all HDF5):
    attrs: format ("fastconv.keras"), format_version, backend ("fastconv"), model_config (JSON),
           training_config (JSON, when compiled)
    model_weights/<layer name>/<weight name>  one dataset per variable; the group's attr
           weight_names lists them in the layer's order.
A weights file (save_weights) holds only model_weights.

Loading instantiates only the layer classes of fastconv.keras.layers (and those passed in
custom_objects) from JSON: nothing in a file is ever executed or unpickled. Files are written to a
temporary file in the same directory, flushed and fsync'ed, then renamed over the target with
os.replace, so an interrupted save leaves the previous file (or none), never half a file.
"""
import contextlib
import json
import os

import numpy as np

from ..._atomic import atomic_write

FORMAT = "fastconv.keras"
FORMAT_VERSION = 1
MODEL_EXTENSIONS = (".keras", ".h5", ".hdf5")


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover
        raise ImportError("Saving and loading models requires h5py: `pip install h5py`.") from None
    return h5py


# --------------------------------------------------------------------------- config
def serialize_layer(layer):
    return {"class_name": _class_name(layer), "config": layer.get_config()}


def _class_name(layer):
    from .model import Model
    from .sequential import Sequential
    if isinstance(layer, Sequential):
        return "Sequential"
    if type(layer) is Model:
        return "Functional"
    return type(layer).__name__


def _registry(custom_objects):
    from ..layers import LAYER_CLASSES
    from .model import Model
    from .sequential import Sequential
    table = dict(LAYER_CLASSES)
    table.update({"Sequential": Sequential, "Functional": Model, "Model": Model})
    table.update(custom_objects or {})
    return table


def deserialize_layer(spec, custom_objects=None):
    if not isinstance(spec, dict) or "class_name" not in spec or "config" not in spec:
        raise ValueError(f"A layer config must be a dict with 'class_name' and 'config'. Received: {spec!r}")
    table = _registry(custom_objects)
    class_name = spec["class_name"]
    if class_name not in table:
        raise ValueError(
            f"Unknown layer: '{class_name}'. Please ensure you are passing it in `custom_objects`. "
            f"Known layers: {sorted(table)}"
        )
    cls = table[class_name]
    config = dict(spec["config"])
    if custom_objects:
        for key, value in list(config.items()):
            if isinstance(value, str) and value in custom_objects and key == "activation":
                config[key] = custom_objects[value]
    from .model import Model
    if isinstance(cls, type) and issubclass(cls, Model):
        return cls.from_config(config, custom_objects=custom_objects)
    if "batch_input_shape" in config and config["batch_input_shape"] is not None:
        config["batch_input_shape"] = tuple(config["batch_input_shape"])
    return cls.from_config(config)


def model_config(model):
    return serialize_layer(model)


def model_from_config(config, custom_objects=None):
    return deserialize_layer(config, custom_objects)


def model_from_json(json_string, custom_objects=None):
    return model_from_config(json.loads(json_string), custom_objects)


def _training_config(model):
    from .. import losses, metrics, optimizers
    if not model.compiled:
        return None

    def loss_spec(loss):
        if isinstance(loss, dict):
            return {k: loss_spec(v) for k, v in loss.items()}
        if isinstance(loss, (list, tuple)):
            return [loss_spec(v) for v in loss]
        return None if loss is None else losses.serialize(losses.get(loss))

    def metric_spec(metric):
        if isinstance(metric, dict):
            return {k: metric_spec(v) for k, v in metric.items()}
        if isinstance(metric, (list, tuple)):
            return [metric_spec(v) for v in metric]
        if isinstance(metric, str) or metric is None:
            return metric
        if isinstance(metric, metrics.Metric):
            return metrics.serialize(metric)
        return getattr(metric, "__name__", str(metric))

    config = model._compile_config
    return {
        "loss": loss_spec(config["loss"]),
        "metrics": metric_spec(config["metrics"]),
        "loss_weights": config["loss_weights"],
        "optimizer_config": {"class_name": type(model.optimizer).__name__,
                             "config": optimizers.serialize(model.optimizer)["config"]
                             if hasattr(optimizers, "serialize") else model.optimizer.get_config()},
    }


# --------------------------------------------------------------------------- atomic write
def checksummed(value):
    """h5py options that store a Fletcher-32 checksum with a dataset, so damage is detected on read.

    HDF5 checksums chunked datasets only; scalars and empty arrays (nothing to damage) go plain.
    """
    return {"fletcher32": True, "chunks": True} if np.ndim(value) and np.size(value) else {}


def _atomic_h5(filepath, write, overwrite):
    h5py = _h5py()
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(
            f"The file {filepath} already exists and overwrite=False. Received: filepath={filepath!r}"
        )

    def write_h5(tmp):
        with h5py.File(tmp, "w") as f:
            write(f)

    atomic_write(filepath, write_h5)


def _write_weights(group, model):
    for layer in model._flat_layers():
        sub = group.create_group(layer.name)
        names = []
        for v in layer.weights:
            sub.create_dataset(v.name, data=v.value, **checksummed(v.value))
            names.append(v.name)
        sub.attrs["weight_names"] = json.dumps(names)
    group.attrs["layer_names"] = json.dumps([layer.name for layer in model._flat_layers()])


def _read_weights(group, model, skip_mismatch=False, by_name=False):
    saved_layers = json.loads(group.attrs["layer_names"])
    layers = [layer for layer in model._flat_layers()]
    if by_name:
        pairs = [(layer, layer.name) for layer in layers if layer.name in saved_layers]
    else:
        with_weights = [layer for layer in layers if layer.weights]
        saved_with_weights = [n for n in saved_layers if json.loads(group[n].attrs["weight_names"])]
        if len(with_weights) != len(saved_with_weights):
            raise ValueError(
                f"Weight file has {len(saved_with_weights)} layers with weights, but the model has "
                f"{len(with_weights)} layers with weights. Received: saved layers {saved_with_weights}, "
                f"model layers {[layer.name for layer in with_weights]}"
            )
        pairs = list(zip(with_weights, saved_with_weights))
    updates = []
    for layer, saved_name in pairs:
        sub = group[saved_name]
        names = json.loads(sub.attrs["weight_names"])
        values = [np.asarray(sub[n][()]) for n in names]
        if len(values) != len(layer.weights) or any(
                v.shape != w.shape for v, w in zip(values, layer.weights)):
            if skip_mismatch:
                continue
            raise ValueError(
                f"Layer '{layer.name}' expects weights of shapes {[w.shape for w in layer.weights]}, but the "
                f"file holds {[v.shape for v in values]} for layer '{saved_name}'."
            )
        updates.append((layer, values))
    for layer, values in updates:
        for variable, value in zip(layer.weights, values):
            variable.value[...] = value


# --------------------------------------------------------------------------- public
def save_model(model, filepath, overwrite=True, include_optimizer=True, **kwargs):
    """Write the model's config, weights (and training config when compiled) to one HDF5 file."""
    kwargs.pop("save_format", None)
    if kwargs:
        raise TypeError(f"Invalid keyword argument(s) in `save()`: {tuple(kwargs)}. Received: {kwargs}")
    path = os.fspath(filepath)
    if not path.endswith(MODEL_EXTENSIONS):
        raise ValueError(
            "Invalid filepath extension for saving. Please add either a `.keras` extension or a `.h5` "
            f"extension (both are HDF5 files in fastconv). Received: filepath={path}"
        )
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built yet; it has no weights to save. Build it (with an input shape "
            "or by calling it on data) first."
        )
    config = json.dumps(model_config(model))
    training = _training_config(model) if include_optimizer else None

    def write(f):
        from .. import backend
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["backend"] = "fastconv"
        f.attrs["floatx"] = backend.floatx()
        f.attrs["model_config"] = config
        if training is not None:
            f.attrs["training_config"] = json.dumps(training)
        _write_weights(f.create_group("model_weights"), model)

    _atomic_h5(path, write, overwrite)


def _check_format(f, path):
    if f.attrs.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a fastconv.keras model or weights file (no '{FORMAT}' format attribute). "
            f"Received: filepath={path!r}"
        )


@contextlib.contextmanager
def _reading(path):
    """An HDF5 file open for reading; any failure to read it becomes one clear ValueError."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            yield f
    except (OSError, KeyError, RuntimeError) as err:  # h5py's errors for damaged files and checksums
        raise ValueError(
            f"Cannot read {path}: the file is damaged or is not an HDF5 model file ({err}). "
            f"Received: filepath={path!r}"
        ) from err


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model saved by `Model.save`: architecture, weights and (if compiled) compile settings."""
    from .. import losses, optimizers
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise ValueError(f"File not found: filepath={path}. Please ensure the file is an accessible `.keras` "
                         "or `.h5` file.")
    with _reading(path) as f:
        _check_format(f, path)
        if "model_config" not in f.attrs:
            raise ValueError(f"{path} holds weights only; use `model.load_weights`. Received: filepath={path!r}")
        model = model_from_config(json.loads(f.attrs["model_config"]), custom_objects)
        _read_weights(f["model_weights"], model)
        training = json.loads(f.attrs["training_config"]) if "training_config" in f.attrs else None
    if compile and training is not None:
        opt = training["optimizer_config"]
        optimizer = optimizers.get({"class_name": opt["class_name"], "config": opt["config"]})

        def loss_obj(spec):
            if isinstance(spec, dict) and "class_name" not in spec:
                return {k: loss_obj(v) for k, v in spec.items()}
            if isinstance(spec, list):
                return [loss_obj(v) for v in spec]
            if spec is None:
                return None
            try:
                return losses.deserialize(spec, custom_objects=custom_objects)
            except ValueError as err:
                raise ValueError(
                    f"Cannot restore the compiled loss {spec!r}: {err} Pass it in `custom_objects`, or load with "
                    "compile=False."
                ) from None

        model.compile(optimizer=optimizer, loss=loss_obj(training["loss"]), metrics=training["metrics"],
                      loss_weights=training["loss_weights"])
    return model


def save_weights(model, filepath, overwrite=True, **kwargs):
    """Write only the weights (HDF5)."""
    kwargs.pop("save_format", None)
    if kwargs:
        raise TypeError(f"Invalid keyword argument(s) in `save_weights()`: {tuple(kwargs)}. Received: {kwargs}")
    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built yet; it has no weights to save.")

    def write(f):
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        _write_weights(f.create_group("model_weights"), model)

    _atomic_h5(filepath, write, overwrite)


def load_weights(model, filepath, skip_mismatch=False, by_name=False, **kwargs):
    """Load weights saved by save_weights or save, layer by layer in order (or by layer name)."""
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise ValueError(f"File not found: filepath={path}.")
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built yet; build it (give it an input shape) before loading weights."
        )
    with _reading(path) as f:
        _check_format(f, path)
        _read_weights(f["model_weights"], model, skip_mismatch=skip_mismatch, by_name=by_name)
