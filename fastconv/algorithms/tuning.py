"""The autotune cache: measured winners per case, in memory and on disk.

The file is JSON under $FASTCONV_CACHE_DIR (default: $XDG_CACHE_HOME/fastconv or
~/.cache/fastconv). It records the machine and build it was measured on; a
cache from another machine or build ("foreign"), an unreadable or corrupted one
is ignored with a warning, never an error. Writers take a lock, merge with what
is on disk and replace the file atomically, so readers never see half a file
and concurrent writers keep each other's entries.
"""
import json
import os
import platform
import warnings

import numpy as np

from .._atomic import atomic_write

FORMAT = "fastconv-autotune"
VERSION = 1
FILENAME = "autotune.json"

_entries = None  # loaded lazily: {case key: algorithm name}


class AutotuneCacheWarning(UserWarning):
    """The on-disk autotune cache could not be used; fastconv carries on without it."""


def cache_dir():
    explicit = os.environ.get("FASTCONV_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastconv")


def cache_path():
    return os.path.join(cache_dir(), FILENAME)


def machine_fingerprint():
    """What a measurement depends on besides the case: CPU, build and version."""
    from .. import __version__
    from .. import _ext
    from .._ext import _build_info
    return {"fastconv": __version__, "build_flags": _build_info.BUILD_FLAGS, "kernels": _ext.VARIANT,
            "openmp": _build_info.OPENMP, "machine": platform.machine(), "cpu": _cpu_model()}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def case_key(op, geom, dtype, threads):
    """A string naming everything a timing depends on."""
    (top, bottom), (left, right) = geom.padding
    return (f"{op}|{geom.data_format}|{np.dtype(dtype).name}|t{threads}"
            f"|N{geom.batch}C{geom.in_channels}H{geom.in_h}W{geom.in_w}K{geom.out_channels}"
            f"|k{geom.kernel_h}x{geom.kernel_w}|s{geom.stride[0]}x{geom.stride[1]}"
            f"|p{top},{bottom},{left},{right}|d{geom.dilation[0]}x{geom.dilation[1]}|g{geom.groups}")


def _read(path, warn=True):
    """Entries of a cache file; {} (and a warning) when it cannot be used."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        if warn and os.environ.get("FASTCONV_CACHE_DIR") and not os.path.isdir(cache_dir()):
            _warn(f"FASTCONV_CACHE_DIR={cache_dir()!r} does not exist; autotuned choices are not used")
        return {}
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if warn:
            _warn(f"ignoring the autotune cache {path!r}: cannot read it ({exc})")
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION \
            or not isinstance(data.get("entries"), dict):
        if warn:
            _warn(f"ignoring the autotune cache {path!r}: not a fastconv autotune file of version {VERSION}")
        return {}
    if data.get("machine") != machine_fingerprint():
        if warn:
            _warn(f"ignoring the autotune cache {path!r}: it was measured on another machine or build")
        return {}
    return {k: v for k, v in data["entries"].items() if isinstance(k, str) and isinstance(v, str)}


def _warn(message):
    warnings.warn(message, AutotuneCacheWarning, stacklevel=4)


def _loaded():
    global _entries
    if _entries is None:
        _entries = _read(cache_path())
    return _entries


def lookup(key):
    return _loaded().get(key)


def record(winners):
    """Remember {key: algorithm} in memory and merge it into the file on disk."""
    _loaded().update(winners)
    directory = cache_dir()
    try:
        os.makedirs(directory, exist_ok=True)
        with _locked(os.path.join(directory, FILENAME + ".lock")):
            merged = _read(cache_path(), warn=False)
            merged.update(winners)
            _write_atomically(cache_path(), {"format": FORMAT, "version": VERSION,
                                              "machine": machine_fingerprint(), "entries": merged})
    except OSError as exc:
        _warn(f"could not save the autotune cache in {directory!r} ({exc}); the choices last this process only")


def clear_memory():
    """Forget the loaded cache (the next lookup reads the file again)."""
    global _entries
    _entries = None


def _write_atomically(path, data):
    def write_json(tmp):
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)

    atomic_write(path, write_json)


class _locked:
    """An exclusive advisory lock on a file (POSIX); a no-op where fcntl is missing."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "a")
        try:
            import fcntl
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        return self

    def __exit__(self, *exc):
        self.fh.close()  # closing releases the lock
