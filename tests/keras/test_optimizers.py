"""fastconv.keras.optimizers: Keras 3 update rules step by step, torch, clipping, config."""
import math

import numpy as np
import pytest

from fastconv.keras import constraints, optimizers
from fastconv.keras.variables import Variable

GRADS = [0.5, -1.5, 0.25, 2.0]  # scalar gradients of four steps


def run(optimizer, grads=GRADS, start=1.0, dtype=np.float64):
    variable = Variable(np.array([start], dtype=dtype), "w")
    values = []
    for g in grads:
        optimizer.apply_gradients([(np.array([g]), variable)])
        values.append(float(variable.value[0]))
    return values


# Plain-Python transcriptions of keras/src/optimizers/*.py update_step, scalar by scalar.

def sgd_reference(lr, momentum=0.0, nesterov=False, w=1.0):
    m, out = 0.0, []
    for g in GRADS:
        if momentum:
            m = m * momentum - g * lr
            w += (m * momentum - g * lr) if nesterov else m
        else:
            w -= g * lr
        out.append(w)
    return out


def adam_reference(lr=0.001, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False, w=1.0):
    m = v = v_hat = 0.0
    out = []
    for t, g in enumerate(GRADS, start=1):
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        v_hat = max(v_hat, v)
        w -= m * alpha / (math.sqrt(v_hat if amsgrad else v) + eps)
        out.append(w)
    return out


def adadelta_reference(lr=0.001, rho=0.95, eps=1e-7, w=1.0):
    acc_g = acc_d = 0.0
    out = []
    for g in GRADS:
        acc_g = rho * acc_g + (1 - rho) * g * g
        delta = -math.sqrt(acc_d + eps) * g / math.sqrt(acc_g + eps)
        acc_d = rho * acc_d + (1 - rho) * delta * delta
        w += lr * delta
        out.append(w)
    return out


def adagrad_reference(lr=0.001, initial=0.1, eps=1e-7, w=1.0):
    acc, out = initial, []
    for g in GRADS:
        acc += g * g
        w -= lr * g / math.sqrt(acc + eps)
        out.append(w)
    return out


def rmsprop_reference(lr=0.001, rho=0.9, momentum=0.0, eps=1e-7, centered=False, w=1.0):
    v = a = mom = 0.0
    out = []
    for g in GRADS:
        v = rho * v + (1 - rho) * g * g
        if centered:
            a = rho * a + (1 - rho) * g
            denominator = v - a * a + eps
        else:
            denominator = v + eps
        increment = lr * g / math.sqrt(denominator)
        if momentum:
            mom = momentum * mom + increment
            w -= mom
        else:
            w -= increment
        out.append(w)
    return out


CASES = [
    ("sgd", lambda: optimizers.SGD(), sgd_reference(0.01)),
    ("sgd_momentum", lambda: optimizers.SGD(0.1, momentum=0.9), sgd_reference(0.1, 0.9)),
    ("sgd_nesterov", lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True),
     sgd_reference(0.1, 0.9, True)),
    ("adam", lambda: optimizers.Adam(), adam_reference()),
    ("adam_large_eps", lambda: optimizers.Adam(0.1, epsilon=0.5), adam_reference(0.1, eps=0.5)),
    ("amsgrad", lambda: optimizers.Adam(0.1, amsgrad=True), adam_reference(0.1, amsgrad=True)),
    ("adadelta", lambda: optimizers.Adadelta(), adadelta_reference()),
    ("adadelta_lr1", lambda: optimizers.Adadelta(1.0, rho=0.9, epsilon=1e-6),
     adadelta_reference(1.0, 0.9, 1e-6)),
    ("adagrad", lambda: optimizers.Adagrad(), adagrad_reference()),
    ("adagrad_zero_acc", lambda: optimizers.Adagrad(0.1, initial_accumulator_value=0.0),
     adagrad_reference(0.1, 0.0)),
    ("rmsprop", lambda: optimizers.RMSprop(), rmsprop_reference()),
    ("rmsprop_momentum_centered",
     lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
     rmsprop_reference(0.01, momentum=0.5, centered=True)),
]


@pytest.mark.parametrize("name,make,expected", CASES, ids=[c[0] for c in CASES])
def test_step_sequence_matches_keras_rule(name, make, expected):
    np.testing.assert_allclose(run(make()), expected, rtol=1e-13, atol=0)


def test_adam_first_step_moves_by_learning_rate():
    # With bias correction the first Adam step is lr * g / (|g| + eps / sqrt(1 - beta_2)).
    (value,) = run(optimizers.Adam(), grads=[0.5])
    assert value == pytest.approx(1 - 0.001 * 0.5 / (0.5 + 1e-7 / math.sqrt(0.001)), rel=1e-12)


@pytest.mark.parametrize("name,make", [(c[0], c[1]) for c in CASES], ids=[c[0] for c in CASES])
def test_float32_variables_are_updated_in_place_in_float32(name, make):
    variable = Variable(np.ones((2, 3), np.float32), "w")
    storage = variable.value
    make().apply_gradients([(np.full((2, 3), 0.5, np.float64), variable)])
    assert variable.value is storage and variable.value.dtype == np.float32
    assert not np.array_equal(variable.value, np.ones((2, 3)))


# ---------------------------------------------------------------------------------- torch

TORCH_CASES = [
    ("sgd", lambda: optimizers.SGD(0.05), "SGD", dict(lr=0.05)),
    ("sgd_momentum", lambda: optimizers.SGD(0.05, momentum=0.8), "SGD",
     dict(lr=0.05, momentum=0.8)),
    ("sgd_nesterov", lambda: optimizers.SGD(0.05, momentum=0.8, nesterov=True), "SGD",
     dict(lr=0.05, momentum=0.8, nesterov=True)),
    # torch adds eps to sqrt(v_hat) and Keras to sqrt(v): they agree exactly only at eps=0.
    ("adam", lambda: optimizers.Adam(0.01, epsilon=0.0), "Adam", dict(lr=0.01, eps=0.0)),
    ("amsgrad", lambda: optimizers.Adam(0.01, epsilon=0.0, amsgrad=True), "Adam",
     dict(lr=0.01, eps=0.0, amsgrad=True)),
    ("adamw", lambda: optimizers.Adam(0.01, epsilon=0.0, weight_decay=0.1), "AdamW",
     dict(lr=0.01, eps=0.0, weight_decay=0.1)),
    ("adadelta", lambda: optimizers.Adadelta(1.0, rho=0.9, epsilon=1e-6), "Adadelta",
     dict(lr=1.0, rho=0.9, eps=1e-6)),
    ("adagrad", lambda: optimizers.Adagrad(0.1, epsilon=0.0), "Adagrad",
     dict(lr=0.1, initial_accumulator_value=0.1, eps=0.0)),
    ("rmsprop", lambda: optimizers.RMSprop(0.01, epsilon=0.0), "RMSprop",
     dict(lr=0.01, alpha=0.9, eps=0.0)),
    ("rmsprop_momentum_centered",
     lambda: optimizers.RMSprop(0.01, momentum=0.7, centered=True, epsilon=0.0), "RMSprop",
     dict(lr=0.01, alpha=0.9, eps=0.0, momentum=0.7, centered=True)),
]


@pytest.mark.parametrize("name,make,torch_name,torch_kwargs", TORCH_CASES,
                         ids=[c[0] for c in TORCH_CASES])
def test_against_torch_optim(name, make, torch_name, torch_kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    start = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(6)]
    variable = Variable(start.copy(), "w")
    optimizer = make()
    param = torch.nn.Parameter(torch.from_numpy(start.copy()))
    reference = getattr(torch.optim, torch_name)([param], **torch_kwargs)
    for g in grads:
        optimizer.apply_gradients([(g, variable)])
        param.grad = torch.from_numpy(g.copy())
        reference.step()
    np.testing.assert_allclose(variable.value, param.detach().numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------ clipping

def test_clipnorm_scales_each_gradient_to_the_norm():
    a, b = Variable(np.zeros(2), "a"), Variable(np.zeros(2), "b")
    optimizers.SGD(1.0, clipnorm=1.0).apply_gradients(
        [(np.array([3.0, 4.0]), a), (np.array([0.3, 0.4]), b)])
    np.testing.assert_allclose(a.value, [-0.6, -0.8])
    np.testing.assert_allclose(b.value, [-0.3, -0.4])


def test_global_clipnorm_scales_all_gradients_together():
    a, b = Variable(np.zeros(2), "a"), Variable(np.zeros(1), "b")
    optimizers.SGD(1.0, global_clipnorm=2.5).apply_gradients(
        [(np.array([3.0, 0.0]), a), (np.array([4.0]), b)])  # global norm 5
    np.testing.assert_allclose(a.value, [-1.5, 0.0])
    np.testing.assert_allclose(b.value, [-2.0])


def test_clipvalue_clips_elements():
    a = Variable(np.zeros(3), "a")
    optimizers.SGD(1.0, clipvalue=0.5).apply_gradients([(np.array([2.0, -3.0, 0.1]), a)])
    np.testing.assert_allclose(a.value, [-0.5, 0.5, -0.1])


# ------------------------------------------------------------ variables and their options

def test_skips_non_trainable_and_none_gradients_then_applies_constraints():
    frozen = Variable(np.ones(2), "frozen", trainable=False)
    no_grad = Variable(np.ones(2), "no_grad")
    constrained = Variable(np.ones(2), "c", constraint=constraints.NonNeg())
    optimizer = optimizers.SGD(1.0)
    optimizer.apply_gradients([(np.ones(2), frozen), (None, no_grad),
                               (np.array([2.0, -1.0]), constrained)])
    np.testing.assert_array_equal(frozen.value, [1, 1])
    np.testing.assert_array_equal(no_grad.value, [1, 1])
    np.testing.assert_array_equal(constrained.value, [0, 2])  # [-1, 2] projected
    assert optimizer.iterations == 1


def test_all_gradients_none_is_an_error():
    with pytest.raises(ValueError, match="No gradients provided"):
        optimizers.Adam().apply_gradients([(None, Variable(np.ones(2), "w"))])


def test_gradient_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"Received: gradient.shape=\(3,\)"):
        optimizers.Adam().apply_gradients([(np.ones(3), Variable(np.ones(2), "w"))])


def test_slots_are_per_variable():
    a, b = Variable(np.zeros(1), "a"), Variable(np.zeros(1), "b")
    optimizer = optimizers.SGD(0.1, momentum=0.9)
    optimizer.apply_gradients([(np.array([1.0]), a)])
    optimizer.apply_gradients([(np.array([1.0]), a), (np.array([1.0]), b)])
    np.testing.assert_allclose(optimizer.get_slot(a, "momentum"), [-0.19])
    np.testing.assert_allclose(optimizer.get_slot(b, "momentum"), [-0.1])


# ------------------------------------------------------------------------ learning rate

def test_lr_alias_warns_and_sets_learning_rate():
    with pytest.warns(UserWarning, match="`lr` argument is deprecated"):
        optimizer = optimizers.Adadelta(lr=1.0)
    assert optimizer.learning_rate == 1.0
    assert optimizer.get_config()["learning_rate"] == 1.0


def test_decay_is_ignored_with_a_warning_like_keras_3():
    with pytest.warns(UserWarning, match="`decay` is no longer supported"):
        optimizer = optimizers.SGD(0.1, decay=1e-6)
    assert run(optimizer) == pytest.approx(sgd_reference(0.1))


def test_keras_2_spellings():
    assert optimizers.adam is optimizers.Adam and optimizers.rmsprop is optimizers.RMSprop
    assert optimizers.Adam(epsilon=None).epsilon == 1e-7  # Keras 2: backend.epsilon()


def test_learning_rate_is_settable_and_used():
    optimizer = optimizers.SGD(0.1)
    variable = Variable(np.zeros(1), "w")
    optimizer.apply_gradients([(np.ones(1), variable)])
    optimizer.learning_rate = 0.5
    optimizer.lr = optimizer.lr  # Keras 2 attribute
    optimizer.apply_gradients([(np.ones(1), variable)])
    np.testing.assert_allclose(variable.value, [-0.6])


def test_schedule_is_evaluated_at_iterations_and_not_settable():
    schedule = optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    optimizer = optimizers.SGD(schedule)
    assert run(optimizer, grads=[1.0, 1.0, 1.0]) == pytest.approx([0.9, 0.85, 0.825])
    assert optimizer.learning_rate == pytest.approx(0.1 * 0.5**3)
    with pytest.raises(TypeError, match="not settable"):
        optimizer.learning_rate = 0.1
    restored = optimizers.deserialize(optimizers.serialize(optimizer))
    assert restored.get_config() == optimizer.get_config()


def test_piecewise_and_inverse_time_schedules():
    piecewise = optimizers.schedules.PiecewiseConstantDecay([2, 4], [1.0, 0.5, 0.1])
    assert [piecewise(s) for s in (0, 2, 3, 5)] == [1.0, 1.0, 0.5, 0.1]
    inverse = optimizers.schedules.InverseTimeDecay(1.0, decay_steps=2, decay_rate=1.0,
                                                    staircase=True)
    assert [inverse(s) for s in (0, 1, 2, 5)] == [1.0, 1.0, 0.5, pytest.approx(1 / 3)]


# -------------------------------------------------------------------------------- config

@pytest.mark.parametrize("name,cls,defaults", [
    ("sgd", optimizers.SGD, {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False}),
    ("adam", optimizers.Adam, {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                               "epsilon": 1e-7, "amsgrad": False}),
    ("Adadelta", optimizers.Adadelta, {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7}),
    ("adagrad", optimizers.Adagrad, {"learning_rate": 0.001, "initial_accumulator_value": 0.1,
                                     "epsilon": 1e-7}),
    ("RMSprop", optimizers.RMSprop, {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0,
                                     "epsilon": 1e-7, "centered": False}),
])
def test_get_by_name_has_keras_defaults_and_round_trips(name, cls, defaults):
    optimizer = optimizers.get(name)
    assert type(optimizer) is cls
    config = optimizer.get_config()
    assert {k: config[k] for k in defaults} == defaults
    restored = optimizers.get(optimizers.serialize(optimizer))
    assert type(restored) is cls and restored.get_config() == config
    assert optimizers.get(optimizer) is optimizer


@pytest.mark.parametrize("make,match", [
    (lambda: optimizers.get("adamax_typo"), "Received: identifier='adamax_typo'"),
    (lambda: optimizers.get(42), "Received: identifier=42"),
    (lambda: optimizers.SGD(clipnorm=1.0, clipvalue=1.0), "Received: clipnorm=1.0, clipvalue=1.0"),
    (lambda: optimizers.Adam(foo=1), "not recognized.*Received: {'foo': 1}"),
    (lambda: optimizers.SGD(momentum=1.5), "Received: momentum=1.5"),
    (lambda: optimizers.Adam(learning_rate="fast"), "Received instead: learning_rate='fast'"),
    (lambda: optimizers.Adam(beta_1=None), "Received: beta_1=None"),
    (lambda: optimizers.SGD(clipnorm=-1.0), "Received: clipnorm=-1.0"),
    (lambda: optimizers.Adagrad(initial_accumulator_value=-0.1),
     "Received: initial_accumulator_value=-0.1"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_get_state_and_set_state_round_trip():
    variables = [Variable(np.ones(3), "w"), Variable(np.zeros((2, 2)), "b")]
    source = optimizers.Adam(learning_rate=0.1)
    for _ in range(3):
        source.apply_gradients([(np.full(v.shape, 0.5), v) for v in variables])
    iterations, slots = source.get_state(variables)
    target = optimizers.Adam(learning_rate=0.1)
    copies = [Variable(v.value.copy(), v.name) for v in variables]
    target.set_state(copies, iterations, slots)
    for opt, vs in ((source, variables), (target, copies)):
        opt.apply_gradients([(np.full(v.shape, 0.25), v) for v in vs])
    for a, b in zip(variables, copies):
        np.testing.assert_array_equal(a.value, b.value)
    with pytest.raises(ValueError, match="Received: len"):
        target.set_state(copies[:1], iterations, slots)
