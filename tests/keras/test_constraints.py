"""fastconv.keras.constraints: projections as Keras computes them, aliases, errors."""
import numpy as np
import pytest

from fastconv.keras import backend, constraints

EPS = backend.epsilon()
W = np.array([[3.0, 0.1], [4.0, -0.2]])  # column norms 5 and ~0.2236


def test_max_norm_rescales_only_large_columns():
    projected = constraints.MaxNorm(max_value=2)(W)
    np.testing.assert_allclose(projected[:, 0], W[:, 0] * 2 / (5 + EPS))
    np.testing.assert_allclose(projected[:, 1], W[:, 1] * np.sqrt(0.05) / (np.sqrt(0.05) + EPS))
    assert projected is not W


def test_max_norm_over_conv_kernel_axes():
    kernel = np.random.default_rng(0).standard_normal((3, 3, 4, 5)) * 3
    projected = constraints.max_norm(1.0, axis=[0, 1, 2])(kernel)
    norms = np.sqrt(np.sum(projected**2, axis=(0, 1, 2)))
    np.testing.assert_allclose(norms, np.ones(5), rtol=1e-6)


def test_unit_norm_non_neg_and_min_max_norm():
    np.testing.assert_allclose(np.linalg.norm(constraints.UnitNorm()(W), axis=0), 1, rtol=1e-6)
    np.testing.assert_array_equal(constraints.NonNeg()(W), [[3.0, 0.1], [4.0, 0.0]])
    projected = constraints.MinMaxNorm(min_value=1.0, max_value=2.0, rate=0.5)(W)
    norms = np.linalg.norm(projected, axis=0)
    np.testing.assert_allclose(norms, [0.5 * 2 + 0.5 * 5, 0.5 * 1 + 0.5 * np.sqrt(0.05)],
                               rtol=1e-6)


def test_float32_stays_float32():
    assert constraints.MaxNorm()(W.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("name,cls", [("max_norm", constraints.MaxNorm),
                                      ("maxnorm", constraints.MaxNorm),
                                      ("MaxNorm", constraints.MaxNorm),
                                      ("non_neg", constraints.NonNeg),
                                      ("nonneg", constraints.NonNeg),
                                      ("unit_norm", constraints.UnitNorm),
                                      ("min_max_norm", constraints.MinMaxNorm)])
def test_get_names_and_aliases(name, cls):
    assert type(constraints.get(name)) is cls
    assert getattr(constraints, name, cls) is cls


def test_round_trip_and_passthrough():
    c = constraints.MaxNorm(max_value=3, axis=[0, 1, 2])
    restored = constraints.deserialize(constraints.serialize(c))
    assert restored.get_config() == c.get_config()
    assert constraints.get(c) is c and constraints.get(None) is None


@pytest.mark.parametrize("make,match", [
    (lambda: constraints.MaxNorm(max_value=0), "Received: max_value=0"),
    (lambda: constraints.MinMaxNorm(2.0, 1.0), "Received: min_value=2.0, max_value=1.0"),
    (lambda: constraints.get("max_normm"), "Received: identifier='max_normm'"),
    (lambda: constraints.get(1), "Received: identifier=1"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
