"""KerasClassifier / KerasRegressor inside scikit-learn's GridSearchCV and cross_val_score."""
import numpy as np
import pytest

from fastconv.keras import backend, layers
from fastconv.keras.models import Sequential

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402

from fastconv.keras.wrappers.scikit_learn import KerasClassifier, KerasRegressor  # noqa: E402


@pytest.fixture(autouse=True)
def _session():
    backend.clear_session()
    backend.set_seed(0)


def _blobs(n=90, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0]], float)
    labels = rng.integers(0, 3, n)
    return (centers[labels] + rng.normal(0, 0.7, (n, 4))).astype(np.float32), labels


def build_classifier(units=8, optimizer="adam", loss="sparse_categorical_crossentropy"):
    model = Sequential([layers.Dense(units, activation="relu", input_shape=(4,)),
                        layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model


def build_regressor(units=8):
    model = Sequential([layers.Dense(units, activation="relu", input_shape=(4,)), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_classifier_fit_predict_score_with_string_labels():
    x, labels = _blobs()
    names = np.array(["cat", "dog", "eel"])[labels]
    clf = KerasClassifier(build_fn=build_classifier, epochs=30, batch_size=16, verbose=0)
    clf.fit(x, names)
    assert list(clf.classes_) == ["cat", "dog", "eel"]
    assert set(clf.predict(x[:5])) <= set(clf.classes_)
    proba = clf.predict_proba(x[:5])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert clf.score(x, names) > 0.9


def test_classifier_one_hot_loss():
    x, labels = _blobs()
    clf = KerasClassifier(build_classifier, loss="categorical_crossentropy", epochs=60, verbose=0)
    clf.fit(x, labels)
    assert clf.score(x, labels) > 0.85


def test_params_route_to_build_fn_and_fit():
    clf = KerasClassifier(build_fn=build_classifier, units=5, epochs=2, batch_size=8)
    params = clf.get_params()
    assert params == {"build_fn": build_classifier, "units": 5, "epochs": 2, "batch_size": 8}
    clf.set_params(units=6)
    x, labels = _blobs(30)
    history = clf.fit(x, labels)
    assert clf.model.layers[0].units == 6 and len(history.history["loss"]) == 2
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "model")
    with pytest.raises(ValueError, match="not a legal parameter"):
        KerasClassifier(build_fn=build_classifier, unitz=3)


def test_grid_search_and_cross_val_score():
    x, labels = _blobs(60)
    clf = KerasClassifier(build_fn=build_classifier, epochs=10, batch_size=16, verbose=0)
    search = GridSearchCV(clf, {"units": [2, 8], "epochs": [5, 10]}, cv=2)
    search.fit(x, labels)
    assert set(search.best_params_) == {"units", "epochs"}
    assert 0 <= search.best_score_ <= 1
    scores = cross_val_score(KerasClassifier(build_fn=build_classifier, epochs=80, verbose=0), x, labels,
                             cv=KFold(3))
    assert scores.shape == (3,) and scores.mean() > 0.7


def test_regressor_in_cross_val_score():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0])).astype(np.float32)
    reg = KerasRegressor(build_fn=build_regressor, epochs=20, batch_size=8, verbose=0)
    reg.fit(x, y)
    assert reg.predict(x).shape == (60,)
    assert reg.score(x, y) <= 0
    scores = cross_val_score(KerasRegressor(build_fn=build_regressor, epochs=5, verbose=0), x, y, cv=2)
    assert scores.shape == (2,) and np.all(scores <= 0)


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        KerasClassifier(build_fn=build_classifier).predict(np.zeros((1, 4), np.float32))
