"""Argument checking and normalisation shared by every public op.

The rule of the package: the wrapper validates and normalises, the kernel assumes.
Everything here runs on Python ints (no overflow) before any compiled code, and
every error says what is wrong and then what was received.
"""
import numbers
import operator

import numpy as np

# Size arguments (kernel, stride, padding, dilation, groups) must stay below this
# so that index arithmetic in the kernels (products of two of them) fits in int64.
MAX_SIZE_ARGUMENT = 2**31 - 1

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_LAYOUT_ALIASES = {
    "nchw": "NCHW",
    "channels_first": "NCHW",
    "nhwc": "NHWC",
    "channels_last": "NHWC",
}


def normalize_data_format(data_format):
    """Return "NCHW" or "NHWC" for any accepted spelling."""
    if isinstance(data_format, str) and data_format.lower() in _LAYOUT_ALIASES:
        return _LAYOUT_ALIASES[data_format.lower()]
    raise ValueError(
        'data_format must be "NCHW" (alias "channels_first") or "NHWC" (alias '
        f'"channels_last"). Received: data_format={data_format!r}'
    )


def _qualifier(minimum):
    return {0: "non-negative", 1: "positive"}.get(minimum, f"at least {minimum}")


def _is_int(value):
    # `type(value) is int` first: the ABC check costs a microsecond, on every argument of every call
    return type(value) is int or (
        isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)))


def as_int(value, name, minimum):
    """A Python int from an int-like scalar, with minimum <= value <= MAX_SIZE_ARGUMENT."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer. Received: {name}={value!r}")
    return _in_range((operator.index(value),), name, minimum, value)[0]


def as_pair(value, name, minimum):
    """(a, b) from an int or a sequence of two ints, each checked as in `as_int`."""
    if type(value) is int and minimum <= value <= MAX_SIZE_ARGUMENT:
        return value, value
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints. Received: {name}={value!r}")
    if not all(_is_int(v) for v in items):
        raise TypeError(f"{name} must be an int or a pair of ints. Received: {name}={value!r}")
    return _in_range(tuple(operator.index(v) for v in items), name, minimum, value)


def _in_range(values, name, minimum, received):
    if min(values) < minimum:
        raise ValueError(f"{name} must be {_qualifier(minimum)}. Received: {name}={received!r}")
    if max(values) > MAX_SIZE_ARGUMENT:
        raise ValueError(
            f"{name} is too large (the limit is {MAX_SIZE_ARGUMENT}). Received: {name}={received!r}"
        )
    return values


def explicit_padding(padding):
    """((top, bottom), (left, right)) from an int, (pad_h, pad_w) or ((top, bottom), (left, right))."""
    nested = (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    )
    if not nested:
        pad_h, pad_w = as_pair(padding, "padding", 0)
        return (pad_h, pad_h), (pad_w, pad_w)
    if any(len(p) != 2 or not all(_is_int(v) for v in p) for p in padding):
        raise TypeError(
            "padding must be an int, (pad_h, pad_w), ((top, bottom), (left, right)), "
            f'"valid" or "same". Received: padding={padding!r}'
        )
    flat = tuple(operator.index(v) for p in padding for v in p)
    top, bottom, left, right = _in_range(flat, "padding", 0, padding)
    return (top, bottom), (left, right)


def padding_mode(padding):
    """"valid" or "same" (case-insensitive) for a string padding."""
    mode = padding.lower()
    if mode not in ("valid", "same"):
        raise ValueError(
            'padding must be an int, a tuple, "valid" or "same". '
            f"Received: padding={padding!r}"
        )
    return mode


def same_padding(size, kernel, stride, dilation):
    """Keras/TensorFlow "same": output ceil(size / stride); an odd extra pixel goes after."""
    out = -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def as_float_array(array, name, ndim, layout_hint):
    """A C-contiguous, aligned, native-endian float32/float64 ndarray of the given rank."""
    if not isinstance(array, np.ndarray):
        if type(array).__module__.startswith("torch"):
            raise TypeError(
                f"{name} must be a NumPy array; convert torch tensors with .numpy() "
                f"(or use fastconv.torch). Received: {name} of type {type(array).__name__}"
            )
        array = np.asarray(array)
    dtype = array.dtype
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise TypeError(
            f"{name} must be a float32 or float64 array. Received: {name}.dtype={dtype}"
        )
    if array.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D {layout_hint}. Received: {name}.shape={array.shape}"
        )
    native = dtype.newbyteorder("=")
    return np.require(array, dtype=native, requirements=["C_CONTIGUOUS", "ALIGNED"])


def check_same_dtype(**arrays):
    """TypeError unless every given array (None skipped) has one dtype."""
    present = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(present.values())) > 1:
        listing = ", ".join(f"{name}.dtype={dt}" for name, dt in present.items())
        raise TypeError(f"all arrays must have the same dtype (no implicit casts). Received: {listing}")


def check_shape(array, expected, name, what):
    if tuple(array.shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {tuple(expected)} ({what}). Received: {name}.shape={array.shape}"
        )
