"""Every layer's forward and backward: central finite differences (float64) and shapes/errors.

PyTorch parity lives in test_layers_torch.py.
"""
import numpy as np
import pytest

from fastconv.keras import backend, layers
from fastconv.testing.gradcheck import numeric_gradient


@pytest.fixture(autouse=True)
def _fresh_session():
    # Finite differences make hundreds of tiny kernel calls; on a loaded machine OpenMP's thread
    # hand-off costs milliseconds per call, so these run single-threaded (fastconv reads this per call).
    backend.clear_session()
    backend.set_seed(1234)
    yield


def _numeric_grad(f, array, eps=1e-6, max_entries=40, rng=None):
    """Central differences of the scalar f() with respect to some entries of `array` (modified in place)."""
    rng = rng or np.random.default_rng(0)
    size = array.size
    idx = np.arange(size) if size <= max_entries else rng.choice(size, max_entries, replace=False)
    return dict(zip(map(int, idx), numeric_gradient(f, array, eps, idx)))


def check_gradients(layer, x, training=True, rtol=1e-5, atol=1e-7):
    """Compare backward's input and variable gradients with central differences of sum(y * r)."""
    rng = np.random.default_rng(7)
    multi = isinstance(x, list)
    y = layer(x, training=training)
    r = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(layer.call(x, training=training) * r))

    layer._grads = {}
    layer.call(x, training=training)
    grad_x = layer.backward(r)
    grads = {id(v): layer._grads.get(id(v)) for v in layer.trainable_weights}
    inputs = x if multi else [x]
    grad_xs = grad_x if multi else [grad_x]
    for xi, gi in zip(inputs, grad_xs):
        assert gi.shape == xi.shape
        for i, num in _numeric_grad(loss, xi).items():
            np.testing.assert_allclose(gi.reshape(-1)[i], num, rtol=rtol, atol=atol)
    for v in layer.trainable_weights:
        g = grads[id(v)]
        assert g is not None and g.shape == v.shape, v.path
        for i, num in _numeric_grad(loss, v.value).items():
            np.testing.assert_allclose(g.reshape(-1)[i], num, rtol=rtol, atol=atol, err_msg=v.path)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


CONV_CASES = {
    "valid": dict(filters=4, kernel_size=3),
    "same_stride2": dict(filters=3, kernel_size=3, strides=2, padding="same"),
    "same_even_kernel": dict(filters=2, kernel_size=(2, 4), padding="same"),
    "dilated": dict(filters=2, kernel_size=3, dilation_rate=2),
    "groups": dict(filters=4, kernel_size=3, groups=2, strides=(1, 2)),
    "relu_bias": dict(filters=3, kernel_size=3, activation="relu", bias_initializer="ones"),
    "tanh_no_bias": dict(filters=3, kernel_size=1, activation="tanh", use_bias=False),
    "elu": dict(filters=2, kernel_size=2, activation="elu"),
    "channels_first": dict(filters=3, kernel_size=3, strides=2, padding="same", data_format="channels_first"),
}


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv2d_gradients(case):
    layer = layers.Conv2D(dtype="float64", **case)
    shape = (2, 4, 7, 8) if case.get("data_format") == "channels_first" else (2, 7, 8, 4)
    check_gradients(layer, _x(*shape))


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "reference"])
def test_conv2d_algorithms_agree(algorithm):
    x = _x(2, 9, 9, 5).astype(np.float32)
    base = layers.Conv2D(6, 3, padding="same", strides=2)
    other = layers.Conv2D(6, 3, padding="same", strides=2, algorithm=algorithm)
    base.build(x.shape), other.build(x.shape)
    other.set_weights(base.get_weights())
    np.testing.assert_allclose(other(x), base(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "softmax", "sigmoid", "linear", "softplus"])
def test_dense_gradients(activation):
    check_gradients(layers.Dense(5, activation=activation, dtype="float64"), _x(4, 6))


def test_dense_on_rank3_input():
    layer = layers.Dense(3, dtype="float64")
    check_gradients(layer, _x(2, 4, 6))
    assert layer.compute_output_shape((None, 4, 6)) == (None, 4, 3)


POOL_CASES = {
    "max_valid": (layers.MaxPooling2D, dict(pool_size=2)),
    "max_same_stride2": (layers.MaxPooling2D, dict(pool_size=3, strides=2, padding="same")),
    "max_overlap": (layers.MaxPooling2D, dict(pool_size=3, strides=1)),
    "avg_valid": (layers.AveragePooling2D, dict(pool_size=(2, 3))),
    "avg_same_stride2": (layers.AveragePooling2D, dict(pool_size=3, strides=2, padding="same")),
    "global_avg": (layers.GlobalAveragePooling2D, {}),
    "global_avg_keepdims": (layers.GlobalAveragePooling2D, dict(keepdims=True)),
    "global_max": (layers.GlobalMaxPooling2D, {}),
}


@pytest.mark.parametrize("case", POOL_CASES.values(), ids=POOL_CASES.keys())
def test_pooling_gradients(case):
    cls, kwargs = case
    check_gradients(cls(dtype="float64", **kwargs), _x(2, 7, 8, 3))


@pytest.mark.parametrize("layer_factory", [
    lambda: layers.Activation("tanh", dtype="float64"),
    lambda: layers.Activation("softmax", dtype="float64"),
    lambda: layers.Activation("elu", dtype="float64"),
    lambda: layers.ReLU(dtype="float64"),
    lambda: layers.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.2, dtype="float64"),
    lambda: layers.Softmax(axis=1, dtype="float64"),
    lambda: layers.Flatten(dtype="float64"),
    lambda: layers.Flatten(data_format="channels_first", dtype="float64"),
    lambda: layers.Reshape((-1, 3), dtype="float64"),
], ids=["tanh", "softmax", "elu", "relu", "relu_options", "softmax_axis1", "flatten", "flatten_cf", "reshape"])
def test_elementwise_and_reshaping_gradients(layer_factory):
    check_gradients(layer_factory(), _x(3, 4, 5, 3))


@pytest.mark.parametrize("axis,shape", [(-1, (6, 3, 4, 5)), (1, (6, 5, 3, 4)), (-1, (8, 7))])
def test_batch_normalization_gradients(axis, shape):
    layer = layers.BatchNormalization(axis=axis, dtype="float64", gamma_initializer="random_normal",
                                      beta_initializer="random_normal")
    check_gradients(layer, _x(*shape))


def test_batch_normalization_inference_gradients():
    layer = layers.BatchNormalization(dtype="float64")
    layer.build((None, 5))
    layer.trainable = False  # inference mode even when training=True
    check_gradients(layer, _x(6, 5), training=True)


def test_merge_layer_gradients():
    check_gradients(layers.Add(dtype="float64"), [_x(2, 3, 4), _x(2, 3, 4, seed=1)])
    check_gradients(layers.Concatenate(axis=1, dtype="float64"), [_x(2, 3, 4), _x(2, 2, 4, seed=1)])


# --------------------------------------------------------------------------- semantics
def test_flatten_orders_h_w_c():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(layers.Flatten()(x), x.reshape(2, -1))
    cf = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(layers.Flatten(data_format="channels_first")(cf), x.reshape(2, -1))


def test_dropout_is_inverted_and_training_only():
    layer = layers.Dropout(0.25)
    x = np.ones((200, 50), np.float32)
    np.testing.assert_array_equal(layer(x), x)
    y = layer(x, training=True)
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    g = layer.backward(np.full_like(x, 2.0))
    np.testing.assert_allclose(g, 2 * y, rtol=1e-6)


def test_dropout_draws_from_backend_rng():
    x = np.ones((10, 10), np.float32)
    backend.set_seed(5)
    a = layers.Dropout(0.5)(x, training=True)
    backend.set_seed(5)
    b = layers.Dropout(0.5)(x, training=True)
    c = layers.Dropout(0.5)(x, training=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


def test_dropout_noise_shape_broadcasts():
    y = layers.Dropout(0.5, noise_shape=(None, 1, 1, 4))(np.ones((3, 5, 5, 4), np.float32), training=True)
    assert np.all(y == y[:, :1, :1, :])


def test_batch_normalization_moving_statistics():
    layer = layers.BatchNormalization()
    x = _x(32, 3, seed=3).astype(np.float32) * 2 + 1
    y = layer(x, training=True)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(0), x.var(0) / (x.var(0) + 1e-3), rtol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.value, 0.01 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.value, 0.99 + 0.01 * x.var(0), rtol=1e-5)
    before = layer.get_weights()
    inference = layer(x)
    np.testing.assert_allclose(inference, (x - before[2]) / np.sqrt(before[3] + 1e-3), rtol=1e-5, atol=1e-6)
    layer.trainable = False
    layer(x, training=True)
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert layer.count_params() == 12
    assert len(layer.trainable_weights) == 0 and len(layer.non_trainable_weights) == 4


def test_conv2d_stores_hwio_kernel_and_counts_params():
    layer = layers.Conv2D(8, (3, 5), groups=2)
    layer.build((None, 10, 10, 6))
    assert layer.kernel.shape == (3, 5, 3, 8)
    assert layer.count_params() == 3 * 5 * 3 * 8 + 8
    assert layer.compute_output_shape((None, 10, 10, 6)) == (None, 8, 6, 8)


def test_same_padding_output_shapes():
    conv = layers.Conv2D(2, 3, strides=2, padding="same")
    assert conv.compute_output_shape((None, 7, 8, 1)) == (None, 4, 4, 2)
    pool = layers.MaxPooling2D(3, strides=2, padding="same")
    assert pool.compute_output_shape((None, 7, 8, 1)) == (None, 4, 4, 1)
    x = _x(1, 7, 8, 1).astype(np.float32)
    assert pool(x).shape == (1, 4, 4, 1)


def test_float32_stays_float32():
    for layer in (layers.Conv2D(2, 3), layers.Dense(3), layers.BatchNormalization(), layers.MaxPooling2D()):
        x = np.ones((2, 6, 6, 3), np.float32)
        assert layer(x).dtype == np.float32


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("factory,message", [
    (lambda: layers.Conv2D(0, 3), "filters=0"),
    (lambda: layers.Conv2D(4, (3, 3, 3)), "kernel_size=(3, 3, 3)"),
    (lambda: layers.Conv2D(4, 3, padding="full"), "padding='full'"),
    (lambda: layers.Conv2D(4, 3, strides=0), "strides=0"),
    (lambda: layers.Conv2D(5, 3, groups=2), "groups=2, filters=5"),
    (lambda: layers.Conv2D(4, 3, algorithm="magic"), "algorithm='magic'"),
    (lambda: layers.Conv2D(4, 3, strides=2, dilation_rate=2), "dilation_rate=(2, 2)"),
    (lambda: layers.Conv2D(4, 3, data_format="nchw_weird"), "data_format='nchw_weird'"),
    (lambda: layers.Dense(0), "units=0"),
    (lambda: layers.Dense(3, activation="nope"), "nope"),
    (lambda: layers.Dropout(1.5), "rate=1.5"),
    (lambda: layers.MaxPooling2D(pool_size=0), "pool_size=0"),
    (lambda: layers.Reshape((2, -1, -1)), "target_shape"),
    (lambda: layers.Dense(3, kernel_initializer="nope"), "nope"),
])
def test_invalid_arguments(factory, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        factory()


def test_unknown_keyword_argument():
    with pytest.raises(TypeError, match="filtres"):
        layers.Conv2D(4, 3, filtres=3)


def test_built_layer_rejects_other_shapes():
    conv = layers.Conv2D(4, 3)
    conv(np.ones((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r'"conv2d".*expected axis -1 of input shape to have value 3.*\(1, 5, 5, 2\)'):
        conv(np.ones((1, 5, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"expected ndim=4, found ndim=3"):
        conv(np.ones((5, 5, 3), np.float32))
    dense = layers.Dense(2)
    dense(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match=r"value 4, but received input with shape \(1, 5\)"):
        dense(np.ones((1, 5), np.float32))


def test_layer_names_are_unique_per_class():
    assert [layers.Dense(1).name for _ in range(3)] == ["dense", "dense_1", "dense_2"]
    assert layers.MaxPooling2D().name == "max_pooling2d"
    assert layers.BatchNormalization().name == "batch_normalization"
    assert layers.GlobalAveragePooling2D().name == "global_average_pooling2d"


def test_get_config_round_trip():
    layer = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="c")
    clone = layers.Conv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
