"""Keras's `losses` module on NumPy arrays, each loss with its gradient.

Loss functions (`categorical_crossentropy(y_true, y_pred)`, `mse`, ...) return one value per
sample, reduced over the last axis, like Keras. `Loss` objects (`CategoricalCrossentropy()`,
or `get("mse")`) reduce them to a float as Keras's default "sum_over_batch_size" does,
`sum(sample_weight * per_sample) / per_sample.size`, and give the gradient of that float
with respect to `y_pred` through `loss.gradient(y_true, y_pred, sample_weight=None)`.

Probabilities are normalised to sum to one and clipped to `[epsilon, 1 - epsilon]` before
the log, as Keras does; the gradient is exactly that of the clipped expression (zero where
the clip is active).
"""
import warnings

import numpy as np

from fastconv.keras import backend
from fastconv.keras.activations import log_softmax, softmax
from fastconv.keras.utils.naming import check_config, lookup

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


# ---------------------------------------------------------------------------- shapes


def _as_float(y_pred):
    y_pred = np.asarray(y_pred)
    if not np.issubdtype(y_pred.dtype, np.floating):
        y_pred = y_pred.astype(backend.floatx())
    return y_pred


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """Keras's rank fix-up: drops (or adds) one trailing axis of size 1 so ranks match."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    elif x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def _same_shape(y_true, y_pred, hint=""):
    y_pred = _as_float(y_pred)
    y_true = np.asarray(y_true)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    if y_true.shape != y_pred.shape or y_pred.ndim < 1:
        raise ValueError(
            f"Arguments `y_true` and `y_pred` must have the same shape{hint}. "
            f"Received: y_true.shape={np.shape(y_true)}, y_pred.shape={np.shape(y_pred)}"
        )
    return y_true.astype(y_pred.dtype, copy=False), y_pred


def _categorical_inputs(y_true, y_pred):
    y_pred = _as_float(y_pred)
    y_true = np.asarray(y_true)
    if y_true.shape != y_pred.shape or y_pred.ndim < 1:
        raise ValueError(
            "Arguments `y_true` and `y_pred` must have the same shape (one-hot labels; for "
            "integer labels use sparse_categorical_crossentropy). "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    if y_pred.shape[-1] == 1:
        warnings.warn(
            "In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, "
            f"num_classes) with num_classes > 1. Received: y_pred.shape={y_pred.shape}. "
            "Consider using 'binary_crossentropy' if you only have 2 classes.",
            SyntaxWarning, stacklevel=3,
        )
    return y_true.astype(y_pred.dtype, copy=False), y_pred


def _sparse_labels(y_true, y_pred):
    """Checks integer labels against `y_pred` and returns them one-hot in y_pred's dtype."""
    y_pred = _as_float(y_pred)
    labels = np.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.ndim > 0 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if y_pred.ndim < 1 or labels.shape != y_pred.shape[:-1]:
        raise ValueError(
            "Arguments `y_true` and `y_pred` must have the same shape up until the last "
            "dimension (integer labels, one per sample; for one-hot labels use "
            f"categorical_crossentropy). Received: y_true.shape={np.shape(y_true)}, "
            f"y_pred.shape={y_pred.shape}"
        )
    num_classes = y_pred.shape[-1]
    if labels.size:
        if not np.all(np.mod(labels, 1) == 0):
            raise ValueError(
                f"Sparse labels must be integers. Received: y_true with dtype {labels.dtype}"
            )
        if labels.min() < 0 or labels.max() >= num_classes:
            bad = labels.min() if labels.min() < 0 else labels.max()
            raise ValueError(
                f"Received a label value of {bad} which is outside the valid range of "
                f"[0, {num_classes}). Received: y_true with values in "
                f"[{labels.min()}, {labels.max()}]"
            )
    one_hot = np.zeros(y_pred.shape, dtype=y_pred.dtype)
    np.put_along_axis(one_hot, labels.astype(np.intp)[..., None], 1, axis=-1)
    return one_hot, y_pred


# ----------------------------------------------------------------- cross-entropy cores


def _crossentropy(target, output, from_logits):
    """-sum(target * log p) over the last axis; p = softmax(output) or clipped output / sum."""
    if from_logits:
        return -np.sum(target * log_softmax(output), axis=-1)
    eps = backend.epsilon()
    probs = np.clip(output / np.sum(output, axis=-1, keepdims=True), eps, 1 - eps)
    return -np.sum(target * np.log(probs), axis=-1)


def _crossentropy_grad(target, output, from_logits, grad):
    """d/d(output) of `_crossentropy`, given d/d(result) = `grad` (shape output.shape[:-1])."""
    grad = grad[..., None]
    if from_logits:
        return grad * (softmax(output) * np.sum(target, axis=-1, keepdims=True) - target)
    eps = backend.epsilon()
    total = np.sum(output, axis=-1, keepdims=True)
    q = output / total
    inside = (q > eps) & (q < 1 - eps)
    grad_q = np.where(inside, -target / np.clip(q, eps, 1 - eps), 0)
    # q = output / sum(output): d q_j / d output_k = (delta_jk - q_j) / sum.
    return grad * (grad_q - np.sum(grad_q * q, axis=-1, keepdims=True)) / total


def _binary_crossentropy(target, output, from_logits):
    if from_logits:
        # max(x, 0) - x t + log(1 + exp(-|x|)): exact and overflow-free.
        return np.maximum(output, 0) - output * target + np.log1p(np.exp(-np.abs(output)))
    eps = backend.epsilon()
    p = np.clip(output, eps, 1 - eps)
    return -(target * np.log(p) + (1 - target) * np.log(1 - p))


def _binary_crossentropy_grad(target, output, from_logits):
    if from_logits:
        z = np.exp(-np.abs(output))
        sig = np.where(output >= 0, 1 / (1 + z), z / (1 + z))
        return sig - target
    eps = backend.epsilon()
    inside = (output > eps) & (output < 1 - eps)
    p = np.clip(output, eps, 1 - eps)
    return np.where(inside, (p - target) / (p * (1 - p)), 0)


# ---------------------------------------------------------------- per-sample functions


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Cross-entropy between one-hot labels and predicted class probabilities (or logits).

    Args:
        y_true: one-hot labels, shape `(N, ..., C)`.
        y_pred: probabilities (or logits when `from_logits`), same shape.
        from_logits: whether `y_pred` holds unnormalised logits.
        label_smoothing: in [0, 1]; labels become `y * (1 - s) + s / C`.
        axis: the class axis; only -1 (Keras's default) is supported.

    Returns:
        Per-sample losses, shape `(N, ...)`.

    Raises:
        ValueError: for mismatched shapes or a bad `label_smoothing` / `axis`.
    """
    _check_axis(axis)
    y_true, y_pred = _categorical_inputs(y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing)
    return _crossentropy(y_true, y_pred, from_logits)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1):
    """Cross-entropy between integer labels and predicted class probabilities (or logits).

    Args:
        y_true: integer labels, shape `(N, ...)` or `(N, ..., 1)`.
        y_pred: probabilities (or logits), shape `(N, ..., C)`.
        from_logits: whether `y_pred` holds unnormalised logits.
        ignore_class: Keras's masking of one label value; not supported (must be None).
        axis: the class axis; only -1 is supported.

    Returns:
        Per-sample losses, shape `(N, ...)`.

    Raises:
        ValueError: for mismatched shapes, labels outside `[0, C)` or an `ignore_class`.
    """
    _check_axis(axis)
    _check_ignore_class(ignore_class)
    one_hot, y_pred = _sparse_labels(y_true, y_pred)
    return _crossentropy(one_hot, y_pred, from_logits)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy averaged over the last axis.

    Args:
        y_true: labels in [0, 1], shape `(N, ..., K)` (or `(N,)` with y_pred `(N, 1)`).
        y_pred: probabilities (or logits), same shape.
        from_logits: whether `y_pred` holds logits.
        label_smoothing: in [0, 1]; labels become `y * (1 - s) + s / 2`.
        axis: only -1 is supported.

    Returns:
        Per-sample losses, shape `(N, ...)`.
    """
    _check_axis(axis)
    y_true, y_pred = _same_shape(y_true, y_pred)
    y_true = _smooth_binary(y_true, label_smoothing)
    return np.mean(_binary_crossentropy(y_true, y_pred, from_logits), axis=-1)


def mean_squared_error(y_true, y_pred):
    """`mean((y_true - y_pred) ** 2, axis=-1)`."""
    y_true, y_pred = _same_shape(y_true, y_pred)
    return np.mean(np.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """`mean(abs(y_true - y_pred), axis=-1)`."""
    y_true, y_pred = _same_shape(y_true, y_pred)
    return np.mean(np.abs(y_true - y_pred), axis=-1)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
bce = BCE = binary_crossentropy


def _check_axis(axis):
    if isinstance(axis, bool) or axis not in (-1,):
        raise ValueError(
            f"fastconv.keras losses reduce over the last axis only. Received: axis={axis!r}"
        )


def _check_ignore_class(ignore_class):
    if ignore_class is not None:
        raise ValueError(
            "fastconv.keras does not support `ignore_class` (Keras masks those labels out of "
            f"the loss and its reduction). Received: ignore_class={ignore_class!r}"
        )


def _check_smoothing(label_smoothing):
    if not 0 <= label_smoothing <= 1:
        raise ValueError(
            f"label_smoothing must be in [0, 1]. Received: label_smoothing={label_smoothing}"
        )


def _smooth_categorical(y_true, label_smoothing):
    _check_smoothing(label_smoothing)
    if label_smoothing:
        return y_true * (1 - label_smoothing) + label_smoothing / y_true.shape[-1]
    return y_true


def _smooth_binary(y_true, label_smoothing):
    _check_smoothing(label_smoothing)
    if label_smoothing:
        return y_true * (1 - label_smoothing) + 0.5 * label_smoothing
    return y_true


# -------------------------------------------------------------- per-sample gradients
# Each maps (y_true, y_pred, grad_per_sample, **kwargs) -> d(sum grad * loss)/d(y_pred).


def _categorical_crossentropy_grad(y_true, y_pred, grad, from_logits=False, label_smoothing=0.0,
                                   axis=-1):
    y_true, y_pred = _categorical_inputs(y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing)
    return _crossentropy_grad(y_true, y_pred, from_logits, grad)


def _sparse_categorical_crossentropy_grad(y_true, y_pred, grad, from_logits=False,
                                          ignore_class=None, axis=-1):
    _check_ignore_class(ignore_class)
    one_hot, y_pred = _sparse_labels(y_true, y_pred)
    return _crossentropy_grad(one_hot, y_pred, from_logits, grad)


def _binary_crossentropy_grad_fn(y_true, y_pred, grad, from_logits=False, label_smoothing=0.0,
                                 axis=-1):
    y_true, y_pred = _same_shape(y_true, y_pred)
    y_true = _smooth_binary(y_true, label_smoothing)
    per_element = _binary_crossentropy_grad(y_true, y_pred, from_logits)
    return grad[..., None] * per_element / y_pred.shape[-1]


def _mean_squared_error_grad(y_true, y_pred, grad):
    y_true, y_pred = _same_shape(y_true, y_pred)
    return grad[..., None] * 2 * (y_pred - y_true) / y_pred.shape[-1]


def _mean_absolute_error_grad(y_true, y_pred, grad):
    y_true, y_pred = _same_shape(y_true, y_pred)
    return grad[..., None] * np.sign(y_pred - y_true) / y_pred.shape[-1]


_GRADIENTS = {
    categorical_crossentropy: _categorical_crossentropy_grad,
    sparse_categorical_crossentropy: _sparse_categorical_crossentropy_grad,
    binary_crossentropy: _binary_crossentropy_grad_fn,
    mean_squared_error: _mean_squared_error_grad,
    mean_absolute_error: _mean_absolute_error_grad,
}


# ------------------------------------------------------------------------ Loss objects


class Loss:
    """Base class: a per-sample function reduced to one number, with its gradient.

    Subclasses implement `call(y_true, y_pred) -> per-sample losses` and
    `call_gradient(y_true, y_pred, grad) -> grad_y_pred`.

    Args:
        name: the name shown in logs.
        reduction: "sum_over_batch_size" (Keras's default: weighted sum / number of
            per-sample values), "mean" (the same), "sum", "mean_with_sample_weight"
            (weighted sum / sum of weights) or "none"/None (per-sample values).
        dtype: accepted for Keras compatibility; values follow `y_pred`'s dtype.
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"Invalid value for argument `reduction`. Expected one of {REDUCTIONS}. "
                f"Received: reduction={reduction!r}"
            )
        self.name = name or type(self).__name__
        self.reduction = reduction
        self.dtype = dtype

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def call_gradient(self, y_true, y_pred, grad):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = np.asarray(self.call(y_true, y_pred))
        weights = _broadcast_weights(sample_weight, values)
        weighted = values if weights is None else values * weights
        if self.reduction in ("none", None):
            return weighted
        return float(np.sum(weighted) / self._divisor(values, weights))

    def gradient(self, y_true, y_pred, sample_weight=None):
        """Gradient of `self(y_true, y_pred, sample_weight)` (summed, for reduction "none")
        with respect to `y_pred`; same shape and dtype as `y_pred`."""
        y_pred_array = _as_float(y_pred)
        values = np.asarray(self.call(y_true, y_pred_array))
        weights = _broadcast_weights(sample_weight, values)
        grad = np.ones(values.shape, dtype=y_pred_array.dtype)
        if weights is not None:
            grad = grad * weights
        if self.reduction not in ("none", None):
            grad = grad / self._divisor(values, weights)
        result = self.call_gradient(y_true, y_pred_array, grad.astype(y_pred_array.dtype))
        return np.asarray(result, dtype=y_pred_array.dtype).reshape(y_pred_array.shape)

    def _divisor(self, values, weights):
        if self.reduction == "sum":
            return 1.0
        if self.reduction == "mean_with_sample_weight" and weights is not None:
            total = float(np.sum(weights * np.ones_like(values)))
            return total if total != 0 else 1.0
        return max(values.size, 1)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _broadcast_weights(sample_weight, values):
    """Keras's rank fix-up for sample weights, then a check that they match the batch."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=values.dtype)
    if weights.ndim == 0:
        return weights
    weights, _ = squeeze_or_expand_to_same_rank(weights, values, expand_rank_1=False)
    while weights.ndim < values.ndim:
        weights = weights[..., None]
    try:
        np.broadcast_shapes(weights.shape, values.shape)
    except ValueError:
        raise ValueError(
            "sample_weight must have one value per sample. "
            f"Received: sample_weight.shape={np.shape(sample_weight)} for losses of shape "
            f"{values.shape}"
        ) from None
    return weights


class LossFunctionWrapper(Loss):
    """A `Loss` around a per-sample function and its keyword arguments.

    Args:
        fn: `fn(y_true, y_pred, **kwargs) -> per-sample losses`; a built-in loss
            function or any callable (whose gradient is then unknown).
        name: defaults to `fn.__name__`.
        reduction: see `Loss`.
        **kwargs: passed to `fn` (e.g. `from_logits=True`).
    """

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None), reduction=reduction,
                         dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def call_gradient(self, y_true, y_pred, grad):
        rule = _GRADIENTS.get(self.fn)
        if rule is None:
            raise ValueError(
                f"Cannot compute the gradient of loss '{self.name}': fastconv.keras can only "
                "differentiate its built-in losses "
                f"({', '.join(f.__name__ for f in _GRADIENTS)}). Received: fn={self.fn!r}"
            )
        return rule(y_true, y_pred, grad, **self._fn_kwargs)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


class CategoricalCrossentropy(LossFunctionWrapper):
    """`categorical_crossentropy` as a Loss (one-hot labels)."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        _check_axis(axis)
        _check_smoothing(label_smoothing)
        super().__init__(categorical_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    """`sparse_categorical_crossentropy` as a Loss (integer labels)."""

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy", dtype=None):
        _check_ignore_class(ignore_class)
        super().__init__(sparse_categorical_crossentropy, reduction=reduction, name=name,
                         dtype=dtype, from_logits=from_logits)


class BinaryCrossentropy(LossFunctionWrapper):
    """`binary_crossentropy` as a Loss."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        _check_axis(axis)
        _check_smoothing(label_smoothing)
        super().__init__(binary_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


class MeanSquaredError(LossFunctionWrapper):
    """`mean_squared_error` as a Loss."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, reduction=reduction, name=name, dtype=dtype)


class MeanAbsoluteError(LossFunctionWrapper):
    """`mean_absolute_error` as a Loss."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, reduction=reduction, name=name, dtype=dtype)


_CLASSES = [CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
            MeanSquaredError, MeanAbsoluteError]
_FUNCTIONS = {
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "binary_crossentropy": binary_crossentropy, "bce": binary_crossentropy,
    "BCE": binary_crossentropy,
    "mean_squared_error": mean_squared_error, "mse": mean_squared_error, "MSE": mean_squared_error,
    "mean_absolute_error": mean_absolute_error, "mae": mean_absolute_error,
    "MAE": mean_absolute_error,
}
_CLASS_BY_NAME = {cls.__name__: cls for cls in _CLASSES}


def get(identifier):
    """Resolves a loss to a `Loss` object.

    Args:
        identifier: a name ("categorical_crossentropy", "mse", "BinaryCrossentropy", ...),
            a loss function (`losses.categorical_crossentropy` or a user function), a Loss
            instance or class, or a serialized dict.

    Returns:
        A `Loss`; for a name or function its `.name` is that name (as Keras logs it).

    Raises:
        ValueError: for an unknown name or object.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier in _CLASS_BY_NAME:
            return _CLASS_BY_NAME[identifier]()
        fn = lookup(identifier, {**_FUNCTIONS, **_CLASS_BY_NAME}, "loss")
        return LossFunctionWrapper(fn, name=identifier)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return LossFunctionWrapper(identifier)
    raise ValueError(
        f"Could not interpret loss identifier: {identifier!r}. Received: identifier={identifier!r}"
    )


def serialize(loss):
    """`{"class_name": ..., "config": {...}}` for a Loss, or the name of a loss function."""
    if isinstance(loss, LossFunctionWrapper) and type(loss) is LossFunctionWrapper:
        return loss.name
    if isinstance(loss, Loss):
        return {"class_name": type(loss).__name__, "config": loss.get_config()}
    return getattr(loss, "__name__", None) or str(loss)


def deserialize(config, custom_objects=None):
    """Inverse of `serialize`."""
    if isinstance(config, str):
        if custom_objects and config in custom_objects:
            return get(custom_objects[config])
        return get(config)
    class_name, kwargs = check_config(config, "loss")
    table = dict(_CLASS_BY_NAME, **(custom_objects or {}))
    return lookup(class_name, table, "loss").from_config(kwargs)
