"""The classic Keras MNIST CNN tutorial, unchanged but for its imports, on a small slice of digits.

The data are scikit-learn's bundled 8x8 digits, upscaled to 28x28 (no download); the model, compile,
fit and evaluate lines are the tutorial's.
"""
import numpy as np
import pytest

import fastconv.keras as keras
from fastconv.keras import backend as K
from fastconv.keras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastconv.keras.models import Sequential

datasets = pytest.importorskip("sklearn.datasets")


def _digits(n_train, n_test):
    digits = datasets.load_digits()
    images = np.kron(digits.images, np.ones((3, 3)))            # 24 x 24
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))) / 16.0      # 28 x 28 in [0, 1]
    x, y = images[:, :, :, None].astype("float32"), digits.target
    return (x[:n_train], y[:n_train]), (x[n_train:n_train + n_test], y[n_train:n_train + n_test])


@pytest.fixture(autouse=True)
def _session():
    K.clear_session()
    keras.utils.set_random_seed(1)


def test_mnist_cnn_tutorial_runs_unchanged():
    batch_size = 32
    num_classes = 10
    epochs = 2
    img_rows, img_cols = 28, 28

    (x_train, y_train), (x_test, y_test) = _digits(192, 64)
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

    model.compile(loss=keras.losses.categorical_crossentropy, optimizer=keras.optimizers.Adadelta(),
                  metrics=["accuracy"])
    initial = [w.copy() for w in model.get_weights()]

    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0,
                        validation_data=(x_test, y_test))
    score = model.evaluate(x_test, y_test, verbose=0)

    assert model.count_params() == 1_199_882
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == epochs for v in history.history.values())
    assert isinstance(score, list) and len(score) == 2
    np.testing.assert_allclose(score[0], history.history["val_loss"][-1], rtol=1e-6)
    assert np.isfinite(score[0]) and 0.0 <= score[1] <= 1.0
    # Adadelta's Keras 3 default learning rate (0.001) is small, but every weight moved.
    assert all(not np.array_equal(a, b) for a, b in zip(initial, model.get_weights()))


def test_same_network_learns_digits_with_a_real_learning_rate():
    (x_train, y_train), (x_test, y_test) = _digits(400, 200)
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test = keras.utils.to_categorical(y_test, 10)
    model = Sequential([
        Conv2D(8, (3, 3), strides=2, activation="relu", input_shape=(28, 28, 1)),
        MaxPooling2D(pool_size=(2, 2)),
        Dropout(0.25),
        Flatten(),
        Dense(32, activation="relu"),
        Dense(10, activation="softmax"),
    ])
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer=keras.optimizers.Adadelta(learning_rate=1.0),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=10, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.75 and loss < 1.0, (loss, accuracy)
