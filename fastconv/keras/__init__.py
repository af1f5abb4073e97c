"""fastconv.keras: a Keras-compatible API on fastconv's convolution and pooling kernels.

Classic Keras tutorials run with only their imports changed::

    import fastconv.keras as keras
    from fastconv.keras.models import Sequential
    from fastconv.keras.layers import Conv2D, MaxPooling2D, Dropout, Flatten, Dense
    from fastconv.keras import backend as K

Keras 3 semantics (names, defaults, shapes, messages) on NumPy arrays, channels_last (NHWC) end to end.
"""
import importlib

from . import (
    activations,
    backend,
    callbacks,
    constraints,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    utils,
)
from .layers import Input, Layer
from .models import Model, Sequential, load_model

__version__ = "0.1.0"

# Loaded on first use: `datasets` may download data; `wrappers` needs scikit-learn.
_LAZY = ("datasets", "wrappers")


def __getattr__(name):
    if name in _LAZY:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                raise AttributeError(f"module {__name__!r} has no attribute {name!r} ({err})") from None
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["activations", "backend", "callbacks", "constraints", "datasets", "initializers", "layers", "losses",
           "metrics", "models", "optimizers", "regularizers", "utils", "wrappers", "Input", "Layer", "Model",
           "Sequential", "load_model"]
