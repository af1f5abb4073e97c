"""fastconv.keras.metrics: Keras's documented values, accuracy resolution, state, lookup."""
import numpy as np
import pytest

from fastconv.keras import losses, metrics


def test_documented_values():
    m = metrics.CategoricalAccuracy()
    m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    assert m.result() == pytest.approx(0.5)
    m.reset_state()
    m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]],
                   sample_weight=[0.7, 0.3])
    assert m.result() == pytest.approx(0.3)

    m = metrics.SparseCategoricalAccuracy()
    m.update_state([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]])
    assert m.result() == pytest.approx(0.5)
    m.reset_state()
    m.update_state([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], sample_weight=[0.7, 0.3])
    assert m.result() == pytest.approx(0.3)

    m = metrics.BinaryAccuracy()
    m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
    assert m.result() == pytest.approx(0.75)
    m.reset_state()
    m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], sample_weight=[1, 0, 0, 1])
    assert m.result() == pytest.approx(0.5)


@pytest.mark.parametrize("y_true_shape,y_pred_shape,expected", [
    ((8,), (8, 10), metrics.SparseCategoricalAccuracy),
    ((8, 1), (8, 10), metrics.SparseCategoricalAccuracy),
    ((8, 10), (8, 10), metrics.CategoricalAccuracy),
    ((8, 1), (8, 1), metrics.BinaryAccuracy),
    ((8,), (8, 1), metrics.BinaryAccuracy),
    ((8, 3), (8, 3), metrics.CategoricalAccuracy),
])
def test_accuracy_resolved_by_shapes_like_keras(y_true_shape, y_pred_shape, expected):
    for name in ("accuracy", "acc"):
        metric = metrics.get(name, y_true_shape=y_true_shape, y_pred_shape=y_pred_shape)
        assert type(metric) is expected
        assert metric.name == name


@pytest.mark.parametrize("loss,expected", [
    ("sparse_categorical_crossentropy", metrics.SparseCategoricalAccuracy),
    (losses.SparseCategoricalCrossentropy(), metrics.SparseCategoricalAccuracy),
    ("binary_crossentropy", metrics.BinaryAccuracy),
    (losses.categorical_crossentropy, metrics.CategoricalAccuracy),
    (None, metrics.CategoricalAccuracy),
])
def test_accuracy_resolved_by_loss_without_shapes(loss, expected):
    assert type(metrics.get("accuracy", loss=loss)) is expected


def test_mean_is_weighted_across_batches_and_resets():
    m = metrics.get("categorical_accuracy")
    m.update_state(np.eye(3)[[0, 1, 2]], np.eye(3)[[0, 1, 1]])  # 2 of 3
    m.update_state(np.eye(3)[[0]], np.eye(3)[[2]])  # 0 of 1
    assert m.result() == pytest.approx(2 / 4)
    m.reset_state()
    assert m.result() == 0.0


def test_mean_tracks_a_loss_weighted_by_batch_size():
    tracker = metrics.Mean(name="loss")
    tracker.update_state(1.0, sample_weight=32)
    tracker.update_state(4.0, sample_weight=8)
    assert tracker.result() == pytest.approx((32 + 32) / 40)


def test_mse_mae_metrics_and_names():
    y, p = np.array([[0.0, 1.0], [2.0, 2.0]]), np.array([[1.0, 1.0], [2.0, 0.0]])
    for identifier, expected, name in [("mse", 2.5 / 2 * 1.0, "mse"), ("mae", 0.75, "mae"),
                                       (metrics.mean_squared_error, 1.25, "mean_squared_error"),
                                       ("MeanAbsoluteError", 0.75, "mean_absolute_error")]:
        m = metrics.get(identifier)
        m.update_state(y, p)
        assert m.result() == pytest.approx(expected)
        assert m.name == name


def test_binary_accuracy_threshold_and_functions():
    np.testing.assert_allclose(metrics.binary_accuracy([[1, 0]], [[0.7, 0.7]], threshold=0.8),
                               [0.5])
    np.testing.assert_allclose(metrics.categorical_accuracy(np.eye(2), [[0.2, 0.8], [0.1, 0.9]]),
                               [0, 1])
    np.testing.assert_allclose(metrics.sparse_categorical_accuracy([1, 1], [[0.2, 0.8], [1, 0]]),
                               [1, 0])
    np.testing.assert_allclose(
        metrics.sparse_top_k_categorical_accuracy([2, 0], [[0.5, 0.3, 0.2], [0.1, 0.5, 0.4]], k=2),
        [0, 0])


def test_sparse_accuracy_with_wrong_label_count():
    with pytest.raises(ValueError, match=r"Received: y_true.shape=\(3,\), y_pred.shape=\(2, 4\)"):
        metrics.sparse_categorical_accuracy([1, 2, 3], np.ones((2, 4)))


def test_get_instances_classes_and_unknown_names():
    m = metrics.CategoricalAccuracy(name="cat")
    assert metrics.get(m) is m
    assert isinstance(metrics.get(metrics.BinaryAccuracy), metrics.BinaryAccuracy)
    restored = metrics.deserialize(metrics.serialize(metrics.BinaryAccuracy(threshold=0.3)))
    assert restored._fn_kwargs == {"threshold": 0.3}
    with pytest.raises(ValueError, match="Received: identifier='accuracyy'"):
        metrics.get("accuracyy")
    with pytest.raises(ValueError, match="Received: identifier=1.5"):
        metrics.get(1.5)


def test_loss_object_as_metric_uses_per_sample_values():
    m = metrics.get(losses.MeanSquaredError())
    m.update_state([[0.0], [0.0]], [[1.0], [3.0]])
    assert m.result() == pytest.approx(5.0)
    assert m.name == "mean_squared_error"
