"""Reading IDX files (the MNIST / Fashion-MNIST format), gzipped or not, with every field checked.

Layout: a big-endian header `0x00 0x00 <type> <ndim>` (type 0x08 = unsigned byte), then `ndim`
big-endian uint32 dimensions, then exactly prod(dims) bytes of row-major data.
"""
import gzip
import zlib

import numpy as np

IMAGES_MAGIC = 0x00000803  # ubyte, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 0x00000801  # ubyte, 1 dimension (N,)


def read_bytes(path):
    """The file's content, decompressed when its name ends in .gz; damaged archives raise ValueError."""
    path = str(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        with open(path, "rb") as fh:
            return fh.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ValueError(f"{path} is truncated or corrupted: it is not a complete gzip file ({err}).") from None


def read_idx(path, magic):
    """An IDX file as a uint8 array.

    Args:
        path: the file (gzipped when its name ends in .gz).
        magic: the expected magic number, IMAGES_MAGIC or LABELS_MAGIC.

    Returns:
        A uint8 array with the file's dimensions.

    Raises:
        ValueError: naming the file, for a wrong magic number, a short header, or data whose length
            differs from the product of the dimensions.
    """
    data = read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise ValueError(f"{path} is not an IDX file: it holds only {len(data)} bytes.")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(
            f"{path} is not an IDX file of the expected kind: magic number 0x{found:08x}, expected "
            f"0x{magic:08x}. Received: {len(data)} bytes starting {data[:4].hex()}"
        )
    if len(data) < header:
        raise ValueError(f"{path} is truncated: its IDX header needs {header} bytes, the file holds {len(data)}.")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = 1
    for d in dims:
        expected *= d
    body = len(data) - header
    if body != expected:
        state = "truncated" if body < expected else "corrupted (trailing bytes)"
        raise ValueError(
            f"{path} is {state}: its header declares dimensions {dims}, i.e. {expected} bytes of data, "
            f"but the file holds {body}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_image_label_pair(images_path, labels_path, image_shape, num_classes):
    """(images, labels) from two IDX files, checked against each other and against the dataset."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != tuple(image_shape):
        raise ValueError(
            f"{images_path} holds images of {images.shape[1]}x{images.shape[2]} pixels, expected "
            f"{image_shape[0]}x{image_shape[1]}. Received: shape={images.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels."
        )
    if labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"{labels_path} is corrupted: label {int(labels.max())} is not a class in [0, {num_classes})."
        )
    return images, labels
