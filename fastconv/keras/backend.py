"""Keras's `backend` module: global settings of fastconv.keras.

image_data_format is "channels_last" by default, as in Keras; floatx "float32";
epsilon 1e-7. The random generator behind initializers, Dropout and shuffling
lives here so `utils.set_random_seed` makes a whole run reproducible.
"""
import numpy as np

_IMAGE_DATA_FORMATS = ("channels_last", "channels_first")
_FLOATX = ("float32", "float64")

_settings = {"image_data_format": "channels_last", "floatx": "float32", "epsilon": 1e-7}
_rng = np.random.default_rng()
_uid_counters = {}


def image_data_format():
    return _settings["image_data_format"]


def set_image_data_format(data_format):
    if data_format not in _IMAGE_DATA_FORMATS:
        raise ValueError(
            f"The `data_format` argument must be one of {_IMAGE_DATA_FORMATS}. "
            f"Received: data_format={data_format!r}"
        )
    _settings["image_data_format"] = data_format


def standardize_data_format(data_format):
    """None -> the global setting; otherwise checked and lower-cased, as Keras does."""
    if data_format is None:
        return image_data_format()
    value = str(data_format).lower()
    if value not in _IMAGE_DATA_FORMATS:
        raise ValueError(
            f"The `data_format` argument must be one of {_IMAGE_DATA_FORMATS}. "
            f"Received: data_format={data_format!r}"
        )
    return value


def floatx():
    return _settings["floatx"]


def set_floatx(value):
    if value not in _FLOATX:
        raise ValueError(f"Unknown `floatx` value: {value!r}. Expected one of {_FLOATX}")
    _settings["floatx"] = value


def epsilon():
    return _settings["epsilon"]


def set_epsilon(value):
    _settings["epsilon"] = float(value)


def rng():
    """The generator every random draw of fastconv.keras uses."""
    return _rng


def set_seed(seed):
    global _rng
    _rng = np.random.default_rng(seed)


def get_uid(prefix=""):
    """1, 2, 3, ... per prefix: Keras's default layer names (conv2d, conv2d_1, ...)."""
    _uid_counters[prefix] = _uid_counters.get(prefix, 0) + 1
    return _uid_counters[prefix]


def clear_session():
    """Reset layer-name counters (and nothing else needs resetting here)."""
    _uid_counters.clear()
