"""fastconv.keras.regularizers: penalties, gradients (central differences), lookup, errors."""
import numpy as np
import pytest

from fastconv.keras import regularizers

W = np.array([[0.5, -1.5], [2.0, -0.25], [0.75, 1.25]])


def numeric_gradient(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = (f(plus) - f(minus)) / (2 * h)
    return grad


@pytest.mark.parametrize("reg,expected", [
    (regularizers.L1(), 0.01 * 6.25),
    (regularizers.L2(), 0.01 * 8.6875),
    (regularizers.L1L2(l1=0.1, l2=0.2), 0.1 * 6.25 + 0.2 * 8.6875),
    (regularizers.l1_l2(), 0.0),  # Keras 3: both factors default to 0
    (regularizers.l2(0.5), 0.5 * 8.6875),
])
def test_penalty_values(reg, expected):
    assert reg(W) == pytest.approx(expected)
    assert isinstance(reg(W), float)


@pytest.mark.parametrize("reg", [regularizers.L1(0.3), regularizers.L2(0.3),
                                 regularizers.L1L2(0.2, 0.7)], ids=["l1", "l2", "l1_l2"])
def test_gradient_matches_central_differences(reg):
    np.testing.assert_allclose(reg.gradient(W), numeric_gradient(reg, W), rtol=1e-7, atol=1e-9)


def test_gradient_keeps_dtype():
    assert regularizers.L2().gradient(W.astype(np.float32)).dtype == np.float32


def test_get_and_round_trip():
    assert isinstance(regularizers.get("l2"), regularizers.L2)
    assert regularizers.get("l2").l2 == 0.01
    assert isinstance(regularizers.get("L1L2"), regularizers.L1L2)
    assert regularizers.get(None) is None
    reg = regularizers.L1L2(l1=0.1, l2=0.3)
    assert regularizers.get(reg) is reg
    restored = regularizers.deserialize(regularizers.serialize(reg))
    assert type(restored) is regularizers.L1L2 and restored.get_config() == reg.get_config()
    assert regularizers.deserialize(regularizers.serialize(regularizers.L2(0.2))).l2 == 0.2


@pytest.mark.parametrize("make,match", [
    (lambda: regularizers.L2(-0.1), "Received: l2=-0.1"),
    (lambda: regularizers.L1("a"), "Received: l1='a'"),
    (lambda: regularizers.L1L2(l1=float("nan")), "Received: l1=nan"),
    (lambda: regularizers.get("l3"), "Received: identifier='l3'"),
    (lambda: regularizers.get(5), "Received: identifier=5"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
