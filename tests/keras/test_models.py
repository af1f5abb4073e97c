"""Sequential and functional models: structure, summary, weights, training, errors."""
import io
from contextlib import redirect_stdout

import numpy as np
import pytest

import fastconv.keras as keras
from fastconv.keras import backend, layers
from fastconv.keras.models import Model, Sequential


@pytest.fixture(autouse=True)
def _session():
    backend.clear_session()
    backend.set_seed(0)
    yield
    backend.set_floatx("float32")


def _tutorial_model():
    model = Sequential()
    model.add(layers.Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D(pool_size=(2, 2)))
    model.add(layers.Dropout(0.25))
    model.add(layers.Flatten())
    model.add(layers.Dense(128, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(10, activation="softmax"))
    return model


def _summary(model, **kwargs):
    lines = []
    model.summary(print_fn=lines.append, **kwargs)
    return "\n".join(lines)


# --------------------------------------------------------------------------- structure and summary
def test_tutorial_summary_matches_keras():
    text = _summary(_tutorial_model())
    assert text.startswith('Model: "sequential"')
    for row in ["conv2d (Conv2D)", "(None, 26, 26, 32)", "320", "conv2d_1 (Conv2D)", "(None, 24, 24, 64)",
                "18,496", "max_pooling2d (MaxPooling2D)", "(None, 12, 12, 64)", "flatten (Flatten)",
                "(None, 9216)", "dense (Dense)", "1,179,776", "dense_1 (Dense)", "1,290"]:
        assert row in text
    assert " Total params: 1,199,882 (4.58 MB)" in text
    assert " Trainable params: 1,199,882 (4.58 MB)" in text
    assert " Non-trainable params: 0 (0.00 B)" in text
    assert "┃ Layer (type)" in text and "Connected to" not in text


def test_summary_counts_batch_norm_as_non_trainable():
    model = Sequential([layers.Input(shape=(8, 8, 3)), layers.Conv2D(4, 3, use_bias=False),
                        layers.BatchNormalization(), layers.GlobalAveragePooling2D(), layers.Dense(2)])
    text = _summary(model)
    assert " Total params: 134 " in text            # 108 + 16 + 10
    assert " Trainable params: 126 " in text
    assert " Non-trainable params: 8 (32.00 B)" in text
    assert model.count_params() == 134


def test_summary_prints_to_stdout_by_default():
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        _tutorial_model().summary()
    assert "Total params: 1,199,882" in buffer.getvalue()


def test_functional_summary_has_connections():
    a = layers.Input(shape=(4,), name="a")
    b = layers.Input(shape=(3,), name="b")
    merged = layers.Concatenate(name="cat")([layers.Dense(5, name="da")(a), b])
    model = Model([a, b], layers.Dense(1, name="out")(merged))
    text = _summary(model)
    assert "Connected to" in text and "a (InputLayer)" in text
    assert "da[0][0], b[0][0]" in text
    assert model.count_params() == 25 + 9


def test_sequential_pop_and_get_layer():
    model = _tutorial_model()
    assert model.get_layer("dense").units == 128
    assert model.get_layer(index=0).name == "conv2d"
    with pytest.raises(ValueError, match="No such layer: nope"):
        model.get_layer("nope")
    last = model.pop()
    assert last.name == "dense_1" and model.output_shape == (None, 128)
    assert len(model.layers) == 7


def test_sequential_builds_from_data_when_no_input_shape():
    model = Sequential([layers.Dense(3), layers.Dense(2)])
    assert not model.built
    out = model.predict(np.ones((5, 4), np.float32), verbose=0)
    assert out.shape == (5, 2) and model.built and model.count_params() == 15 + 8


def test_get_set_weights_round_trip():
    model = _tutorial_model()
    weights = model.get_weights()
    assert [w.shape for w in weights[:2]] == [(3, 3, 1, 32), (32,)]
    other = _tutorial_model()
    other.set_weights(weights)
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), other.predict(x, verbose=0))
    with pytest.raises(ValueError, match="length 1"):
        other.set_weights(weights[:1])


def test_sequential_rejects_non_layers():
    with pytest.raises(ValueError, match="Only instances of `keras.Layer`.*Received: 5"):
        Sequential([5])


# --------------------------------------------------------------------------- training
def _blobs(n=120, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, d))
    labels = rng.integers(0, classes, n)
    x = (centers[labels] + rng.normal(0, 1, (n, d))).astype(np.float32)
    return x, labels


def test_fit_learns_and_returns_history():
    x, labels = _blobs()
    y = keras.utils.to_categorical(labels, 3)
    model = Sequential([layers.Dense(16, activation="relu", input_shape=(6,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0, validation_split=0.25)
    assert history is model.history
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(history.history["loss"]) == 15
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.9
    assert model.metrics_names == ["loss", "accuracy"]


def test_validation_split_takes_the_last_samples_before_shuffling():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.zeros((10, 1), np.float32)
    seen = []

    class Spy(layers.Layer):
        def call(self, inputs, training=False):
            seen.append((training, inputs[:, 0].copy()))
            return inputs

        def backward(self, grad_output, needs_input=True):
            return grad_output

    model = Sequential([layers.Input(shape=(1,)), Spy(), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, validation_split=0.3, verbose=0)
    train = np.concatenate([v for t, v in seen if t])
    val = np.concatenate([v for t, v in seen if not t])
    assert sorted(train.tolist()) == list(range(7))
    np.testing.assert_array_equal(val, [7, 8, 9])


def test_evaluate_matches_manual_loss():
    x, labels = _blobs(50)
    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(6,))])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    probs = model.predict(x, verbose=0)
    expected = -np.mean(np.log(np.clip(probs[np.arange(50), labels], 1e-7, 1)))
    loss, acc = model.evaluate(x, labels, batch_size=7, verbose=0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(acc, np.mean(probs.argmax(1) == labels))
    assert model.evaluate(x, labels, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}


def test_train_step_is_plain_gradient_descent():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    model = Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    w, b = model.get_weights()
    loss = model.train_on_batch(x, y)
    err = x @ w + b - y
    np.testing.assert_allclose(loss, np.mean(err ** 2), rtol=1e-5)
    grad_w = x.T @ (2 * err / err.size)
    np.testing.assert_allclose(model.get_weights()[0], w - 0.1 * grad_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.test_on_batch(x, y), np.mean((model.predict_on_batch(x) - y) ** 2), rtol=1e-5)


def test_frozen_layers_get_no_updates():
    x, labels = _blobs(40)
    model = Sequential([layers.Dense(8, activation="relu", input_shape=(6,), name="base"),
                        layers.BatchNormalization(name="bn"), layers.Dense(3, activation="softmax")])
    model.get_layer("base").trainable = False
    model.get_layer("bn").trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    frozen = model.get_layer("base").get_weights() + model.get_layer("bn").get_weights()
    head = model.layers[-1].get_weights()
    model.fit(x, labels, epochs=2, verbose=0)
    for a, b in zip(frozen, model.get_layer("base").get_weights() + model.get_layer("bn").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head[0], model.layers[-1].get_weights()[0])
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 6


def test_sample_and_class_weights():
    x, labels = _blobs(30)
    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(6,))])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    base = model.evaluate(x, labels, verbose=0)
    doubled = model.evaluate(x, labels, verbose=0, sample_weight=np.full(30, 2.0))
    np.testing.assert_allclose(doubled, 2 * base, rtol=1e-5)
    weights = model.get_weights()
    model.fit(x, labels, epochs=1, verbose=0, shuffle=False, class_weight={0: 2.0, 1: 2.0, 2: 2.0})
    a = model.get_weights()
    model.set_weights(weights)
    model.fit(x, labels, epochs=1, verbose=0, shuffle=False, sample_weight=np.full(30, 2.0))
    for u, v in zip(a, model.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-6)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
        model.fit(x, labels, verbose=0, class_weight={0: 1.0, 1: 1.0})


def test_functional_multi_input_multi_output_and_shared_layer():
    a = layers.Input(shape=(5,))
    b = layers.Input(shape=(5,))
    shared = layers.Dense(4, activation="tanh", name="shared")
    merged = layers.Add()([shared(a), shared(b)])
    out1 = layers.Dense(1, name="reg")(merged)
    out2 = layers.Dense(3, activation="softmax", name="cls")(layers.Concatenate()([merged, a]))
    model = Model(inputs=[a, b], outputs=[out1, out2])
    assert len(model.layers) == 5 and model.count_params() == 24 + 5 + 30
    rng = np.random.default_rng(2)
    xa, xb = rng.standard_normal((64, 5)).astype(np.float32), rng.standard_normal((64, 5)).astype(np.float32)
    y1 = (xa.sum(1, keepdims=True) - xb.sum(1, keepdims=True)).astype(np.float32)
    y2 = rng.integers(0, 3, 64)
    model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[1.0, 0.5],
                  metrics={"cls": ["accuracy"]})
    history = model.fit([xa, xb], [y1, y2], epochs=3, batch_size=16, verbose=0)
    assert {"loss", "reg_loss", "cls_loss", "cls_accuracy"} <= set(history.history)
    logs = model.evaluate([xa, xb], [y1, y2], verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], logs["reg_loss"] + 0.5 * logs["cls_loss"], rtol=1e-5)
    p1, p2 = model.predict([xa, xb], verbose=0)
    assert p1.shape == (64, 1) and p2.shape == (64, 3)


def test_functional_gradients_match_finite_differences():
    backend.set_floatx("float64")
    a = layers.Input(shape=(6, 6, 2))
    shared = layers.Conv2D(3, 3, padding="same", activation="tanh")
    x1 = shared(a)
    x2 = shared(layers.AveragePooling2D(1)(a))
    x = layers.Concatenate()([x1, x2])
    x = layers.BatchNormalization()(x)
    out = layers.Dense(2)(layers.Flatten()(layers.MaxPooling2D(2, padding="same")(x)))
    model = Model(a, out)
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((3, 6, 6, 2))]
    r = rng.standard_normal((3, 2))
    model._zero_grads()
    model._forward(xs, training=True)
    model._backward([r])
    pairs = model._gradients()
    for g, v in pairs[:3]:
        flat = v.value.reshape(-1)
        for i in range(0, flat.size, max(flat.size // 5, 1)):
            old = flat[i]
            flat[i] = old + 1e-6
            plus = np.sum(model._forward(xs, training=True)[0] * r)
            flat[i] = old - 1e-6
            minus = np.sum(model._forward(xs, training=True)[0] * r)
            flat[i] = old
            np.testing.assert_allclose(g.reshape(-1)[i], (plus - minus) / 2e-6, rtol=1e-5, atol=1e-8)


def test_nested_model_as_layer():
    inner = Sequential([layers.Dense(4, activation="relu", input_shape=(3,)), layers.Dense(2)], name="inner")
    outer = Sequential([layers.Input(shape=(3,)), inner, layers.Dense(1)])
    outer.compile(optimizer="sgd", loss="mse")
    before = inner.get_weights()
    outer.fit(np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32), verbose=0)
    assert not np.array_equal(before[0], inner.get_weights()[0])
    assert outer.count_params() == 16 + 10 + 3


def test_float64_training():
    backend.set_floatx("float64")
    x, labels = _blobs(32)
    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(6,))])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, labels, epochs=1, verbose=0)
    assert model.get_weights()[0].dtype == np.float64
    assert model.predict(x, verbose=0).dtype == np.float64


def test_seeded_runs_are_bitwise_reproducible():
    x = np.random.default_rng(4).random((40, 8, 8, 1), dtype=np.float32)
    labels = np.random.default_rng(5).integers(0, 3, 40)

    def run():
        backend.clear_session()
        keras.utils.set_random_seed(42)
        model = Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), layers.MaxPooling2D(),
                            layers.Dropout(0.3), layers.Flatten(), layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, labels, batch_size=8, epochs=2, verbose=0)
        return model.get_weights(), history.history

    w1, h1 = run()
    w2, h2 = run()
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- errors
def test_wrong_input_shape_names_what_was_received():
    model = _tutorial_model()
    model.compile(optimizer="adadelta", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expected shape=\(None, 28, 28, 1\), found shape=\(4, 28, 28\)"):
        model.predict(np.zeros((4, 28, 28), np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"found shape=\(4, 32, 32, 3\)"):
        model.fit(np.zeros((4, 32, 32, 3), np.float32), np.zeros((4, 10), np.float32), verbose=0)


def test_label_count_and_shape_errors():
    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(6,))])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = np.zeros((10, 6), np.float32)
    with pytest.raises(ValueError, match=r"(?s)Data cardinality is ambiguous.*'x' sizes: 10\n'y' sizes: 9"):
        model.fit(x, np.zeros((9, 3), np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"\(10, 5\)|shape"):
        model.fit(x, np.zeros((10, 5), np.float32), verbose=0)


def test_unknown_names_and_bad_arguments():
    model = Sequential([layers.Dense(3, input_shape=(6,))])
    with pytest.raises(ValueError, match="adamm"):
        model.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match="msee"):
        model.compile(optimizer="adam", loss="msee")
    model.compile(optimizer="adam", loss="mse", metrics=["accuracyy"])
    with pytest.raises(ValueError, match="accuracyy"):
        model.fit(np.zeros((4, 6), np.float32), np.zeros((4, 3), np.float32), verbose=0)
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="batch_size=0"):
        model.fit(np.zeros((4, 6), np.float32), np.zeros((4, 3), np.float32), batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="validation_split=1.5"):
        model.fit(np.zeros((4, 6), np.float32), np.zeros((4, 3), np.float32), validation_split=1.5, verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        Sequential([layers.Dense(1, input_shape=(2,))]).fit(np.zeros((2, 2)), np.zeros((2, 1)))


def test_graph_disconnected():
    a = layers.Input(shape=(3,))
    b = layers.Input(shape=(3,))
    out = layers.Add()([a, b])
    with pytest.raises(ValueError, match="Graph disconnected"):
        Model(a, out)


# --------------------------------------------------------------------------- callbacks and progress
def test_callback_hooks_and_initial_epoch():
    events = []

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_end(self, epoch, logs=None):
            events.append(("epoch", epoch, sorted(logs)))

        def on_train_batch_end(self, batch, logs=None):
            events.append(("batch", batch))

    x, labels = _blobs(20)
    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(6,))])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["acc"])
    history = model.fit(x, labels, batch_size=8, epochs=3, initial_epoch=1, verbose=0, callbacks=[Recorder()])
    assert events[0] == "train_begin"
    assert [e[1] for e in events if e[0] == "epoch"] == [1, 2]
    assert [e for e in events if e[0] == "batch"][:3] == [("batch", 0), ("batch", 1), ("batch", 2)]
    assert events[-1] == ("epoch", 2, ["acc", "loss"])
    assert history.epoch == [1, 2]


def test_terminate_on_nan_stops_training():
    x = np.ones((64, 2), np.float32)
    x[5] = np.nan
    model = Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer="sgd", loss="mse")
    seen = []
    history = model.fit(x, np.zeros((64, 1), np.float32), batch_size=8, epochs=5, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN(),
                                   keras.callbacks.LambdaCallback(on_batch_end=lambda b, logs: seen.append(b))])
    assert model.stop_training and seen == [0]
    assert len(history.history.get("loss", [])) <= 1


def test_progress_output_without_control_characters(capsys):
    x, labels = _blobs(20)
    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(6,))])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, labels, batch_size=8, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "loss:" in out and "accuracy:" in out
    assert "\r" not in out and "\x1b" not in out and "\b" not in out
    model.fit(x, labels, batch_size=8, epochs=1, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_conv_layers_follow_fastconvs_default_algorithm(monkeypatch):
    import fastconv
    from fastconv import algorithms
    x = np.random.default_rng(0).random((2, 9, 9, 5), dtype=np.float32)
    model = Sequential([layers.Conv2D(6, 3, padding="same", input_shape=(9, 9, 5))])
    expected = model.predict(x, verbose=0)
    chosen = []
    original = algorithms.select
    monkeypatch.setattr(algorithms, "select", lambda *a: chosen.append(original(*a).name) or original(*a))
    with fastconv.use_algorithm("reference"):
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert chosen == ["reference"]
    with pytest.raises(ValueError, match="algorithm='fft'"):
        layers.Conv2D(6, 3, algorithm="fft")


def test_first_layer_skips_its_input_gradient(monkeypatch):
    import fastconv
    calls = []
    original = fastconv.conv2d_backward

    def spy(*args, **kwargs):
        calls.append(tuple(sorted(kwargs["needs"])))
        return original(*args, **kwargs)

    monkeypatch.setattr(fastconv, "conv2d_backward", spy)
    model = Sequential([layers.Conv2D(2, 3, input_shape=(6, 6, 1)), layers.Conv2D(2, 3), layers.Flatten(),
                        layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.train_on_batch(np.ones((2, 6, 6, 1), np.float32), np.ones((2, 1), np.float32))
    assert calls == [("bias", "input", "weight"), ("bias", "weight")]
    calls.clear()
    model.layers[0].trainable = False
    model.train_on_batch(np.ones((2, 6, 6, 1), np.float32), np.ones((2, 1), np.float32))
    assert calls == [("bias", "weight")]  # nothing upstream of the second conv needs a gradient
