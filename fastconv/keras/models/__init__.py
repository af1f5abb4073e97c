"""Keras's `models` module: Sequential, the functional Model, loading and saving."""
from .model import Functional, Model
from .saving import load_model, model_from_config, model_from_json, save_model
from .sequential import Sequential


def clone_model(model, custom_objects=None):
    """A new model with the same architecture and freshly initialized weights."""
    from .saving import model_config
    return model_from_config(model_config(model), custom_objects)


__all__ = ["Model", "Functional", "Sequential", "load_model", "save_model", "model_from_config",
           "model_from_json", "clone_model"]
