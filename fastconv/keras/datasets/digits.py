"""The 1,797 8x8 handwritten digits shipped inside scikit-learn: a dataset that needs no download.

`load_data()` returns Keras's layout, `(x_train, y_train), (x_test, y_test)`, with uint8 images
(N, 8, 8) scaled from scikit-learn's 0..16 to 0..255 (`rint(v * 255 / 16)`) and uint8 labels (N,).

Fixed split, no randomness: the first 1,500 samples train, the last 297 test. scikit-learn's digits
are the UCI "optdigits" test set, stored writer by writer, so the test images come from people whose
writing is not in the training set.
"""
import numpy as np

NUM_TRAIN = 1500


def load_data():
    """Loads the digits.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 arrays, images (1500, 8, 8) and (297, 8, 8),
        labels (1500,) and (297,).

    Raises:
        ImportError: when scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "fastconv.keras.datasets.digits needs scikit-learn, which ships the images: "
            "`pip install scikit-learn` (or `pip install 'fastconv[keras]'`).") from None
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    return (images[:NUM_TRAIN], labels[:NUM_TRAIN]), (images[NUM_TRAIN:], labels[NUM_TRAIN:])
