"""The named models of `fastconv train`, each a function `(input_shape, num_classes) -> Sequential`.

    mnist_cnn     the classic Keras MNIST tutorial convnet (two 3x3 convs, max-pool, dropout)
    fmnist_2conv  the Fashion-MNIST benchmark's 2-conv net (5x5 "same" convs, Dense 1024, Adam)
    lenet5        LeNet-5 with Keras layers (tanh, average pooling; the first conv "same")
    cifar10_cnn   the course's CIFAR-10 net: 3x3 convs and Dense 512 under max_norm(3), dropout, SGD
    digits_cnn    a small LeNet-like net with "same" padding for 8x8 images
"""
from dataclasses import dataclass
from typing import Callable


def _keras():
    """fastconv.keras, imported on first use so that building the `fastconv` parser stays quick."""
    import fastconv.keras as keras
    return keras


def _layers(keras):
    layers = keras.layers
    return layers.Input, layers.Conv2D, layers.MaxPooling2D, layers.Dropout, layers.Flatten, layers.Dense


def mnist_cnn(input_shape, num_classes):
    keras = _keras()
    Input, Conv2D, MaxPooling2D, Dropout, Flatten, Dense = _layers(keras)
    return keras.Sequential([
        Input(shape=input_shape),
        Conv2D(32, kernel_size=(3, 3), activation="relu"),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Dropout(0.25),
        Flatten(),
        Dense(128, activation="relu"),
        Dropout(0.5),
        Dense(num_classes, activation="softmax"),
    ], name="mnist_cnn")


def fmnist_2conv(input_shape, num_classes):
    keras = _keras()
    Input, Conv2D, MaxPooling2D, Dropout, Flatten, Dense = _layers(keras)
    return keras.Sequential([
        Input(shape=input_shape),
        Conv2D(32, (5, 5), padding="same", activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Conv2D(64, (5, 5), padding="same", activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Flatten(),
        Dense(1024, activation="relu"),
        Dropout(0.4),
        Dense(num_classes, activation="softmax"),
    ], name="fmnist_2conv")


def lenet5(input_shape, num_classes):
    keras = _keras()
    Input, Conv2D, _, _, Flatten, Dense = _layers(keras)
    AveragePooling2D = keras.layers.AveragePooling2D
    return keras.Sequential([
        Input(shape=input_shape),
        Conv2D(6, (5, 5), padding="same", activation="tanh"),
        AveragePooling2D(pool_size=(2, 2)),
        Conv2D(16, (5, 5), activation="tanh"),
        AveragePooling2D(pool_size=(2, 2)),
        Flatten(),
        Dense(120, activation="tanh"),
        Dense(84, activation="tanh"),
        Dense(num_classes, activation="softmax"),
    ], name="lenet5")


def cifar10_cnn(input_shape, num_classes):
    keras = _keras()
    Input, Conv2D, MaxPooling2D, Dropout, Flatten, Dense = _layers(keras)
    max_norm = keras.constraints.max_norm
    return keras.Sequential([
        Input(shape=input_shape),
        Conv2D(32, (3, 3), padding="same", activation="relu", kernel_constraint=max_norm(3)),
        Dropout(0.2),
        Conv2D(32, (3, 3), padding="same", activation="relu", kernel_constraint=max_norm(3)),
        MaxPooling2D(pool_size=(2, 2)),
        Flatten(),
        Dense(512, activation="relu", kernel_constraint=max_norm(3)),
        Dropout(0.5),
        Dense(num_classes, activation="softmax"),
    ], name="cifar10_cnn")


def digits_cnn(input_shape, num_classes):
    keras = _keras()
    Input, Conv2D, MaxPooling2D, Dropout, Flatten, Dense = _layers(keras)
    return keras.Sequential([
        Input(shape=input_shape),
        Conv2D(16, (3, 3), padding="same", activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Conv2D(32, (3, 3), padding="same", activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Flatten(),
        Dense(64, activation="relu"),
        Dropout(0.25),
        Dense(num_classes, activation="softmax"),
    ], name="digits_cnn")


@dataclass(frozen=True)
class Architecture:
    build: Callable
    min_size: int          # smallest image side the layers accept
    optimizer: str         # default optimizer name
    learning_rate: float   # its default learning rate here
    description: str


ARCHITECTURES = {
    "mnist_cnn": Architecture(mnist_cnn, 6, "adam", 0.001, "Keras's MNIST tutorial CNN"),
    "fmnist_2conv": Architecture(fmnist_2conv, 4, "adam", 0.001, "Fashion-MNIST benchmark 2-conv net"),
    "lenet5": Architecture(lenet5, 12, "adam", 0.001, "LeNet-5 (tanh, average pooling)"),
    "cifar10_cnn": Architecture(cifar10_cnn, 2, "sgd", 0.01, "CIFAR-10 course net, max_norm(3) and dropout"),
    "digits_cnn": Architecture(digits_cnn, 4, "adam", 0.001, "small LeNet-like net for 8x8 digits"),
}

DEFAULT_FOR_DATASET = {
    "digits": "digits_cnn",
    "mnist": "mnist_cnn",
    "fashion_mnist": "fmnist_2conv",
    "cifar10": "cifar10_cnn",
}

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adadelta", "adagrad")


def make_optimizer(name, learning_rate):
    """A fresh optimizer; SGD gets momentum 0.9, as in the CIFAR-10 course net."""
    optimizers = _keras().optimizers
    if name == "sgd":
        return optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    return optimizers.get(name).__class__(learning_rate=learning_rate)


def build(name, input_shape, num_classes):
    """The named model for images of `input_shape` (H, W, C).

    Raises:
        ValueError: for an unknown name (listing the choices) or images too small for the model.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    if min(input_shape[:2]) < arch.min_size:
        raise ValueError(
            f"model {name!r} needs images of at least {arch.min_size}x{arch.min_size} pixels. "
            f"Received: images of {input_shape[0]}x{input_shape[1]}")
    return arch.build(tuple(input_shape), num_classes)
