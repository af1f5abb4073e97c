"""Trains a simple convnet on the MNIST dataset: the classic Keras example, on fastconv.

Only the imports differ from Keras's mnist_cnn.py. Keras 2 reached 99.25% test accuracy after 12 epochs
with Adadelta(lr=1.0); Keras 3's Adadelta() defaults to learning_rate=0.001, which learns far more slowly
(pass --learning-rate 1.0 for the old behaviour).

    python examples/mnist_cnn.py                      # the tutorial as written
    python examples/mnist_cnn.py --epochs 1 --limit 2000 --learning-rate 1.0   # a quick run
"""
import argparse
import sys

import fastconv.keras as keras
from fastconv.keras import backend as K
from fastconv.keras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastconv.keras.models import Sequential


def load_mnist():
    try:
        from fastconv.keras.datasets import mnist
    except ImportError as err:
        sys.exit(
            "This example needs fastconv.keras.datasets.mnist (the MNIST loader), which this installation "
            f"does not have ({err}). Update fastconv, or adapt load_mnist() to your copy of MNIST as four "
            "arrays (x_train (60000, 28, 28) uint8, y_train (60000,), x_test (10000, 28, 28), y_test (10000,))."
        )
    return mnist.load_data()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="Adadelta's learning rate (default: Keras 3's, 0.001)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)

    batch_size = args.batch_size
    num_classes = 10
    epochs = args.epochs

    # input image dimensions
    img_rows, img_cols = 28, 28

    # the data, split between train and test sets
    (x_train, y_train), (x_test, y_test) = load_mnist()
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    if K.image_data_format() == "channels_first":
        x_train = x_train.reshape(x_train.shape[0], 1, img_rows, img_cols)
        x_test = x_test.reshape(x_test.shape[0], 1, img_rows, img_cols)
        input_shape = (1, img_rows, img_cols)
    else:
        x_train = x_train.reshape(x_train.shape[0], img_rows, img_cols, 1)
        x_test = x_test.reshape(x_test.shape[0], img_rows, img_cols, 1)
        input_shape = (img_rows, img_cols, 1)

    x_train = x_train.astype("float32")
    x_test = x_test.astype("float32")
    x_train /= 255
    x_test /= 255
    print("x_train shape:", x_train.shape)
    print(x_train.shape[0], "train samples")
    print(x_test.shape[0], "test samples")

    # convert class vectors to binary class matrices
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)

    model = Sequential()
    model.add(Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=input_shape))
    model.add(Conv2D(64, (3, 3), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))
    model.add(Flatten())
    model.add(Dense(128, activation="relu"))
    model.add(Dropout(0.5))
    model.add(Dense(num_classes, activation="softmax"))

    optimizer = (keras.optimizers.Adadelta() if args.learning_rate is None
                 else keras.optimizers.Adadelta(learning_rate=args.learning_rate))
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer=optimizer, metrics=["accuracy"])
    model.summary()

    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=1,
              validation_data=(x_test, y_test))
    score = model.evaluate(x_test, y_test, verbose=0)
    print("Test loss:", score[0])
    print("Test accuracy:", score[1])
    return score


if __name__ == "__main__":
    main()
