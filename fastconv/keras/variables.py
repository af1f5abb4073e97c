"""A trainable (or not) array owned by a layer, updated in place by optimizers."""
import numpy as np


class Variable:
    """A named NumPy array with the metadata optimizers and savers need.

    Attributes:
        value: the ndarray; optimizers update it in place (`value[...] = ...`).
        name: e.g. "kernel", "bias", "moving_mean"; `path` adds the layer name.
        trainable: whether optimizers update it (and it counts as trainable).
        constraint: None or callable(array) -> array, applied after each update.
        regularizer: None or an object with __call__(array) -> float penalty and
            gradient(array) -> array, added to the loss and to the gradient.
    """

    def __init__(self, value, name, trainable=True, constraint=None, regularizer=None, path=None):
        self.value = np.asarray(value)
        self.name = name
        self.path = path or name
        self.trainable = trainable
        self.constraint = constraint
        self.regularizer = regularizer

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    def assign(self, value):
        value = np.asarray(value)
        if value.shape != self.value.shape:
            raise ValueError(
                f"Cannot assign a value of shape {value.shape} to variable '{self.path}' of shape "
                f"{self.value.shape}"
            )
        self.value[...] = value

    def numpy(self):
        return self.value.copy()

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}>"
