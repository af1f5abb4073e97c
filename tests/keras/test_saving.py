"""save / load_model / save_weights / load_weights: HDF5, JSON config, atomic writes, no code execution."""
import json
import os

import numpy as np
import pytest

import fastconv.keras as keras
from fastconv.keras import backend, layers
from fastconv.keras.models import Model, Sequential, load_model

h5py = pytest.importorskip("h5py")


@pytest.fixture(autouse=True)
def _session():
    backend.clear_session()
    backend.set_seed(0)


def _cnn():
    model = Sequential([
        layers.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
        layers.BatchNormalization(),
        layers.MaxPooling2D(2),
        layers.Dropout(0.2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data():
    rng = np.random.default_rng(1)
    return rng.random((24, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 24)


@pytest.mark.parametrize("name", ["m.keras", "m.h5"])
def test_save_and_load_model(tmp_path, name):
    x, y = _data()
    model = _cnn()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / name
    model.save(path)
    loaded = load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.compiled and type(loaded.optimizer).__name__ == "Adam"
    np.testing.assert_allclose(loaded.optimizer.learning_rate, 0.01)
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-6)
    loaded.fit(x, y, epochs=1, verbose=0)  # trainable again
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        assert config["class_name"] == "Sequential"
        assert f["model_weights/conv2d/kernel"].shape == (3, 3, 1, 4)


def test_functional_model_round_trip(tmp_path):
    a = layers.Input(shape=(4,), name="a")
    b = layers.Input(shape=(2,), name="b")
    shared = layers.Dense(3, activation="tanh", name="shared")
    h = layers.Concatenate()([shared(a), shared(layers.Dense(4, name="lift")(b)), b])
    model = Model([a, b], [layers.Dense(1, name="y1")(h), layers.Dense(2, activation="softmax", name="y2")(h)])
    model.compile(optimizer="sgd", loss=["mse", "categorical_crossentropy"])
    model.save(tmp_path / "f.keras")
    loaded = load_model(tmp_path / "f.keras")
    rng = np.random.default_rng(0)
    xs = [rng.random((5, 4), dtype=np.float32), rng.random((5, 2), dtype=np.float32)]
    for p, q in zip(model.predict(xs, verbose=0), loaded.predict(xs, verbose=0)):
        np.testing.assert_array_equal(p, q)
    assert loaded.output_names == ["y1", "y2"]


def test_save_and_load_weights(tmp_path):
    model = _cnn()
    model.save_weights(tmp_path / "w.weights.h5")
    other = _cnn()
    other.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    small = Sequential([layers.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="layers with weights"):
        small.load_weights(tmp_path / "w.weights.h5")


def test_trainable_flags_survive(tmp_path):
    model = _cnn()
    model.layers[0].trainable = False
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras", compile=False)
    assert loaded.layers[0].trainable is False and not loaded.compiled
    assert len(loaded.trainable_weights) == len(model.trainable_weights)


def test_interrupted_save_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    model = _cnn()
    model.save(path)
    before = path.read_bytes()
    from fastconv.keras.models import saving

    def broken(group, model):
        group.create_dataset("partial", data=np.zeros(3))
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(saving, "_write_weights", broken)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


def test_loading_never_instantiates_unknown_classes(tmp_path):
    path = tmp_path / "evil.h5"
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "os.system", "config": {"command": "echo pwned"}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "fastconv.keras"
        f.attrs["model_config"] = json.dumps(config)
        f.create_group("model_weights").attrs["layer_names"] = "[]"
    with pytest.raises(ValueError, match="Unknown layer: 'os.system'"):
        load_model(path)


def test_bad_paths_and_files(tmp_path):
    model = _cnn()
    with pytest.raises(ValueError, match="Invalid filepath extension.*m.pkl"):
        model.save(tmp_path / "m.pkl")
    with pytest.raises(ValueError, match="File not found"):
        load_model(tmp_path / "missing.keras")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["something"] = 1
    with pytest.raises(ValueError, match="not a fastconv.keras model"):
        load_model(tmp_path / "other.h5")


def test_custom_objects(tmp_path):
    def scaled_tanh(x):
        return np.tanh(x) * 2

    model = Sequential([layers.Dense(2, input_shape=(3,)), layers.Activation(scaled_tanh)])
    model.save(tmp_path / "c.keras")
    with pytest.raises(ValueError):
        load_model(tmp_path / "c.keras")
    loaded = load_model(tmp_path / "c.keras", custom_objects={"scaled_tanh": scaled_tanh})
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
