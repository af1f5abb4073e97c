"""Keras's `constraints` module: projections applied to a weight after each optimizer step.

`c(w)` returns a new, projected array (the optimizer writes it back into the variable).
Norms are taken over `axis` (0 by default, i.e. per output unit of a Dense kernel; use
`axis=[0, 1, 2]` for a channels_last Conv2D kernel), with Keras's `epsilon` in the divisor.
"""
import numpy as np

from fastconv.keras import backend
from fastconv.keras.utils.naming import ObjectRegistry


def _axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


class Constraint:
    """Base class: `__call__(w) -> projected w`, `get_config()`."""

    def __call__(self, w):
        return np.asarray(w)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _norms(w, axis):
    return np.sqrt(np.sum(np.square(w), axis=_axis(axis), keepdims=True))


class MaxNorm(Constraint):
    """Rescales the slices along `axis` whose L2 norm exceeds `max_value` down to it.

    Args:
        max_value: the largest norm allowed (> 0).
        axis: axis or axes along which norms are computed.
    """

    def __init__(self, max_value=2, axis=0):
        if max_value is None or max_value <= 0:
            raise ValueError(f"max_value must be positive. Received: max_value={max_value}")
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0, self.max_value)
        return w * (desired / (backend.epsilon() + norms))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Sets negative weights to zero."""

    def __call__(self, w):
        w = np.asarray(w)
        return w * (w >= 0)


class UnitNorm(Constraint):
    """Scales the slices along `axis` to unit L2 norm."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        return w / (backend.epsilon() + _norms(w, self.axis))

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Moves slice norms into `[min_value, max_value]` at speed `rate` (1 = at once).

    The new norm is `rate * clip(norm, min_value, max_value) + (1 - rate) * norm`.
    """

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        if min_value > max_value:
            raise ValueError(
                "min_value must not exceed max_value. "
                f"Received: min_value={min_value}, max_value={max_value}"
            )
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        norms = _norms(w, self.axis)
        desired = self.rate * np.clip(norms, self.min_value, self.max_value)
        desired = desired + (1 - self.rate) * norms
        return w * (desired / (backend.epsilon() + norms))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


# Keras 3 snake_case aliases and Keras 2's old spellings.
max_norm = maxnorm = MaxNorm
non_neg = nonneg = NonNeg
unit_norm = unitnorm = UnitNorm
min_max_norm = MinMaxNorm

_CLASSES = [MaxNorm, NonNeg, UnitNorm, MinMaxNorm]
_BY_NAME = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME.update({"max_norm": MaxNorm, "maxnorm": MaxNorm, "non_neg": NonNeg, "nonneg": NonNeg,
                 "unit_norm": UnitNorm, "unitnorm": UnitNorm, "min_max_norm": MinMaxNorm})


_REGISTRY = ObjectRegistry("constraint", _BY_NAME)
serialize, deserialize, get = _REGISTRY.serialize, _REGISTRY.deserialize, _REGISTRY.get
