"""Where the dataset loaders look for their files; nothing is ever downloaded.

Search order, the first complete set of files wins:
    1. $FASTCONV_DATA                      (laid out like Keras's cache, below)
    2. $KERAS_HOME/datasets, else ~/.keras/datasets   (Keras's cache: what `keras.datasets` downloaded)
    3. /usr/share/datasets                 (system packages, e.g. Debian's dataset-fashion-mnist)

Under each root a dataset has Keras's file names: mnist.npz, fashion-mnist/*-ubyte.gz,
cifar-10-batches-py/data_batch_1..5 and test_batch.
"""
import os
from pathlib import Path

SYSTEM_ROOTS = ("/usr/share/datasets",)


def search_roots():
    """The directories searched, in order (they need not exist)."""
    roots = []
    env = os.environ.get("FASTCONV_DATA")
    if env:
        roots.append(Path(env).expanduser())
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    roots.append(Path(keras_home).expanduser() / "datasets")
    roots.extend(Path(root) for root in SYSTEM_ROOTS)
    return roots


def _first_existing(directory, alternatives):
    for name in alternatives:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def locate(dataset, layouts, hint=""):
    """Finds the files of one dataset.

    Args:
        dataset: the dataset's name, for messages.
        layouts: alternatives, each `(subdirectory, files)`; `files` is a list whose entries are
            file names or tuples of interchangeable names (e.g. gzipped or not).
        hint: an extra sentence for the error (how to install the data).

    Returns:
        The list of paths of the first layout complete under some root, one per entry of `files`.

    Raises:
        FileNotFoundError: listing the files expected and every directory searched.
    """
    searched = []
    for root in search_roots():
        for subdirectory, files in layouts:
            directory = root / subdirectory if subdirectory else root
            searched.append(str(directory))
            found = [_first_existing(directory, (f,) if isinstance(f, str) else f) for f in files]
            if all(found):
                return found
    expected = ", or ".join(
        f"{sub + '/' if sub else ''}{{{', '.join(f if isinstance(f, str) else ' or '.join(f) for f in files)}}}"
        for sub, files in layouts)
    raise FileNotFoundError(
        f"{dataset} was not found (fastconv never downloads data). Expected the files {expected} "
        f"under one of these directories: {', '.join(searched)}. Put them in $FASTCONV_DATA or in "
        f"Keras's cache ($KERAS_HOME/datasets or ~/.keras/datasets).{' ' + hint if hint else ''}"
    )
