"""Keras 2's `keras.utils.np_utils`, kept for old tutorials (`np_utils.to_categorical`)."""
from fastconv.keras.utils import normalize, to_categorical

__all__ = ["normalize", "to_categorical"]
