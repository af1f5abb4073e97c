"""Keras's `optimizers` module: Keras 3 update rules on NumPy arrays, updated in place.

`optimizer.apply_gradients([(grad, variable), ...])` updates each trainable
`fastconv.keras.variables.Variable` in place, in this order (Keras 3's `BaseOptimizer.apply`):
drop None gradients and non-trainable variables; clip (clipnorm per gradient, or
global_clipnorm over all, or clipvalue); decoupled weight decay `w -= w * weight_decay * lr`;
the optimizer's `update_step`; each variable's `constraint`; then `iterations += 1`.
Arithmetic is done in each variable's dtype, so float32 models follow Keras's float32 steps.

Keras 2 spellings: `lr=` is accepted for `learning_rate` with a UserWarning; `decay=` is
accepted and ignored with a warning, as Keras 3 does.
"""
import math
import numbers
import types
import warnings

import numpy as np

from fastconv.keras import _elementwise, backend
from fastconv.keras.utils.naming import check_config, lookup


# ---------------------------------------------------------------- learning-rate schedules


class LearningRateSchedule:
    """Base class: `schedule(step) -> learning rate`, with `get_config`/`from_config`."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class ExponentialDecay(LearningRateSchedule):
    """`initial_learning_rate * decay_rate ** (step / decay_steps)` (floored when staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        if decay_steps <= 0:
            raise ValueError(
                f"Argument `decay_steps` must be > 0. Received: decay_steps={decay_steps}"
            )
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step):
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate**exponent

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """`initial_learning_rate / (1 + decay_rate * step / decay_steps)` (floored when staircase)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        if decay_steps <= 0:
            raise ValueError(
                f"Argument `decay_steps` must be > 0. Received: decay_steps={decay_steps}"
            )
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step):
        ratio = step / self.decay_steps
        if self.staircase:
            ratio = math.floor(ratio)
        return self.initial_learning_rate / (1 + self.decay_rate * ratio)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """`values[i]` for `boundaries[i-1] < step <= boundaries[i]`."""

    def __init__(self, boundaries, values, name=None):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. "
                f"Received: boundaries={boundaries}, values={values}"
            )
        self.boundaries = list(boundaries)
        self.values = list(values)
        self.name = name

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


_SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, InverseTimeDecay,
                                            PiecewiseConstantDecay)}
schedules = types.SimpleNamespace(LearningRateSchedule=LearningRateSchedule, **_SCHEDULES)


# ------------------------------------------------------------------------- base class


def _check_real(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Argument `{name}` must be a float. Received: {name}={value!r}")
    return float(value)


def _check_unit_interval(value, name):
    value = _check_real(value, name)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a float between [0, 1]. Received: {name}={value}")
    return value


def _check_epsilon(epsilon):
    """Keras 2 allowed `epsilon=None` for `backend.epsilon()`; anything else must be a float."""
    return backend.epsilon() if epsilon is None else _check_real(epsilon, "epsilon")


def _check_clip(value, name):
    value = _check_real(value, name, allow_none=True)
    if value is not None and value <= 0:
        raise ValueError(f"`{name}` must be positive. Received: {name}={value}")
    return value


class Optimizer:
    """Base class of the optimizers.

    Subclasses define `_slot_names` (with their initial values) and
    `update_step(gradient, variable_value, slots, learning_rate)`.

    Args:
        learning_rate: a float, a `LearningRateSchedule` (called with `iterations`) or a
            callable taking no arguments.
        weight_decay: if set, decoupled decay `w -= w * weight_decay * lr` before each step.
        clipnorm: clip each gradient to this L2 norm.
        clipvalue: clip each gradient element to `[-clipvalue, clipvalue]`.
        global_clipnorm: clip all gradients together to this global L2 norm.
        name: the optimizer's name.
        **kwargs: `lr` (deprecated alias of `learning_rate`) and `decay` (ignored, as in
            Keras 3); anything else is an error.

    Raises:
        ValueError: for more than one clipping argument, unknown keyword arguments or
            invalid values.
    """

    _slot_names = {}  # slot name -> initial value

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        if "lr" in kwargs:
            warnings.warn(
                "The `lr` argument is deprecated, use `learning_rate` instead.",
                UserWarning, stacklevel=3,
            )
            learning_rate = kwargs.pop("lr")
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.",
                          UserWarning, stacklevel=3)
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}. Received: {kwargs}")
        clip_args = [clipnorm, clipvalue, global_clipnorm]
        if sum(a is not None for a in clip_args) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                f"global_clipnorm={global_clipnorm}"
            )
        self.name = name or type(self).__name__.lower()
        self.weight_decay = _check_real(weight_decay, "weight_decay", allow_none=True)
        self.clipnorm = _check_clip(clipnorm, "clipnorm")
        self.clipvalue = _check_clip(clipvalue, "clipvalue")
        self.global_clipnorm = _check_clip(global_clipnorm, "global_clipnorm")
        self.iterations = 0
        self._slots = {}  # id(variable) -> (variable, {slot name: ndarray})
        self._learning_rate = None
        self.learning_rate = learning_rate

    # learning rate ----------------------------------------------------------------

    @property
    def learning_rate(self):
        """The learning rate used by the next step (a schedule is evaluated at `iterations`)."""
        if isinstance(self._learning_rate, LearningRateSchedule):
            return float(self._learning_rate(self.iterations))
        if callable(self._learning_rate):
            return float(self._learning_rate())
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, LearningRateSchedule) or callable(value):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its "
                "`learning_rate` constructor argument, hence its learning rate is not "
                "settable. If you need the learning rate to be settable, you should "
                f"instantiate the optimizer with a float `learning_rate` argument. "
                f"Received: learning_rate={value!r}"
            )
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(
                "Argument `learning_rate` should be float, or an instance of "
                "LearningRateSchedule, or a callable (that takes in the current iteration "
                "value and returns the corresponding learning rate value). "
                f"Received instead: learning_rate={value!r}"
            )
        self._learning_rate = float(value)

    lr = property(lambda self: self.learning_rate,
                  lambda self, value: setattr(self, "learning_rate", value),
                  doc="Keras 2 alias of `learning_rate`.")

    # applying gradients --------------------------------------------------------------

    def apply_gradients(self, grads_and_vars):
        """Applies one step to the variables.

        Args:
            grads_and_vars: iterable of `(gradient, Variable)` pairs. Pairs whose gradient is
                None or whose variable is not trainable are skipped.

        Returns:
            The number of steps applied so far (`iterations`).

        Raises:
            ValueError: when every gradient is None, or a gradient's shape differs from its
                variable's.
        """
        pairs = list(grads_and_vars)
        if not pairs:
            return self.iterations
        if all(g is None for g, _ in pairs):
            raise ValueError(
                "No gradients provided for any variable. Received: variables="
                f"{[getattr(v, 'path', v) for _, v in pairs]}"
            )
        pairs = [(g, v) for g, v in pairs if g is not None and getattr(v, "trainable", True)]
        grads = [self._as_gradient(g, v) for g, v in pairs]
        variables = [v for _, v in pairs]
        grads = self._clip_gradients(grads)
        learning_rate = self.learning_rate
        for grad, variable in zip(grads, variables):
            value = variable.value
            if self.weight_decay is not None:
                dt = value.dtype.type
                value -= value * dt(self.weight_decay) * dt(learning_rate)
            self.update_step(grad, value, self._slots_for(variable),
                             value.dtype.type(learning_rate))
        for variable in variables:
            if getattr(variable, "constraint", None) is not None:
                variable.value[...] = variable.constraint(variable.value)
        self.iterations += 1
        return self.iterations

    def apply(self, grads, trainable_variables):
        """Keras 3's `apply(grads, variables)`: `apply_gradients(zip(grads, variables))`."""
        return self.apply_gradients(zip(grads, trainable_variables))

    @staticmethod
    def _as_gradient(grad, variable):
        grad = np.asarray(grad, dtype=variable.value.dtype)
        if grad.shape != variable.value.shape:
            raise ValueError(
                f"Gradient for variable '{getattr(variable, 'path', variable)}' has shape "
                f"{grad.shape}, expected the variable's shape {variable.value.shape}. "
                f"Received: gradient.shape={grad.shape}"
            )
        return grad

    def _clip_gradients(self, grads):
        if self.clipnorm:
            return [_clip_by_norm(g, self.clipnorm) for g in grads]
        if self.global_clipnorm:
            return _clip_by_global_norm(grads, self.global_clipnorm)
        if self.clipvalue:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def _slots_for(self, variable):
        key = id(variable)
        if key not in self._slots:
            value = variable.value
            slots = {name: np.full(value.shape, init, dtype=value.dtype)
                     for name, init in self._initial_slots().items()}
            self._slots[key] = (variable, slots)  # the reference keeps id(variable) unique
        return self._slots[key][1]

    def _initial_slots(self):
        return dict(self._slot_names)

    def get_slot(self, variable, name):
        """The optimizer state `name` (e.g. "momentum", "velocity") kept for `variable`."""
        return self._slots_for(variable)[name]

    def get_state(self, variables):
        """(iterations, [{slot name: array copy} per variable]): what resuming training needs."""
        return self.iterations, [{name: np.array(value) for name, value in self._slots_for(v).items()}
                                 for v in variables]

    def set_state(self, variables, iterations, slots):
        """Restore what get_state returned, for the same variables in the same order."""
        if len(slots) != len(variables):
            raise ValueError(f"The state holds slots for {len(slots)} variables, but {len(variables)} "
                             f"variables were given. Received: len(slots)={len(slots)}")
        for variable, saved in zip(variables, slots):
            live = self._slots_for(variable)
            if set(live) != set(saved):
                raise ValueError(f"Optimizer slots differ for '{variable.path}': expected {sorted(live)}. "
                                 f"Received: {sorted(saved)}")
            for name, value in saved.items():
                live[name][...] = value
        self.iterations = int(iterations)

    def update_step(self, gradient, value, slots, learning_rate):
        """Updates `value` (the variable's ndarray) and `slots` in place."""
        raise NotImplementedError

    # config -------------------------------------------------------------------------

    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = {"class_name": type(lr).__name__, "config": lr.get_config()}
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
                "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            class_name, kwargs = check_config(lr, "learning rate schedule")
            config["learning_rate"] = lookup(class_name, _SCHEDULES,
                                             "learning rate schedule").from_config(kwargs)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name} learning_rate={self.learning_rate}>"


def _clip_by_norm(grad, clipnorm):
    """`grad * clipnorm / max(norm(grad), clipnorm)`."""
    norm = np.sqrt(np.sum(grad * grad))
    return grad * grad.dtype.type(clipnorm) / np.maximum(norm, grad.dtype.type(clipnorm))


def _clip_by_global_norm(grads, clipnorm):
    """Scales every gradient by `clipnorm / max(global_norm, clipnorm)` (NaN if it is not finite)."""
    if not grads:
        return grads
    global_norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    if not math.isfinite(global_norm):
        scale = math.nan
    else:
        scale = clipnorm * min(1.0 / global_norm if global_norm else math.inf, 1.0 / clipnorm)
    return [g * g.dtype.type(scale) for g in grads]


# ------------------------------------------------------------------------- optimizers


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum.

    Keras 3 rule: without momentum `w -= lr * g`; with it `m = momentum * m - lr * g`, then
    `w += m`, or `w += momentum * m - lr * g` when nesterov.

    Args:
        learning_rate: default 0.01.
        momentum: float in [0, 1].
        nesterov: whether to apply Nesterov momentum.
        **kwargs: see `Optimizer`.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD", **kwargs):
        self.momentum = _check_unit_interval(momentum, "momentum")
        self.nesterov = bool(nesterov)
        super().__init__(learning_rate, name=name, **kwargs)

    def _initial_slots(self):
        return {"momentum": 0.0} if self.momentum != 0 else {}

    def update_step(self, gradient, value, slots, learning_rate):
        if self.momentum == 0:
            value -= gradient * learning_rate
            return
        m = slots["momentum"]
        momentum = value.dtype.type(self.momentum)
        m[...] = m * momentum - gradient * learning_rate
        if self.nesterov:
            value += m * momentum - gradient * learning_rate
        else:
            value += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam, Keras 3's form.

    `m += (g - m) * (1 - beta_1)`, `v += (g^2 - v) * (1 - beta_2)`,
    `alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`, `w -= alpha * m / (sqrt(v) + epsilon)`
    with t = iterations + 1; amsgrad uses `v_hat = max(v_hat, v)` in place of v.
    Note epsilon is added to sqrt(v), not to the bias-corrected sqrt(v_hat) as in PyTorch.

    Args:
        learning_rate: default 0.001.
        beta_1, beta_2: decay rates of the first and second moment estimates.
        epsilon: small constant for numerical stability (default 1e-7).
        amsgrad: whether to use the AMSGrad variant.
        **kwargs: see `Optimizer`.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name="adam", **kwargs):
        self.beta_1 = _check_unit_interval(beta_1, "beta_1")
        self.beta_2 = _check_unit_interval(beta_2, "beta_2")
        self.epsilon = _check_epsilon(epsilon)
        self.amsgrad = bool(amsgrad)
        super().__init__(learning_rate, name=name, **kwargs)

    def _initial_slots(self):
        slots = {"momentum": 0.0, "velocity": 0.0}
        if self.amsgrad:
            slots["velocity_hat"] = 0.0
        return slots

    def update_step(self, gradient, value, slots, learning_rate):
        dt = value.dtype.type
        step = dt(self.iterations + 1)
        beta_1_power = dt(self.beta_1) ** step
        beta_2_power = dt(self.beta_2) ** step
        alpha = learning_rate * np.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m, v = slots["momentum"], slots["velocity"]
        if _elementwise.fusable(value, gradient, m, v):   # the same bits in one pass
            v_hat = slots["velocity_hat"] if self.amsgrad else v
            _elementwise.kernels().adam(
                value.reshape(-1), gradient.reshape(-1), m.reshape(-1), v.reshape(-1),
                v_hat.reshape(-1), alpha, dt(1 - self.beta_1), dt(1 - self.beta_2),
                dt(self.epsilon), self.amsgrad, _elementwise.threads(value))
            return
        m += (gradient - m) * dt(1 - self.beta_1)
        v += (np.square(gradient) - v) * dt(1 - self.beta_2)
        if self.amsgrad:
            v_hat = slots["velocity_hat"]
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        value -= (m * alpha) / (np.sqrt(v) + dt(self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class Adadelta(Optimizer):
    """Adadelta, Keras 3's form.

    `acc_g = rho * acc_g + (1 - rho) * g^2`,
    `delta = -sqrt(acc_delta + eps) * g / sqrt(acc_g + eps)`,
    `acc_delta = rho * acc_delta + (1 - rho) * delta^2`, `w += lr * delta`.

    Args:
        learning_rate: default 0.001 (Keras 3; Keras 2 used 1.0).
        rho: decay rate.
        epsilon: small constant for numerical stability.
        **kwargs: see `Optimizer`.
    """

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, name="adadelta", **kwargs):
        self.rho = _check_unit_interval(rho, "rho")
        self.epsilon = _check_epsilon(epsilon)
        super().__init__(learning_rate, name=name, **kwargs)

    def _initial_slots(self):
        return {"accumulated_grad": 0.0, "accumulated_delta_var": 0.0}

    def update_step(self, gradient, value, slots, learning_rate):
        dt = value.dtype.type
        rho, eps = dt(self.rho), dt(self.epsilon)
        acc_grad, acc_delta = slots["accumulated_grad"], slots["accumulated_delta_var"]
        acc_grad[...] = rho * acc_grad + (1 - rho) * np.square(gradient)
        delta = -(np.sqrt(acc_delta + eps) * gradient) / np.sqrt(acc_grad + eps)
        acc_delta[...] = rho * acc_delta + (1 - rho) * np.square(delta)
        value += learning_rate * delta

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adagrad(Optimizer):
    """Adagrad, Keras 3's form: `acc += g^2`, `w -= lr * g / sqrt(acc + epsilon)`.

    Args:
        learning_rate: default 0.001.
        initial_accumulator_value: starting value of the accumulators (>= 0).
        epsilon: small constant for numerical stability.
        **kwargs: see `Optimizer`.
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 name="adagrad", **kwargs):
        self.initial_accumulator_value = _check_real(initial_accumulator_value,
                                                     "initial_accumulator_value")
        if self.initial_accumulator_value < 0:
            raise ValueError(
                "`initial_accumulator_value` must be non-negative. "
                f"Received: initial_accumulator_value={initial_accumulator_value}"
            )
        self.epsilon = _check_epsilon(epsilon)
        super().__init__(learning_rate, name=name, **kwargs)

    def _initial_slots(self):
        return {"accumulator": self.initial_accumulator_value}

    def update_step(self, gradient, value, slots, learning_rate):
        acc = slots["accumulator"]
        acc += np.square(gradient)
        value -= (learning_rate * gradient) / np.sqrt(acc + value.dtype.type(self.epsilon))

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop, Keras 3's form.

    `v = rho * v + (1 - rho) * g^2`; centered: `a = rho * a + (1 - rho) * g` and
    denominator `v - a^2 + eps`, else `v + eps`; `inc = lr * g / sqrt(denominator)`;
    with momentum `mom = momentum * mom + inc; w -= mom`, else `w -= inc`.

    Args:
        learning_rate: default 0.001.
        rho: decay rate of the squared-gradient average.
        momentum: float in [0, 1].
        epsilon: small constant for numerical stability.
        centered: normalise by the estimated variance instead of the second moment.
        **kwargs: see `Optimizer`.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 name="rmsprop", **kwargs):
        self.rho = _check_unit_interval(rho, "rho")
        self.momentum = _check_unit_interval(momentum, "momentum")
        self.epsilon = _check_epsilon(epsilon)
        self.centered = bool(centered)
        super().__init__(learning_rate, name=name, **kwargs)

    def _initial_slots(self):
        slots = {"velocity": 0.0}
        if self.momentum > 0:
            slots["momentum"] = 0.0
        if self.centered:
            slots["average_gradient"] = 0.0
        return slots

    def update_step(self, gradient, value, slots, learning_rate):
        dt = value.dtype.type
        rho = dt(self.rho)
        velocity = slots["velocity"]
        velocity[...] = rho * velocity + (1 - rho) * np.square(gradient)
        if self.centered:
            average = slots["average_gradient"]
            average[...] = rho * average + (1 - rho) * gradient
            denominator = velocity - np.square(average) + dt(self.epsilon)
        else:
            denominator = velocity + dt(self.epsilon)
        increment = (learning_rate * gradient) / np.sqrt(denominator)
        if self.momentum > 0:
            momentum = slots["momentum"]
            momentum[...] = dt(self.momentum) * momentum + increment
            value -= momentum
        else:
            value -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


# Keras 2's lowercase aliases (`from keras.optimizers import adam`).
sgd, adam, adadelta, adagrad, rmsprop = SGD, Adam, Adadelta, Adagrad, RMSprop

_CLASSES = [SGD, Adam, Adadelta, Adagrad, RMSprop]
_BY_NAME = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME.update({cls.__name__.lower(): cls for cls in _CLASSES})


def serialize(optimizer):
    """`{"class_name": ..., "config": {...}}`."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config, custom_objects=None):
    """Inverse of `serialize`; class names are matched as Keras does ("Adam" or "adam")."""
    class_name, kwargs = check_config(config, "optimizer")
    table = dict(_BY_NAME, **(custom_objects or {}))
    cls = table.get(class_name) or table.get(class_name.lower())
    cls = cls or lookup(class_name, table, "optimizer")
    return cls.from_config(kwargs)


def get(identifier):
    """Resolves an optimizer.

    Args:
        identifier: an Optimizer (returned as is), a name ("adam", "SGD", "RMSprop", ...;
            a fresh instance with Keras's defaults), or a serialized dict.

    Raises:
        ValueError: for unknown names or objects.
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or _BY_NAME.get(identifier.lower())
        return (cls or lookup(identifier, _BY_NAME, "optimizer"))()
    raise ValueError(
        f"Could not interpret optimizer identifier: {identifier!r}. Received: identifier={identifier!r}"
    )
