"""Keras's `metrics` module: stateful metrics averaged over the batches of an epoch.

A metric accumulates `update_state(y_true, y_pred, sample_weight=None)` and reports
`result()`, the (weighted) mean of the per-sample values seen since `reset_state()`.
`get("accuracy", y_true_shape=..., y_pred_shape=...)` picks binary, sparse categorical or
categorical accuracy from the shapes exactly as Keras's compile does, and keeps the name the
user wrote ("accuracy" stays "accuracy", "acc" stays "acc").

Totals are accumulated in float64 (Keras uses float32 variables; results agree to float32
precision).
"""
import numpy as np

from fastconv.keras import backend
from fastconv.keras import losses as losses_module
from fastconv.keras.losses import (
    binary_crossentropy,
    categorical_crossentropy,
    mean_absolute_error,
    mean_squared_error,
    sparse_categorical_crossentropy,
    squeeze_or_expand_to_same_rank,
)
from fastconv.keras.utils.naming import check_config, lookup, to_snake_case

mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error


# ----------------------------------------------------------------- per-sample functions


def categorical_accuracy(y_true, y_pred):
    """1.0 where `argmax(y_true) == argmax(y_pred)` over the last axis, else 0.0."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "categorical_accuracy expects one-hot labels of the same shape as the predictions. "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    matches = np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)
    return matches.astype(backend.floatx())


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where the integer label equals `argmax(y_pred)` over the last axis, else 0.0."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    original_shape = y_true.shape
    if y_true.ndim == y_pred.ndim and y_true.ndim > 0 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(
            "sparse_categorical_accuracy expects one integer label per prediction row. "
            f"Received: y_true.shape={original_shape}, y_pred.shape={y_pred.shape}"
        )
    matches = y_true.astype(y_pred.dtype) == np.argmax(y_pred, axis=-1)
    return matches.astype(backend.floatx()).reshape(original_shape)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Mean over the last axis of `(y_pred > threshold) == y_true`."""
    y_true, y_pred = squeeze_or_expand_to_same_rank(np.asarray(y_true), np.asarray(y_pred))
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "binary_accuracy expects labels of the same shape as the predictions. "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    predicted = (y_pred > threshold).astype(y_true.dtype)
    return np.mean((y_true == predicted).astype(backend.floatx()), axis=-1)


def accuracy(y_true, y_pred):
    """1.0 where the values are exactly equal (Keras's plain `accuracy` function)."""
    y_true, y_pred = squeeze_or_expand_to_same_rank(np.asarray(y_true), np.asarray(y_pred))
    return np.equal(y_true, y_pred).astype(backend.floatx())


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the one-hot label's class is among the k largest predictions."""
    return sparse_top_k_categorical_accuracy(np.argmax(y_true, axis=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the integer label is among the k largest predictions."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    top_k = np.argsort(-y_pred, axis=-1, kind="stable")[..., :k]
    return np.any(top_k == y_true.astype(np.intp)[..., None], axis=-1).astype(backend.floatx())


# ---------------------------------------------------------------------- Metric objects


class Metric:
    """Base class of stateful metrics.

    Subclasses implement `update_state`, `result` and `reset_state`.

    Args:
        name: the name shown in logs.
        dtype: accepted for Keras compatibility.
    """

    def __init__(self, name=None, dtype=None):
        self.name = name or to_snake_case(type(self).__name__)
        self.dtype = dtype

    def update_state(self, *args, **kwargs):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def reset_state(self):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        """Updates the state and returns the result, as Keras's `metric(...)` does."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class Mean(Metric):
    """Weighted mean of the values passed to `update_state(values, sample_weight=None)`.

    Per-sample values of rank > 1 are first averaged over their trailing axes, as Keras's
    `reduce_to_samplewise_values` does; the mean is `sum(w * v) / sum(w)` (or the plain
    mean over samples without weights).
    """

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.reset_state()

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None):
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64)
            values, weights = squeeze_or_expand_to_same_rank(values, weights)
            if values.ndim > weights.ndim:
                values = values.mean(axis=tuple(range(weights.ndim, values.ndim)))
            try:
                weights = np.broadcast_to(weights, values.shape)
            except ValueError:
                raise ValueError(
                    "sample_weight must have one value per sample. Received: "
                    f"sample_weight.shape={np.shape(sample_weight)} for values of shape "
                    f"{values.shape}"
                ) from None
            values = values * weights
            self.total += float(np.sum(values))
            self.count += float(np.sum(weights))
            return
        if values.ndim > 1:
            values = values.mean(axis=tuple(range(1, values.ndim)))
        self.total += float(np.sum(values))
        self.count += float(values.shape[0]) if values.ndim >= 1 else 1.0

    def result(self):
        return self.total / self.count if self.count else 0.0


class MeanMetricWrapper(Mean):
    """The mean of a per-sample function `fn(y_true, y_pred, **kwargs)` over all samples.

    Args:
        fn: per-sample metric function.
        name: defaults to `fn.__name__`.
        **kwargs: passed to `fn` (e.g. `threshold=0.5`).
    """

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None), dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


def _wrapper_class(class_name, fn, default_name, doc, **defaults):
    """Defines CategoricalAccuracy & co: MeanMetricWrapper around one function."""

    def __init__(self, name=default_name, dtype=None, **kwargs):
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(
                f"{class_name} got unexpected arguments. Received: {sorted(unknown)}"
            )
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **{**defaults, **kwargs})

    return type(class_name, (MeanMetricWrapper,), {"__init__": __init__, "__doc__": doc})


Accuracy = _wrapper_class("Accuracy", accuracy, "accuracy", "Fraction of exactly equal values.")
BinaryAccuracy = _wrapper_class("BinaryAccuracy", binary_accuracy, "binary_accuracy",
                                "Mean of `binary_accuracy`.", threshold=0.5)
CategoricalAccuracy = _wrapper_class("CategoricalAccuracy", categorical_accuracy,
                                     "categorical_accuracy", "Mean of `categorical_accuracy`.")
SparseCategoricalAccuracy = _wrapper_class(
    "SparseCategoricalAccuracy", sparse_categorical_accuracy, "sparse_categorical_accuracy",
    "Mean of `sparse_categorical_accuracy`.")
TopKCategoricalAccuracy = _wrapper_class(
    "TopKCategoricalAccuracy", top_k_categorical_accuracy, "top_k_categorical_accuracy",
    "Mean of `top_k_categorical_accuracy`.", k=5)
SparseTopKCategoricalAccuracy = _wrapper_class(
    "SparseTopKCategoricalAccuracy", sparse_top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy", "Mean of `sparse_top_k_categorical_accuracy`.", k=5)
MeanSquaredError = _wrapper_class("MeanSquaredError", mean_squared_error, "mean_squared_error",
                                  "Mean of `mean_squared_error`.")
MeanAbsoluteError = _wrapper_class("MeanAbsoluteError", mean_absolute_error,
                                   "mean_absolute_error", "Mean of `mean_absolute_error`.")
CategoricalCrossentropy = _wrapper_class(
    "CategoricalCrossentropy", categorical_crossentropy, "categorical_crossentropy",
    "Mean of `categorical_crossentropy`.", from_logits=False, label_smoothing=0.0, axis=-1)
SparseCategoricalCrossentropy = _wrapper_class(
    "SparseCategoricalCrossentropy", sparse_categorical_crossentropy,
    "sparse_categorical_crossentropy", "Mean of `sparse_categorical_crossentropy`.",
    from_logits=False, axis=-1)
BinaryCrossentropy = _wrapper_class(
    "BinaryCrossentropy", binary_crossentropy, "binary_crossentropy",
    "Mean of `binary_crossentropy`.", from_logits=False, label_smoothing=0.0, axis=-1)

_CLASSES = [Mean, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
            TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError,
            MeanAbsoluteError, CategoricalCrossentropy, SparseCategoricalCrossentropy,
            BinaryCrossentropy]
_CLASS_BY_NAME = {cls.__name__: cls for cls in _CLASSES}
_FUNCTIONS = {
    fn.__name__: fn for fn in (
        accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
        top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, mean_squared_error,
        mean_absolute_error, categorical_crossentropy, sparse_categorical_crossentropy,
        binary_crossentropy)
}
_FUNCTIONS.update({"mse": mean_squared_error, "MSE": mean_squared_error,
                   "mae": mean_absolute_error, "MAE": mean_absolute_error})


def _accuracy_function(loss, y_true_shape, y_pred_shape):
    """Keras's resolution of "accuracy": by shapes when known, else by the loss."""
    if y_true_shape is not None and y_pred_shape is not None:
        y_true_shape, y_pred_shape = tuple(y_true_shape), tuple(y_pred_shape)
        is_binary = y_pred_shape[-1:] == (1,)
        is_sparse = len(y_true_shape) < len(y_pred_shape) or (
            y_true_shape[-1:] == (1,) and y_pred_shape[-1] > 1)
        if is_binary:
            return BinaryAccuracy
        return SparseCategoricalAccuracy if is_sparse else CategoricalAccuracy
    loss_fn = getattr(losses_module.get(loss), "fn", None) if loss is not None else None
    if loss_fn is binary_crossentropy:
        return BinaryAccuracy
    if loss_fn is sparse_categorical_crossentropy:
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


def get(identifier, loss=None, y_true_shape=None, y_pred_shape=None):
    """Resolves a metric to a fresh `Metric` object.

    Args:
        identifier: "accuracy"/"acc" (resolved by shapes, else by `loss`), a name
            ("mse", "categorical_accuracy", "BinaryAccuracy", ...), a function, a Metric
            instance (returned as is) or class, or a serialized dict.
        loss: the compiled loss (any form `losses.get` accepts), used for "accuracy" when
            shapes are not given.
        y_true_shape: shape of the targets of one batch (or of all of them).
        y_pred_shape: shape of the model's output.

    Returns:
        A Metric whose `.name` is the string the user wrote, or the function's name.

    Raises:
        ValueError: for unknown names or objects.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            return _accuracy_function(loss, y_true_shape, y_pred_shape)(name=identifier)
        if identifier in _CLASS_BY_NAME:
            return _CLASS_BY_NAME[identifier]()
        fn = lookup(identifier, {**_FUNCTIONS, **_CLASS_BY_NAME}, "metric")
        return MeanMetricWrapper(fn, name=identifier)
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, losses_module.Loss):
        return MeanMetricWrapper(identifier.call, name=identifier.name)
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise ValueError(
        f"Could not interpret metric identifier: {identifier!r}. Received: identifier={identifier!r}"
    )


def serialize(metric):
    """`{"class_name": ..., "config": {...}}` for a built-in metric class."""
    return {"class_name": type(metric).__name__, "config": metric.get_config()}


def deserialize(config, custom_objects=None):
    """Inverse of `serialize`."""
    class_name, kwargs = check_config(config, "metric")
    table = dict(_CLASS_BY_NAME, **(custom_objects or {}))
    return lookup(class_name, table, "metric").from_config(kwargs)
