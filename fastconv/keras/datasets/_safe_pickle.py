"""A pickle reader that builds data and never runs code from the file.

`pickle.Unpickler.find_class` is the only way a pickle reaches a callable; here it admits nothing
but a handful of names, each mapped to a stand-in defined in this module that only *records* its
arguments. Plain containers, str, bytes, ints, floats, bools and None need no globals at all.

NumPy arrays (CIFAR-10's `data` is one) arrive as `numpy.core.multiarray._reconstruct(ndarray, ...)`
followed by a `(version, shape, dtype, fortran, raw bytes)` state, and the dtype as
`numpy.dtype("u1")` plus its own state. The stand-ins keep those pieces; after loading, `_finish`
turns them into arrays with `np.frombuffer`, checking the dtype against a short list of plain numeric
types and the byte count against the shape. Anything else (os.system, builtins.eval, a class with
__reduce__, ...) is refused before it is looked up, so it can never run.
"""
import io
import pickle

import numpy as np


class Refused(pickle.UnpicklingError):
    """The pickle asks for something this reader does not build."""


_PLAIN_DTYPES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"}


class _DtypeStub:
    def __init__(self, spec, align=False, copy=False):
        if not isinstance(spec, str) or spec.lstrip("<>|=") not in _PLAIN_DTYPES:
            raise Refused(f"refusing a non-numeric array dtype {spec!r}")
        self.spec = spec
        self.byteorder = "|"

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise Refused(f"unexpected dtype state {state!r}")
        self.byteorder = state[1]

    def dtype(self):
        order = self.byteorder if self.byteorder in "<>" else "="
        return np.dtype(self.spec.lstrip("<>|=")).newbyteorder(order)


class _NdarrayMarker:
    """Stands for `numpy.ndarray` as the first argument of `_reconstruct`."""


class _ArrayStub:
    def __init__(self, subtype=None, shape=(0,), dtype_code=b"b"):
        if subtype is not _NdarrayMarker:
            raise Refused("refusing an array of a class other than numpy.ndarray")
        self.state = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise Refused(f"unexpected ndarray state of type {type(state).__name__}")
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DtypeStub):
            raise Refused("refusing an ndarray whose dtype is not a plain numeric type")
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise Refused(f"unexpected ndarray shape {shape!r}")
        if isinstance(raw, str):  # a Python 2 str read with encoding="latin1"
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise Refused("refusing an ndarray whose data is not raw bytes (object array?)")
        self.state = (shape, dtype.dtype(), bool(fortran), bytes(raw))

    def array(self):
        if self.state is None:
            raise Refused("an ndarray without data")
        shape, dtype, fortran, raw = self.state
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * dtype.itemsize:
            raise Refused(
                f"an ndarray of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes, "
                f"the pickle holds {len(raw)}")
        flat = np.frombuffer(raw, dtype=dtype)
        return flat.reshape(shape, order="F" if fortran else "C").astype(dtype.newbyteorder("="))


def _frombuffer(buffer, dtype, shape, order):
    """Stand-in for `numpy._core.numeric._frombuffer`, which protocol-5 pickles use for arrays."""
    array = _ArrayStub(_NdarrayMarker)
    array.__setstate__((1, shape, dtype, order == "F", buffer))
    return array


def _latin1_encode(text, encoding="latin1"):
    """Stand-in for `_codecs.encode`, which Python 3 protocol-2 pickles use for bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _DtypeStub,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers, str, bytes, numbers, None, and numeric arrays via stand-ins."""

    def find_class(self, module, name):
        stand_in = _ALLOWED.get((module, name))
        if stand_in is None:
            raise Refused(
                f"refusing to load global {module}.{name}: only plain containers, bytes, numbers "
                "and numeric arrays are allowed")
        return stand_in

    def persistent_load(self, pid):
        raise Refused("refusing a persistent id")


def _finish(obj):
    if isinstance(obj, _ArrayStub):
        return obj.array()
    if isinstance(obj, (_DtypeStub, _NdarrayMarker)) or obj is _NdarrayMarker:
        raise Refused("a bare dtype or ndarray class where data was expected")
    if isinstance(obj, dict):
        return {_finish(k): _finish(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finish(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_finish(v) for v in obj)
    return obj


def loads(data, source="<bytes>", encoding="bytes"):
    """Unpickles `data` with RestrictedUnpickler.

    Raises:
        ValueError: naming `source`, for anything refused, truncated or malformed.
    """
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
        return _finish(obj)
    except Refused as err:
        raise ValueError(f"{source}: unsafe or malformed pickle, not loaded: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError) as err:
        raise ValueError(f"{source} is truncated or corrupted: {type(err).__name__}: {err}") from None


def load(path, encoding="bytes"):
    """Unpickles the file at `path` safely (see `loads`)."""
    with open(path, "rb") as fh:
        return loads(fh.read(), source=str(path), encoding=encoding)
