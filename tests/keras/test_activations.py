"""fastconv.keras.activations: values, gradients (central differences, float64), lookup."""
import functools

import numpy as np
import pytest

from fastconv.keras import activations

RNG = np.random.default_rng(0)

# Inputs kept away from every kink (0, +-3, 6, the relu threshold) so differences are smooth.
X = np.array([[-4.2, -2.5, -1.3, -0.4, 0.35, 1.1], [2.2, 3.7, 6.4, -0.9, 0.6, 5.1]])

BUILTINS = ["linear", "relu", "leaky_relu", "relu6", "elu", "selu", "sigmoid", "hard_sigmoid",
            "hard_silu", "silu", "tanh", "softplus", "softsign", "exponential", "gelu", "mish",
            "softmax", "log_softmax"]
PARAMETRISED = [
    ("relu_slope_max_threshold", functools.partial(activations.relu, negative_slope=0.1,
                                                   max_value=4.0, threshold=1.5)),
    ("relu_max", functools.partial(activations.relu, max_value=2.0)),
    ("relu_threshold", functools.partial(activations.relu, threshold=-1.0)),
    ("leaky_relu_0.3", functools.partial(activations.leaky_relu, negative_slope=0.3)),
    ("elu_0.5", functools.partial(activations.elu, alpha=0.5)),
    ("gelu_tanh", functools.partial(activations.gelu, approximate=True)),
    ("softmax_axis0", functools.partial(activations.softmax, axis=0)),
    ("log_softmax_axis0", functools.partial(activations.log_softmax, axis=0)),
]
ALL_FUNCTIONS = [(name, activations.get(name)) for name in BUILTINS] + PARAMETRISED


def numeric_gradient(fn, x, grad_y, h=1e-6):
    """Central differences of sum(grad_y * fn(x)) with respect to x."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = np.sum(grad_y * (fn(plus) - fn(minus))) / (2 * h)
    return grad


@pytest.mark.parametrize("name,fn", ALL_FUNCTIONS, ids=[n for n, _ in ALL_FUNCTIONS])
def test_gradient_matches_central_differences(name, fn):
    grad_y = RNG.standard_normal(X.shape)
    y = fn(X)
    analytic = activations.gradient(fn, X, y, grad_y)
    np.testing.assert_allclose(analytic, numeric_gradient(fn, X, grad_y), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", BUILTINS)
def test_float32_in_float32_out(name):
    fn = activations.get(name)
    x = X.astype(np.float32)
    y = fn(x)
    assert y.dtype == np.float32
    assert activations.gradient(fn, x, y, np.ones_like(x)).dtype == np.float32


def test_integer_input_is_computed_in_floatx():
    assert activations.sigmoid(np.array([0, 1])).dtype == np.float32


def test_hand_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(activations.relu(x), [0, 0, 0, 0.5, 2])
    np.testing.assert_allclose(activations.leaky_relu(x), [-0.4, -0.1, 0, 0.5, 2])
    np.testing.assert_allclose(activations.elu(x), [np.exp(-2) - 1, np.exp(-0.5) - 1, 0, 0.5, 2])
    np.testing.assert_allclose(activations.sigmoid(x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(activations.softplus(x), np.log1p(np.exp(x)))
    np.testing.assert_allclose(activations.hard_sigmoid(x), np.clip(x / 6 + 0.5, 0, 1))
    np.testing.assert_allclose(activations.softmax(x), np.exp(x) / np.exp(x).sum())
    assert activations.linear(x) is x


def test_generalised_relu_follows_keras():
    x = np.array([-3.0, 0.5, 1.0, 2.0, 5.0])
    # threshold 1: x <= 1 -> slope part 0.1 * (x - 1); above: x, clipped at 4.
    expected = [0.1 * (-3 - 1), 0.1 * (0.5 - 1), 0.0, 2.0, 4.0]
    np.testing.assert_allclose(
        activations.relu(x, negative_slope=0.1, max_value=4.0, threshold=1.0), expected)
    np.testing.assert_allclose(activations.relu(x, max_value=6.0), [0, 0.5, 1, 2, 5])


def test_extreme_inputs_do_not_overflow_or_warn():
    x = np.array([[-1000.0, 0.0, 1000.0]])
    for name in ("sigmoid", "softplus", "elu", "selu", "softmax", "log_softmax", "silu", "mish"):
        y = activations.get(name)(x)
        assert np.all(np.isfinite(y)), name
    np.testing.assert_allclose(activations.softmax(x).sum(), 1.0)


def test_against_torch():
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    x = RNG.standard_normal((4, 7)) * 3
    t = torch.from_numpy(x)
    pairs = {
        "relu": f.relu(t), "sigmoid": torch.sigmoid(t), "tanh": torch.tanh(t),
        "elu": f.elu(t), "leaky_relu": f.leaky_relu(t, 0.2), "softplus": f.softplus(t),
        "selu": f.selu(t), "gelu": f.gelu(t), "silu": f.silu(t), "mish": f.mish(t),
        "hard_sigmoid": f.hardsigmoid(t), "hard_silu": f.hardswish(t), "relu6": f.relu6(t),
        "softsign": f.softsign(t), "softmax": torch.softmax(t, -1),
        "log_softmax": torch.log_softmax(t, -1),
    }
    for name, expected in pairs.items():
        np.testing.assert_allclose(activations.get(name)(x), expected.numpy(), rtol=1e-7,
                                   atol=1e-12, err_msg=name)
    np.testing.assert_allclose(activations.gelu(x, approximate=True),
                               f.gelu(t, approximate="tanh").numpy(), rtol=1e-7, atol=1e-12)


def test_get_resolves_names_none_configs_and_callables():
    assert activations.get(None) is activations.linear
    assert activations.get("relu") is activations.relu
    assert activations.get("swish") is activations.silu
    assert activations.get({"class_name": "function", "config": "tanh"}) is activations.tanh

    def custom(x):
        return x

    assert activations.get(custom) is custom


@pytest.mark.parametrize("identifier", ["rellu", 3, [1]])
def test_get_rejects_unknown(identifier):
    with pytest.raises(ValueError, match="Received: identifier="):
        activations.get(identifier)


def test_gradient_refuses_unknown_callables_by_name():
    def my_activation(x):
        return x * 2

    with pytest.raises(ValueError, match="my_activation.*Received: fn="):
        activations.gradient(my_activation, X, X, X)


def test_relu_rejects_negative_arguments():
    with pytest.raises(ValueError, match="Received: negative_slope=-1"):
        activations.relu(X, negative_slope=-1)
    with pytest.raises(ValueError, match="Received: max_value=-2"):
        activations.relu(X, max_value=-2)


def test_serialize_round_trip():
    for name in BUILTINS:
        fn = activations.get(name)
        assert activations.deserialize(activations.serialize(fn)) is fn
    assert activations.serialize(activations.swish) == "silu"

    def mine(x):
        return x

    assert activations.serialize(mine) == "mine"
    assert activations.deserialize("mine", custom_objects={"mine": mine}) is mine
