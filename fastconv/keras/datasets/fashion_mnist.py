"""Fashion-MNIST (Zalando's 10 clothing classes), read from local IDX files.

As Keras: `(x_train, y_train), (x_test, y_test)`, x uint8 (60000, 28, 28) and (10000, 28, 28),
y uint8 (60000,) and (10000,). Files: fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
(or not gzipped), searched as `_files` describes; Debian's `dataset-fashion-mnist` package installs
them in /usr/share/datasets/fashion-mnist.

Classes: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
9 Ankle boot.
"""
from . import _files, _idx
from .mnist import IDX_FILES

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")


def load_data():
    """Loads Fashion-MNIST.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 arrays, images (N, 28, 28), labels (N,).

    Raises:
        FileNotFoundError: when no copy is found (the message lists every place searched).
        ValueError: when a file is truncated or corrupted (wrong magic number, dimensions or length).
    """
    found = _files.locate("Fashion-MNIST", [("fashion-mnist", IDX_FILES)],
                          hint="On Debian/Ubuntu: `apt-get install dataset-fashion-mnist`.")
    x_train, y_train = _idx.read_image_label_pair(found[0], found[1], (28, 28), 10)
    x_test, y_test = _idx.read_image_label_pair(found[2], found[3], (28, 28), 10)
    return (x_train, y_train), (x_test, y_test)
