"""MNIST handwritten digits, read from local files: `(x_train, y_train), (x_test, y_test)`.

As Keras: x uint8 (60000, 28, 28) and (10000, 28, 28), y uint8 (60000,) and (10000,).
The files are Keras's `mnist.npz` (read with allow_pickle=False), or the four original IDX files
in a `mnist/` directory; see `_files` for where they are searched.
"""
import zipfile
from pathlib import Path

import numpy as np

from . import _files, _idx

IDX_FILES = [
    ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"),
    ("train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
    ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"),
]
_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_data(path="mnist.npz"):
    """Loads MNIST.

    Args:
        path: an existing .npz file, or the file name to search for (default Keras's "mnist.npz").

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 arrays, images (N, 28, 28), labels (N,).

    Raises:
        FileNotFoundError: when no copy is found (the message lists every place searched).
        ValueError: when a file is truncated, corrupted or holds arrays of the wrong shape.
    """
    if Path(path).is_file():
        return _load_npz(Path(path))
    found = _files.locate("MNIST", [("", [Path(path).name]), ("mnist", IDX_FILES)])
    if len(found) == 1:
        return _load_npz(found[0])
    x_train, y_train = _idx.read_image_label_pair(found[0], found[1], (28, 28), 10)
    x_test, y_test = _idx.read_image_label_pair(found[2], found[3], (28, 28), 10)
    return (x_train, y_train), (x_test, y_test)


def _load_npz(path):
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise ValueError(f"{path} is not an MNIST archive: it lacks {missing}. Received: keys {f.files}")
            arrays = {k: f[k] for k in _KEYS}
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path} is truncated or corrupted: {err}") from None
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path} is truncated or corrupted (or holds pickled objects): {err}") from None
    for prefix in ("train", "test"):
        x, y = arrays[f"x_{prefix}"], arrays[f"y_{prefix}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(
                f"{path}: x_{prefix} must be uint8 images of 28x28 pixels. Received: shape={x.shape}, "
                f"dtype={x.dtype}")
        if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
            raise ValueError(
                f"{path}: y_{prefix} must hold one integer label per image ({len(x)}). Received: "
                f"shape={y.shape}, dtype={y.dtype}")
        arrays[f"y_{prefix}"] = y.astype(np.uint8)
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
