"""Keras's `utils`: labels to one-hot, seeding, normalisation and the progress bar."""
import random

import numpy as np

from fastconv.keras import backend
from fastconv.keras.utils.progbar import Progbar

__all__ = ["Progbar", "normalize", "set_random_seed", "to_categorical"]


def to_categorical(y, num_classes=None, dtype="float32"):
    """Converts integer class labels to one-hot rows.

    Args:
        y: array-like of integer labels in `[0, num_classes)`; a trailing axis of
            size 1 is dropped, as in Keras.
        num_classes: number of classes; `max(y) + 1` when None.
        dtype: dtype of the result (Keras 2's argument; float32 by default).

    Returns:
        Array of shape `y.shape + (num_classes,)`.

    Raises:
        ValueError: for non-integer, negative or too large labels, or a bad `num_classes`.
    """
    labels = np.asarray(y)
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError(
            f"to_categorical expects integer class labels. Received: y with dtype {labels.dtype}"
        )
    labels = labels.astype("int64")
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive integer. Received: num_classes={num_classes}"
        )
    num_classes = int(num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise ValueError(
            f"Class labels must be in [0, {num_classes}). Received: a label {bad} "
            f"with num_classes={num_classes}"
        )
    one_hot = np.zeros((labels.shape[0], num_classes), dtype=dtype)
    one_hot[np.arange(labels.shape[0]), labels] = 1
    return one_hot.reshape(shape + (num_classes,))


def set_random_seed(seed):
    """Seeds every generator a run draws from: fastconv.keras's, NumPy's global and Python's.

    Args:
        seed: a non-negative integer.

    Raises:
        ValueError: if `seed` is not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(
            f"Expected `seed` argument to be an integer. Received: seed={seed!r} "
            f"(of type {type(seed)})"
        )
    random.seed(int(seed))
    np.random.seed(int(seed))
    backend.set_seed(int(seed))


def normalize(x, axis=-1, order=2):
    """Divides `x` by its `order`-norm along `axis` (zero norms are left as 1).

    Args:
        x: array to normalise.
        axis: axis along which to normalise.
        order: norm order, as for `np.linalg.norm` (2 = Euclidean).
    """
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis if axis is not None else -1)
