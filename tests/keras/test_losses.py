"""fastconv.keras.losses: Keras's documented values, torch, gradients, reductions, errors."""
import numpy as np
import pytest

from fastconv.keras import losses

RNG = np.random.default_rng(1)
N, C = 5, 4


def numeric_gradient(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = (f(plus) - f(minus)) / (2 * h)
    return grad


def probabilities(n=N, c=C):
    return RNG.dirichlet(np.ones(c), n) * 0.9 + 0.1 / c  # away from the clip


def one_hot(labels, c=C):
    return np.eye(c)[labels]


# --------------------------------------------------------------- Keras's documented values

def test_documented_values():
    y_true = [[0, 1, 0], [0, 0, 1]]
    y_pred = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    np.testing.assert_allclose(losses.categorical_crossentropy(y_true, y_pred), [0.0513, 2.3026],
                               atol=1e-4)
    cce = losses.CategoricalCrossentropy()
    assert cce(y_true, y_pred) == pytest.approx(1.177, abs=1e-3)
    assert cce(y_true, y_pred, sample_weight=[0.3, 0.7]) == pytest.approx(0.814, abs=1e-3)
    scce = losses.SparseCategoricalCrossentropy()
    assert scce([1, 2], y_pred) == pytest.approx(1.177, abs=1e-3)
    assert scce([1, 2], y_pred, sample_weight=[0.3, 0.7]) == pytest.approx(0.814, abs=1e-3)
    bce = losses.BinaryCrossentropy()
    assert bce([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]) == pytest.approx(0.815, abs=1e-3)
    assert bce([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], sample_weight=[1, 0]) == pytest.approx(
        0.458, abs=1e-3)
    for cls in (losses.MeanSquaredError, losses.MeanAbsoluteError):
        loss = cls()
        assert loss([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]) == pytest.approx(0.5)
        assert loss([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]],
                    sample_weight=[0.7, 0.3]) == pytest.approx(0.25)


def test_probabilities_are_clipped_to_epsilon():
    value = losses.categorical_crossentropy([[1.0, 0.0]], [[0.0, 1.0]])
    np.testing.assert_allclose(value, [-np.log(1e-7)], rtol=1e-6)
    value = losses.binary_crossentropy([[1.0]], [[0.0]])
    np.testing.assert_allclose(value, [-np.log(1e-7)], rtol=1e-6)


def test_categorical_predictions_are_renormalised():
    y = one_hot([0, 2, 1])
    p = probabilities(3, C)
    np.testing.assert_allclose(losses.categorical_crossentropy(y, 3 * p),
                               losses.categorical_crossentropy(y, p), rtol=1e-12)


def test_label_smoothing_formulas():
    y, p = one_hot([0, 3, 1, 2, 2]), probabilities()
    smoothed = y * 0.8 + 0.2 / C
    np.testing.assert_allclose(losses.categorical_crossentropy(y, p, label_smoothing=0.2),
                               -np.sum(smoothed * np.log(p / p.sum(-1, keepdims=True)), -1))
    t = RNG.integers(0, 2, (N, 3)).astype(float)
    q = RNG.uniform(0.1, 0.9, (N, 3))
    s = t * 0.9 + 0.05
    np.testing.assert_allclose(losses.binary_crossentropy(t, q, label_smoothing=0.1),
                               np.mean(-(s * np.log(q) + (1 - s) * np.log(1 - q)), -1))


def test_against_torch():
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    labels = RNG.integers(0, C, N)
    logits = RNG.standard_normal((N, C)) * 2
    probs = probabilities()
    tl = torch.from_numpy(labels)
    np.testing.assert_allclose(
        losses.CategoricalCrossentropy(from_logits=True)(one_hot(labels), logits),
        f.cross_entropy(torch.from_numpy(logits), tl).item(), rtol=1e-10)
    np.testing.assert_allclose(
        losses.SparseCategoricalCrossentropy(from_logits=True, name="x")(labels, logits),
        f.cross_entropy(torch.from_numpy(logits), tl).item(), rtol=1e-10)
    np.testing.assert_allclose(
        losses.CategoricalCrossentropy(label_smoothing=0.1, from_logits=True)(one_hot(labels),
                                                                                logits),
        f.cross_entropy(torch.from_numpy(logits), tl, label_smoothing=0.1).item(), rtol=1e-10)
    np.testing.assert_allclose(
        losses.SparseCategoricalCrossentropy()(labels, probs),
        f.nll_loss(torch.log(torch.from_numpy(probs)), tl).item(), rtol=1e-10)
    targets = RNG.integers(0, 2, (N, 3)).astype(float)
    q = RNG.uniform(0.05, 0.95, (N, 3))
    z = RNG.standard_normal((N, 3)) * 4
    np.testing.assert_allclose(
        losses.BinaryCrossentropy()(targets, q),
        f.binary_cross_entropy(torch.from_numpy(q), torch.from_numpy(targets)).item(), rtol=1e-10)
    np.testing.assert_allclose(
        losses.BinaryCrossentropy(from_logits=True)(targets, z),
        f.binary_cross_entropy_with_logits(torch.from_numpy(z), torch.from_numpy(targets)).item(),
        rtol=1e-10)
    a, b = RNG.standard_normal((N, 3)), RNG.standard_normal((N, 3))
    np.testing.assert_allclose(losses.MeanSquaredError()(a, b),
                               f.mse_loss(torch.from_numpy(b), torch.from_numpy(a)).item())
    np.testing.assert_allclose(losses.MeanAbsoluteError()(a, b),
                               f.l1_loss(torch.from_numpy(b), torch.from_numpy(a)).item())


# ------------------------------------------------------------------------------ gradients

def _cases():
    labels = RNG.integers(0, C, N)
    binary = RNG.integers(0, 2, (N, 3)).astype(float)
    weights = RNG.uniform(0.1, 2.0, N)
    yield "cce", losses.CategoricalCrossentropy(), one_hot(labels), probabilities()
    yield "cce_logits_smooth", losses.CategoricalCrossentropy(from_logits=True,
                                                              label_smoothing=0.1), \
        one_hot(labels), RNG.standard_normal((N, C))
    yield "cce_smooth", losses.CategoricalCrossentropy(label_smoothing=0.2), one_hot(labels), \
        probabilities()
    yield "scce", losses.SparseCategoricalCrossentropy(), labels, probabilities()
    yield "scce_col", losses.SparseCategoricalCrossentropy(), labels[:, None], probabilities()
    yield "scce_logits", losses.SparseCategoricalCrossentropy(from_logits=True), labels, \
        RNG.standard_normal((N, C))
    yield "bce", losses.BinaryCrossentropy(), binary, RNG.uniform(0.05, 0.95, (N, 3))
    yield "bce_logits_smooth", losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), \
        binary, RNG.standard_normal((N, 3)) * 3
    yield "bce_rank1_labels", losses.get("binary_crossentropy"), binary[:, 0], \
        RNG.uniform(0.05, 0.95, (N, 1))
    yield "mse", losses.get("mse"), RNG.standard_normal((N, 3)), RNG.standard_normal((N, 3))
    yield "mae", losses.get("mae"), RNG.standard_normal((N, 3)), RNG.standard_normal((N, 3))
    yield "mse_sum", losses.MeanSquaredError(reduction="sum"), RNG.standard_normal((N, 2)), \
        RNG.standard_normal((N, 2))
    yield "mse_weighted_mean", losses.MeanSquaredError(reduction="mean_with_sample_weight"), \
        RNG.standard_normal((N, 2)), RNG.standard_normal((N, 2))
    yield "mse_4d", losses.MeanSquaredError(), RNG.standard_normal((2, 3, 3, 2)), \
        RNG.standard_normal((2, 3, 3, 2))
    yield "cce_weighted", (losses.CategoricalCrossentropy(), weights), one_hot(labels), \
        probabilities()


CASES = list(_cases())


@pytest.mark.parametrize("name,loss,y_true,y_pred", CASES, ids=[c[0] for c in CASES])
def test_gradient_matches_central_differences(name, loss, y_true, y_pred):
    weights = None
    if isinstance(loss, tuple):
        loss, weights = loss
    elif "weighted" in name:
        weights = RNG.uniform(0.1, 2.0, N)
    analytic = loss.gradient(y_true, y_pred, sample_weight=weights)
    numeric = numeric_gradient(lambda p: loss(y_true, p, sample_weight=weights), y_pred)
    assert analytic.shape == y_pred.shape
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_gradient_with_clip_active_matches_differences():
    loss = losses.CategoricalCrossentropy()
    y_true = one_hot([1, 2], c=3)  # the targets are the clipped entries
    y_pred = np.array([[0.3, 1e-9, 0.7 - 1e-9], [0.5, 0.5 - 1e-9, 1e-9]])
    analytic = loss.gradient(y_true, y_pred)
    numeric = numeric_gradient(lambda p: loss(y_true, p), y_pred, h=1e-10)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-4)


def test_softmax_then_crossentropy_backpropagates_to_p_minus_y():
    from fastconv.keras import activations

    logits = RNG.standard_normal((N, C))
    labels = one_hot(RNG.integers(0, C, N))
    probs = activations.softmax(logits)
    grad_probs = losses.CategoricalCrossentropy().gradient(labels, probs)
    grad_logits = activations.gradient(activations.softmax, logits, probs, grad_probs)
    np.testing.assert_allclose(grad_logits, (probs - labels) / N, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(
        losses.CategoricalCrossentropy(from_logits=True).gradient(labels, logits),
        (probs - labels) / N, rtol=1e-10, atol=1e-15)


def test_rank_1_regression_targets():
    loss = losses.MeanSquaredError()
    y_true, y_pred = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.0])
    assert loss(y_true, y_pred) == pytest.approx((0.25 + 1.0) / 3)
    assert loss(y_true, y_pred[:, None]) == pytest.approx((0.25 + 1.0) / 3)
    np.testing.assert_allclose(loss.gradient(y_true, y_pred), 2 * (y_pred - y_true) / 3)


def test_gradient_keeps_float32():
    loss = losses.get("categorical_crossentropy")
    grad = loss.gradient(one_hot([0, 1]), probabilities(2).astype(np.float32))
    assert grad.dtype == np.float32


def test_reduction_none_returns_weighted_per_sample_values():
    loss = losses.MeanSquaredError(reduction="none")
    values = loss([[0.0], [2.0]], [[1.0], [1.0]], sample_weight=[1.0, 3.0])
    np.testing.assert_allclose(values, [1.0, 3.0])


# --------------------------------------------------------------------------------- errors

def test_categorical_with_integer_labels_names_shapes():
    with pytest.raises(ValueError, match=r"Received: y_true.shape=\(5,\), y_pred.shape=\(5, 4\)"):
        losses.get("categorical_crossentropy")(np.arange(5) % C, probabilities())


def test_label_count_mismatch():
    with pytest.raises(ValueError, match="Received: y_true.shape"):
        losses.get("sparse_categorical_crossentropy")(np.zeros(4), probabilities())
    with pytest.raises(ValueError, match="Received: y_true.shape"):
        losses.get("mse")(np.zeros((4, 3)), np.zeros((5, 3)))


def test_sparse_label_out_of_range():
    with pytest.raises(ValueError, match=r"label value of 4 .*\[0, 4\)"):
        losses.sparse_categorical_crossentropy([0, 4, 1, 1, 1], probabilities())
    with pytest.raises(ValueError, match="label value of -1"):
        losses.sparse_categorical_crossentropy([0, -1, 1, 1, 1], probabilities())


def test_sample_weight_of_wrong_length():
    with pytest.raises(ValueError, match="Received: sample_weight.shape=\\(3,\\)"):
        losses.get("mse")(np.zeros((5, 2)), np.ones((5, 2)), sample_weight=np.ones(3))


def test_single_class_categorical_warns_like_keras():
    with pytest.warns(SyntaxWarning, match="binary_crossentropy"):
        losses.categorical_crossentropy([[1.0]], [[1.0]])


@pytest.mark.parametrize("kwargs,match", [
    ({"label_smoothing": 1.5}, "Received: label_smoothing=1.5"),
    ({"axis": 1}, "Received: axis=1"),
    ({"reduction": "avg"}, "Received: reduction='avg'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        losses.CategoricalCrossentropy(**kwargs)


def test_ignore_class_is_refused_clearly():
    with pytest.raises(ValueError, match="Received: ignore_class=0"):
        losses.SparseCategoricalCrossentropy(ignore_class=0)
    with pytest.raises(ValueError, match="Received: ignore_class=0"):
        losses.sparse_categorical_crossentropy([0], [[1.0, 0.0]], ignore_class=0)


# --------------------------------------------------------------------------------- lookup

def test_get_names_functions_classes_and_instances():
    assert losses.get("mse").name == "mse"
    assert losses.get("categorical_crossentropy").name == "categorical_crossentropy"
    assert losses.get(losses.categorical_crossentropy).name == "categorical_crossentropy"
    assert isinstance(losses.get("BinaryCrossentropy"), losses.BinaryCrossentropy)
    assert isinstance(losses.get(losses.MeanSquaredError), losses.MeanSquaredError)
    instance = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert losses.get(instance) is instance
    restored = losses.deserialize(losses.serialize(instance))
    assert isinstance(restored, losses.SparseCategoricalCrossentropy)
    assert restored.get_config() == instance.get_config()
    assert losses.deserialize(losses.serialize(losses.get("mae"))).fn is losses.mean_absolute_error


def test_get_unknown_name():
    with pytest.raises(ValueError, match="Received: identifier='categorical_crossentropyy'"):
        losses.get("categorical_crossentropyy")
    with pytest.raises(ValueError, match="Received: identifier=3"):
        losses.get(3)


def test_custom_loss_function_values_but_no_gradient():
    def squared_sum(y_true, y_pred):
        return np.sum((np.asarray(y_true) - y_pred) ** 2, axis=-1)

    loss = losses.get(squared_sum)
    assert loss.name == "squared_sum"
    assert loss([[1.0, 1.0]], np.array([[0.0, 0.0]])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="squared_sum"):
        loss.gradient([[1.0, 1.0]], np.array([[0.0, 0.0]]))
