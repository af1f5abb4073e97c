"""Keras's `regularizers` module: weight penalties added to the loss, with their gradients.

`reg(w)` is the penalty (a float) and `reg.gradient(w)` its derivative with respect to `w`;
the trainer adds both for every variable that has a regularizer.
Keras 3 defaults: `L1(l1=0.01)`, `L2(l2=0.01)`, `L1L2(l1=0.0, l2=0.0)` (`l1_l2` is the same
class, as in Keras 3; Keras 2's `l1_l2()` function defaulted both to 0.01).
"""
import math
import numbers

import numpy as np

from fastconv.keras.utils.naming import ObjectRegistry


def _validate_penalty(value, name):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isinf(value)
            or math.isnan(value) or value < 0):
        raise ValueError(
            f"Invalid value for argument {name}: expected a non-negative float. "
            f"Received: {name}={value!r}"
        )
    return float(value)


class Regularizer:
    """Base class: `__call__(w) -> float`, `gradient(w) -> array`, `get_config()`."""

    def __call__(self, x):
        return 0.0

    def gradient(self, x):
        return np.zeros_like(np.asarray(x))

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """`l1 * sum(|w|) + l2 * sum(w^2)`.

    Args:
        l1: non-negative L1 factor.
        l2: non-negative L2 factor.
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _validate_penalty(0.0 if l1 is None else l1, "l1")
        self.l2 = _validate_penalty(0.0 if l2 is None else l2, "l2")

    def __call__(self, x):
        x = np.asarray(x)
        penalty = 0.0
        if self.l1:
            penalty += self.l1 * float(np.sum(np.abs(x)))
        if self.l2:
            penalty += self.l2 * float(np.sum(np.square(x)))
        return penalty

    def gradient(self, x):
        x = np.asarray(x)
        grad = np.zeros_like(x)
        if self.l1:
            grad = grad + self.l1 * np.sign(x)
        if self.l2:
            grad = grad + 2 * self.l2 * x
        return grad.astype(x.dtype, copy=False)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """`l1 * sum(|w|)`; `l1` defaults to 0.01."""

    def __init__(self, l1=0.01):
        super().__init__(l1=0.01 if l1 is None else l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """`l2 * sum(w^2)`; `l2` defaults to 0.01."""

    def __init__(self, l2=0.01):
        super().__init__(l2=0.01 if l2 is None else l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2

_BY_NAME = {"L1": L1, "L2": L2, "L1L2": L1L2, "l1": L1, "l2": L2, "l1_l2": L1L2}


_REGISTRY = ObjectRegistry("regularizer", _BY_NAME)
serialize, deserialize, get = _REGISTRY.serialize, _REGISTRY.deserialize, _REGISTRY.get
