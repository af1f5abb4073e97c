"""CIFAR-10 (32x32 colour images, 10 classes), read from Keras's local cifar-10-batches-py/.

As Keras: `(x_train, y_train), (x_test, y_test)`, x uint8 (50000, 32, 32, 3) and (10000, 32, 32, 3)
(channels_last), y uint8 (50000, 1) and (10000, 1). The batches are Python pickles; they are read with
`_safe_pickle`, which builds only plain containers, bytes, numbers and numeric arrays and never runs
code, so a batch that carries code is rejected.

Classes: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
"""
import numpy as np

from . import _files, _safe_pickle

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCH_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def load_batch(path):
    """One CIFAR-10 batch file: `(images (N, 3, 32, 32) uint8, labels (N,) uint8)`.

    Raises:
        ValueError: naming the file, if it is unsafe, truncated, or not a CIFAR-10 batch.
    """
    batch = _safe_pickle.load(path)
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict.")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch: no 'data' and 'labels'. Received: keys {sorted(map(str, batch))}")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"{path}: 'data' must be a uint8 array of shape (N, 3072). Received: "
            f"{getattr(data, 'shape', type(data).__name__)}, dtype={getattr(data, 'dtype', None)}")
    if not isinstance(labels, (list, tuple)) or not all(isinstance(v, int) and 0 <= v < 10 for v in labels):
        raise ValueError(f"{path}: 'labels' must be a list of integers in [0, 10).")
    if len(labels) != len(data):
        raise ValueError(f"{path} holds {len(data)} images but {len(labels)} labels.")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.uint8)


def load_data():
    """Loads CIFAR-10.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8, images (N, 32, 32, 3), labels (N, 1).

    Raises:
        FileNotFoundError: when no copy is found (the message lists every place searched).
        ValueError: when a batch is unsafe, truncated or malformed.
    """
    paths = _files.locate("CIFAR-10", [("cifar-10-batches-py", BATCH_FILES)],
                          hint="Unpack cifar-10-python.tar.gz there (it holds cifar-10-batches-py/).")
    train = [load_batch(p) for p in paths[:5]]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    x_test, y_test = load_batch(paths[5])
    return ((x_train.transpose(0, 2, 3, 1).copy(), y_train.reshape(-1, 1)),
            (x_test.transpose(0, 2, 3, 1).copy(), y_test.reshape(-1, 1)))
