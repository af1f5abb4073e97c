"""Keras's `activations` module on NumPy arrays, with the matching gradients.

Every built-in is a plain function with Keras 3's signature (`softmax(x, axis=-1)`,
`leaky_relu(x, negative_slope=0.2)`, ...). Layers resolve them with `get`, and
backpropagate with `gradient(fn, x, y, grad_y)`, which knows every built-in (also
wrapped in `functools.partial` with keyword arguments) and refuses other callables.

Float inputs keep their dtype; integer inputs are computed in `backend.floatx()`.
"""
import functools
import math

import numpy as np
from scipy import special

from fastconv.keras import backend
from fastconv.keras.utils.naming import lookup

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _as_float(x):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(backend.floatx())
    return x


def _sigmoid(x):
    # exp(-|x|) never overflows, so neither branch warns.
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------- forward


def linear(x):
    """Identity: returns `x` unchanged."""
    return x


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Rectified linear unit, Keras 3's generalised form.

    Args:
        x: input array.
        negative_slope: slope for values below `threshold`.
        max_value: if given, the output is clipped to at most this value.
        threshold: values above it pass unchanged (below: 0 or the slope part).

    Returns:
        `max(x, 0)` for the defaults; otherwise
        `x` if `threshold < x < max_value`, `max_value` above, and
        `negative_slope * (x - threshold)` below the threshold.

    Raises:
        ValueError: for a negative `negative_slope` or `max_value`.
    """
    if negative_slope is None or negative_slope < 0:
        raise ValueError(
            "negative_slope for relu must be a non-negative number. "
            f"Received: negative_slope={negative_slope}"
        )
    if max_value is not None and max_value < 0:
        raise ValueError(
            f"max_value for relu must be a non-negative number. Received: max_value={max_value}"
        )
    x = _as_float(x)
    if negative_slope == 0 and max_value is None and threshold == 0:
        return np.maximum(x, 0)
    positive = _relu_positive_mask(x, max_value, threshold)
    out = np.where(positive, x, 0).astype(x.dtype, copy=False)
    if max_value is not None:
        out = np.where(x >= max_value, np.asarray(max_value, x.dtype), out)
    if negative_slope != 0:
        out = out - negative_slope * np.maximum(threshold - x, 0)
    return out.astype(x.dtype, copy=False)


def _relu_positive_mask(x, max_value, threshold):
    """Where the generalised relu passes x through with slope 1."""
    mask = x > threshold
    if max_value is not None:
        mask &= (x > 0) & (x < max_value)
    return mask


def leaky_relu(x, negative_slope=0.2):
    """`x` for `x >= 0`, `negative_slope * x` otherwise."""
    x = _as_float(x)
    return np.where(x >= 0, x, negative_slope * x).astype(x.dtype, copy=False)


def relu6(x):
    """`min(max(x, 0), 6)`."""
    x = _as_float(x)
    return np.clip(x, 0, 6)


def elu(x, alpha=1.0):
    """`x` for `x > 0`, `alpha * (exp(x) - 1)` otherwise."""
    x = _as_float(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


def selu(x):
    """`scale * elu(x, alpha)` with the self-normalising constants of Klambauer et al."""
    return (_SELU_SCALE * elu(x, _SELU_ALPHA)).astype(_as_float(x).dtype, copy=False)


def sigmoid(x):
    """`1 / (1 + exp(-x))`, computed without overflow."""
    return _sigmoid(_as_float(x))


def hard_sigmoid(x):
    """Keras 3's piecewise-linear sigmoid: `relu6(x + 3) / 6`."""
    x = _as_float(x)
    return np.clip(x / 6 + 0.5, 0, 1).astype(x.dtype, copy=False)


def hard_silu(x):
    """`x * hard_sigmoid(x)`."""
    x = _as_float(x)
    return x * hard_sigmoid(x)


def silu(x):
    """Swish: `x * sigmoid(x)`."""
    x = _as_float(x)
    return x * _sigmoid(x)


swish = silu
hard_swish = hard_silu


def tanh(x):
    """Hyperbolic tangent."""
    return np.tanh(_as_float(x))


def softplus(x):
    """`log(exp(x) + 1)`, computed without overflow."""
    return np.logaddexp(0, _as_float(x))


def softsign(x):
    """`x / (abs(x) + 1)`."""
    x = _as_float(x)
    return x / (np.abs(x) + 1)


def exponential(x):
    """`exp(x)`."""
    return np.exp(_as_float(x))


def gelu(x, approximate=False):
    """Gaussian error linear unit: `x * P(X <= x)` for a standard normal X.

    Args:
        x: input array.
        approximate: use the tanh approximation instead of the exact erf form.
    """
    x = _as_float(x)
    if approximate:
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        return (0.5 * x * (1 + np.tanh(inner))).astype(x.dtype, copy=False)
    return (0.5 * x * (1 + special.erf(x / math.sqrt(2)))).astype(x.dtype, copy=False)


def mish(x):
    """`x * tanh(softplus(x))`."""
    x = _as_float(x)
    return x * np.tanh(np.logaddexp(0, x))


def softmax(x, axis=-1):
    """`exp(x) / sum(exp(x), axis)`, shifted by the maximum for stability."""
    x = _as_float(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """`x - logsumexp(x, axis)`."""
    x = _as_float(x)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


# -------------------------------------------------------------------------- backward
# Each takes (x, y, grad_y, **the activation's keyword arguments) -> grad_x.


def _relu_grad(x, y, g, negative_slope=0.0, max_value=None, threshold=0.0):
    slope = _relu_positive_mask(x, max_value, threshold).astype(g.dtype)
    if negative_slope != 0:
        slope = slope + negative_slope * (x < threshold)
    return g * slope


def _softmax_grad(x, y, g, axis=-1):
    # J^T g for J = diag(y) - y y^T.
    return y * (g - np.sum(g * y, axis=axis, keepdims=True))


def _log_softmax_grad(x, y, g, axis=-1):
    return g - np.exp(y) * np.sum(g, axis=axis, keepdims=True)


def _gelu_grad(x, y, g, approximate=False):
    if approximate:
        c = math.sqrt(2 / math.pi)
        t = np.tanh(c * (x + 0.044715 * x**3))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * c * (1 + 3 * 0.044715 * x**2))
    pdf = np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    return g * (0.5 * (1 + special.erf(x / math.sqrt(2))) + x * pdf)


def _mish_grad(x, y, g):
    t = np.tanh(np.logaddexp(0, x))
    return g * (t + x * (1 - t**2) * _sigmoid(x))


def _silu_grad(x, y, g):
    s = _sigmoid(x)
    return g * (s + x * s * (1 - s))


def _hard_silu_grad(x, y, g):
    return g * (hard_sigmoid(x) + x * ((x > -3) & (x < 3)) / 6)


_GRADIENTS = {
    linear: lambda x, y, g: g,
    relu: _relu_grad,
    leaky_relu: lambda x, y, g, negative_slope=0.2: g * np.where(x >= 0, 1, negative_slope),
    relu6: lambda x, y, g: g * ((x > 0) & (x < 6)),
    elu: lambda x, y, g, alpha=1.0: g * np.where(x > 0, 1, y + alpha),
    selu: lambda x, y, g: g * np.where(x > 0, _SELU_SCALE, y + _SELU_SCALE * _SELU_ALPHA),
    sigmoid: lambda x, y, g: g * y * (1 - y),
    hard_sigmoid: lambda x, y, g: g * ((x > -3) & (x < 3)) / 6,
    hard_silu: _hard_silu_grad,
    silu: _silu_grad,
    tanh: lambda x, y, g: g * (1 - y * y),
    softplus: lambda x, y, g: g * _sigmoid(x),
    softsign: lambda x, y, g: g / (1 + np.abs(x)) ** 2,
    exponential: lambda x, y, g: g * y,
    gelu: _gelu_grad,
    mish: _mish_grad,
    softmax: _softmax_grad,
    log_softmax: _log_softmax_grad,
}

_BY_NAME = {
    "linear": linear, "relu": relu, "leaky_relu": leaky_relu, "relu6": relu6, "elu": elu,
    "selu": selu, "sigmoid": sigmoid, "hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu,
    "hard_swish": hard_silu, "silu": silu, "swish": silu, "tanh": tanh, "softplus": softplus,
    "softsign": softsign, "exponential": exponential, "gelu": gelu, "mish": mish,
    "softmax": softmax, "log_softmax": log_softmax,
}
_NAME_OF = {}
for _name, _fn in _BY_NAME.items():
    _NAME_OF.setdefault(_fn, _name)


def gradient(fn, x, y, grad_y):
    """Backpropagates through an activation.

    Args:
        fn: a built-in activation (as returned by `get`), or a `functools.partial` of one
            with keyword arguments only.
        x: the input the activation was called on.
        y: its output, `fn(x)`.
        grad_y: gradient of the loss with respect to `y`.

    Returns:
        The gradient with respect to `x`, same shape as `x`.

    Raises:
        ValueError: when `fn` is not a built-in, so its derivative is unknown.
    """
    kwargs = {}
    base = fn
    if isinstance(fn, functools.partial) and not fn.args:
        base, kwargs = fn.func, dict(fn.keywords)
    rule = _GRADIENTS.get(base) if _is_hashable(base) else None
    if rule is None:
        name = getattr(fn, "__name__", type(fn).__name__)
        raise ValueError(
            f"Cannot compute the gradient of activation '{name}': fastconv.keras can only "
            f"backpropagate through its built-in activations ({', '.join(sorted(_BY_NAME))}). "
            f"Received: fn={fn!r}"
        )
    x = _as_float(x)
    grad_y = np.asarray(grad_y)
    return np.asarray(rule(x, np.asarray(y), grad_y, **kwargs)).astype(grad_y.dtype, copy=False)


def _is_hashable(obj):
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def get(identifier):
    """Resolves an activation.

    Args:
        identifier: None (-> `linear`), a name ("relu", "softmax", ...), a config dict
            as written by Keras (`{"class_name": "function", "config": "relu"}`), or a callable
            (returned unchanged).

    Returns:
        A callable `fn(x) -> array`.

    Raises:
        ValueError: for an unknown name or an object that is neither of the above.
    """
    if identifier is None:
        return linear
    if isinstance(identifier, dict) and isinstance(identifier.get("config"), str):
        identifier = identifier["config"]
    if isinstance(identifier, str):
        return lookup(identifier, _BY_NAME, "activation function")
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret activation function identifier: {identifier!r}. "
        f"Received: identifier={identifier!r}"
    )


def serialize(activation):
    """The name of an activation: the built-in's name, else the function's `__name__`."""
    if _is_hashable(activation) and activation in _NAME_OF:
        return _NAME_OF[activation]
    name = getattr(activation, "__name__", None)
    if name is None:
        raise ValueError(
            f"Cannot serialize activation without a name. Received: activation={activation!r}"
        )
    return name


def deserialize(name, custom_objects=None):
    """Inverse of `serialize`; `custom_objects` maps names of user functions to them."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    return get(name)
