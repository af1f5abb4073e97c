"""Keras's `datasets`, read from local files only: mnist, fashion_mnist, cifar10, and digits.

Each module's `load_data()` returns `(x_train, y_train), (x_test, y_test)` as Keras does. Nothing is
downloaded: files are searched in $FASTCONV_DATA, Keras's cache ($KERAS_HOME or ~/.keras, under
datasets/) and system dataset packages (/usr/share/datasets). `digits` (scikit-learn's 8x8 digits)
works on a fresh machine.
"""
from . import cifar10, digits, fashion_mnist, mnist

__all__ = ["cifar10", "digits", "fashion_mnist", "mnist"]
