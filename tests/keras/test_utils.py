"""fastconv.keras.utils: to_categorical, set_random_seed, normalize, Progbar."""
import io
import random
import re

import numpy as np
import pytest

from fastconv.keras import backend, utils
from fastconv.keras.utils import Progbar, np_utils


# ------------------------------------------------------------------------- to_categorical

def test_to_categorical_matches_keras():
    out = utils.to_categorical([0, 2, 1])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.eye(3)[[0, 2, 1]])
    np.testing.assert_array_equal(utils.to_categorical([1], num_classes=4), [[0, 1, 0, 0]])
    assert utils.to_categorical(np.array([[1], [0]])).shape == (2, 2)  # trailing 1 dropped
    assert utils.to_categorical(np.array([[1, 0, 2], [0, 0, 1]])).shape == (2, 3, 3)
    assert utils.to_categorical(np.array([1.0, 0.0])).shape == (2, 2)
    assert utils.to_categorical([0, 1], dtype="float64").dtype == np.float64


def test_np_utils_is_the_keras_2_alias():
    assert np_utils.to_categorical is utils.to_categorical


@pytest.mark.parametrize("y,kwargs,match", [
    ([0, 3], {"num_classes": 3}, "Received: a label 3 with num_classes=3"),
    ([0, -1], {}, "Received: a label -1"),
    ([0.5, 1.0], {}, "Received: y with dtype float64"),
    ([0, 1], {"num_classes": 0}, "Received: num_classes=0"),
])
def test_to_categorical_rejects_bad_labels(y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        utils.to_categorical(y, **kwargs)


# ----------------------------------------------------------------------- set_random_seed

def test_set_random_seed_seeds_every_generator():
    def draw():
        return backend.rng().random(), np.random.random(), random.random()

    utils.set_random_seed(11)
    first = draw()
    utils.set_random_seed(11)
    assert draw() == first
    utils.set_random_seed(12)
    assert draw() != first


@pytest.mark.parametrize("seed", ["1", 1.5, None, True])
def test_set_random_seed_rejects_non_integers(seed):
    with pytest.raises(ValueError, match="Received: seed="):
        utils.set_random_seed(seed)


def test_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(utils.normalize(x), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(utils.normalize(x, axis=0, order=1), [[1.0, 1.0], [0.0, 0.0]])


# -------------------------------------------------------------------------------- Progbar

class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progbar_without_terminal_prints_only_the_final_line(capsys):
    bar = Progbar(4)
    for step in range(1, 5):
        bar.update(step, [("loss", 0.5), ("accuracy", 0.25)])
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out and "\b" not in out
    assert re.fullmatch(
        r"4/4 \[={30}\] - \d+s \d+(us|ms|s)/step - loss: 0\.5000 - accuracy: 0\.2500\n", out), out


def test_progbar_on_a_terminal_redraws_with_eta(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stdout", terminal)
    bar = Progbar(10, width=10, interval=0.0)
    bar.update(3, [("loss", 1.0)])
    bar.update(10, [("loss", 2.0)])
    out = terminal.getvalue()
    assert out.startswith("\r 3/10 [==>.......] - ETA: ")
    assert "\r10/10 [==========] - " in out and out.endswith("- loss: 2.0000\n")


def test_progbar_averages_values_weighted_by_steps():
    bar = Progbar(10, verbose=0)
    bar.update(1, [("loss", 1.0)])
    bar.update(3, [("loss", 4.0)])  # two steps at 4.0
    assert bar._metrics_text() == " - loss: 3.0000"
    stateful = Progbar(10, verbose=0, stateful_metrics=["acc"])
    stateful.update(1, [("acc", 1.0)])
    stateful.update(3, [("acc", 4.0)])
    assert stateful._metrics_text() == " - acc: 4.0000"


def test_progbar_verbose_2_and_0(capsys):
    bar = Progbar(3, verbose=2)
    bar.update(1, [("loss", 0.0001)])
    bar.update(3, [("loss", 0.00002)])
    out = capsys.readouterr().out
    assert re.fullmatch(r"3/3 - \d+s - \d+(us|ms|s)/step - loss: 2\.0000e-05\n", out), out
    silent = Progbar(3, verbose=0)
    silent.add(3, [("loss", 1.0)])
    assert capsys.readouterr().out == ""


def test_progbar_unknown_target(capsys):
    bar = Progbar(None)
    bar.update(5, [("loss", 1.0)], finalize=True)
    assert capsys.readouterr().out.startswith("      5/Unknown - ")


@pytest.mark.parametrize("kwargs,match", [({"target": -1}, "Received: target=-1"),
                                          ({"target": 3, "width": 0}, "Received: width=0"),
                                          ({"target": 3, "verbose": 3}, "Received: verbose=3")])
def test_progbar_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Progbar(**kwargs)
