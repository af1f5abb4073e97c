"""Keras's `layers` module on fastconv's kernels (NHWC end to end)."""
from .base import KerasTensor, Layer
from .convolutional import Conv2D, Convolution2D
from .core import (
    Activation,
    Add,
    Concatenate,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    ReLU,
    Reshape,
    Softmax,
)
from .normalization import BatchNormalization
from .pooling import (
    AveragePooling2D,
    AvgPool2D,
    GlobalAveragePooling2D,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    GlobalMaxPooling2D,
    MaxPool2D,
    MaxPooling2D,
)


def add(inputs, **kwargs):
    """Functional interface to the Add layer."""
    return Add(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Functional interface to the Concatenate layer."""
    return Concatenate(axis=axis, **kwargs)(inputs)


# Class names a saved model may name; loading only ever instantiates these (or custom_objects).
LAYER_CLASSES = {
    cls.__name__: cls
    for cls in (InputLayer, Dense, Activation, ReLU, Softmax, Dropout, Flatten, Reshape, Add, Concatenate,
                Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
                BatchNormalization)
}

__all__ = [
    "Layer", "KerasTensor", "Input", "InputLayer", "Dense", "Activation", "ReLU", "Softmax", "Dropout",
    "Flatten", "Reshape", "Add", "Concatenate", "add", "concatenate", "Conv2D", "Convolution2D",
    "MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D",
    "GlobalAvgPool2D", "GlobalMaxPooling2D", "GlobalMaxPool2D", "BatchNormalization",
]
