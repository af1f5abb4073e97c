"""Keras's `initializers` module: objects `init(shape, dtype=None) -> ndarray`.

Randomness: an unseeded initializer draws from `backend.rng()`, so
`utils.set_random_seed` makes every layer reproducible while different layers still get
different values. A seeded initializer (`seed=42`) builds its own generator at each call
and so returns the same values every call, as a Keras 3 initializer seeded with an int does.

Fans follow Keras's `compute_fans`: a 2-D shape is `(fan_in, fan_out)`; for a conv kernel
`(kh, kw, in, out)` the receptive field `kh * kw` multiplies both.
"""
import math

import numpy as np
from scipy import stats

from fastconv.keras import backend
from fastconv.keras.utils.naming import ObjectRegistry, to_snake_case

# Standard deviation of a unit normal truncated to [-2, 2]: Keras divides by it so the
# truncated draw has the variance asked for.
_TRUNCATED_STDDEV = 0.87962566103423978


def compute_fans(shape):
    """Returns `(fan_in, fan_out)` for a weight of `shape`, as Keras computes them."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _check_shape(shape):
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of integers. Received: shape={shape!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"shape must not have negative dimensions. Received: shape={shape}")
    return shape


def _float_dtype(dtype):
    dtype = np.dtype(dtype or backend.floatx())
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(
            f"Expected a float dtype for a random initializer. Received: dtype={dtype}"
        )
    return dtype


class Initializer:
    """Base class: subclasses implement `__call__(shape, dtype=None)` and `get_config`."""

    def __call__(self, shape, dtype=None):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype=None):
        return np.zeros(_check_shape(shape), dtype=dtype or backend.floatx())


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype=None):
        return np.ones(_check_shape(shape), dtype=dtype or backend.floatx())


class Constant(Initializer):
    """Every entry equal to `value` (a scalar, or an array broadcastable to the shape)."""

    def __init__(self, value=0.0):
        self.value = value

    def __call__(self, shape, dtype=None):
        shape = _check_shape(shape)
        return np.broadcast_to(np.asarray(self.value, dtype=dtype or backend.floatx()), shape).copy()

    def get_config(self):
        value = self.value
        return {"value": value.tolist() if isinstance(value, np.ndarray) else value}


class RandomInitializer(Initializer):
    """Base of the random initializers: resolves the generator from `seed`."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(
                f"`seed` argument should be None or an integer. Received: seed={seed!r}"
            )
        self.seed = seed

    def _generator(self):
        return backend.rng() if self.seed is None else np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self.seed}


class RandomNormal(RandomInitializer):
    """Normal draws with `mean` and `stddev`."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = mean
        self.stddev = stddev

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        values = self._generator().normal(self.mean, self.stddev, _check_shape(shape))
        return values.astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class TruncatedNormal(RandomInitializer):
    """Normal draws with `mean` and `stddev`, redrawn beyond two standard deviations."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = mean
        self.stddev = stddev

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        values = _truncated_normal(self._generator(), _check_shape(shape))
        return (self.mean + self.stddev * values).astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class RandomUniform(RandomInitializer):
    """Uniform draws in `[minval, maxval)`."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = minval
        self.maxval = maxval

    def __call__(self, shape, dtype=None):
        dtype = _float_dtype(dtype)
        values = self._generator().uniform(self.minval, self.maxval, _check_shape(shape))
        return values.astype(dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


def _truncated_normal(generator, shape):
    """Unit normal truncated to [-2, 2] (by inverse CDF, so one draw per entry)."""
    return stats.truncnorm.rvs(-2.0, 2.0, size=shape, random_state=generator)


class VarianceScaling(RandomInitializer):
    """Draws with variance `scale / n`, n the fan chosen by `mode`.

    Args:
        scale: positive scaling factor.
        mode: "fan_in", "fan_out" or "fan_avg".
        distribution: "truncated_normal", "untruncated_normal" or "uniform".
        seed: None (draw from `backend.rng()`) or an integer.

    Raises:
        ValueError: for a non-positive scale or an unknown mode or distribution.
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if scale <= 0.0:
            raise ValueError(
                f"Argument `scale` must be positive float. Received: scale={scale}"
            )
        if mode not in self._MODES:
            raise ValueError(
                f"Invalid `mode` argument: expected one of {list(self._MODES)}. Received: mode={mode}"
            )
        distribution = distribution.lower()
        if distribution == "normal":  # Keras 2 spelling
            distribution = "truncated_normal"
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(
                f"Invalid `distribution` argument: expected one of {list(self._DISTRIBUTIONS)}. "
                f"Received: distribution={distribution}"
            )
        self.scale = scale
        self.mode = mode
        self.distribution = distribution

    def __call__(self, shape, dtype=None):
        shape = _check_shape(shape)
        dtype = _float_dtype(dtype)
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        generator = self._generator()
        if self.distribution == "truncated_normal":
            values = math.sqrt(variance) / _TRUNCATED_STDDEV * _truncated_normal(generator, shape)
        elif self.distribution == "untruncated_normal":
            values = generator.normal(0.0, math.sqrt(variance), shape)
        else:
            limit = math.sqrt(3.0 * variance)
            values = generator.uniform(-limit, limit, shape)
        return values.astype(dtype)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **super().get_config()}


def _variance_scaling_preset(name, scale, mode, distribution, doc):
    """Defines GlorotUniform & co: VarianceScaling with fixed arguments, configured by seed."""

    def __init__(self, seed=None):
        VarianceScaling.__init__(self, scale=scale, mode=mode, distribution=distribution, seed=seed)

    def get_config(self):
        return {"seed": self.seed}

    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                           "__doc__": doc})


GlorotUniform = _variance_scaling_preset(
    "GlorotUniform", 1.0, "fan_avg", "uniform",
    "Uniform in [-limit, limit], limit = sqrt(6 / (fan_in + fan_out)).")
GlorotNormal = _variance_scaling_preset(
    "GlorotNormal", 1.0, "fan_avg", "truncated_normal",
    "Truncated normal, stddev = sqrt(2 / (fan_in + fan_out)).")
HeUniform = _variance_scaling_preset(
    "HeUniform", 2.0, "fan_in", "uniform", "Uniform in [-limit, limit], limit = sqrt(6 / fan_in).")
HeNormal = _variance_scaling_preset(
    "HeNormal", 2.0, "fan_in", "truncated_normal", "Truncated normal, stddev = sqrt(2 / fan_in).")
LecunUniform = _variance_scaling_preset(
    "LecunUniform", 1.0, "fan_in", "uniform", "Uniform in [-limit, limit], limit = sqrt(3 / fan_in).")
LecunNormal = _variance_scaling_preset(
    "LecunNormal", 1.0, "fan_in", "truncated_normal", "Truncated normal, stddev = sqrt(1 / fan_in).")


class Identity(Initializer):
    """`gain` times the identity matrix (2-D shapes only)."""

    def __init__(self, gain=1.0):
        self.gain = gain

    def __call__(self, shape, dtype=None):
        shape = _check_shape(shape)
        if len(shape) != 2:
            raise ValueError(
                f"Identity matrix initializer can only be used for 2D matrices. Received: shape={shape}"
            )
        return (self.gain * np.eye(*shape)).astype(dtype or backend.floatx())

    def get_config(self):
        return {"gain": self.gain}


class Orthogonal(RandomInitializer):
    """A (semi-)orthogonal matrix times `gain`, from the QR of a normal draw; shape flattened
    to `(prod(shape[:-1]), shape[-1])`."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = gain

    def __call__(self, shape, dtype=None):
        shape = _check_shape(shape)
        dtype = _float_dtype(dtype)
        if len(shape) < 2:
            raise ValueError(
                f"The tensor to initialize must be at least two-dimensional. Received: shape={shape}"
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]
        flat = self._generator().normal(size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(flat)
        q *= np.sign(np.diag(r))  # makes the decomposition unique
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dtype)

    def get_config(self):
        return {"gain": self.gain, **super().get_config()}


_CLASSES = [Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling,
            GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Identity,
            Orthogonal]
_BY_NAME = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME.update({to_snake_case(cls.__name__): cls for cls in _CLASSES})
# Keras 2 / Keras 3 aliases.
_BY_NAME.update({"zero": Zeros, "one": Ones, "normal": RandomNormal, "uniform": RandomUniform,
                 "orthogonal": Orthogonal, "identity": Identity, "IdentityInitializer": Identity,
                 "OrthogonalInitializer": Orthogonal})

# Keras 3's snake_case functions are the classes themselves (`initializers.glorot_uniform(seed=1)`).
zeros, ones, constant = Zeros, Ones, Constant
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling = VarianceScaling
glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_uniform, he_normal = HeUniform, HeNormal
lecun_uniform, lecun_normal = LecunUniform, LecunNormal
identity, orthogonal = Identity, Orthogonal


_REGISTRY = ObjectRegistry("initializer", _BY_NAME, base=Initializer)
serialize, deserialize, get = _REGISTRY.serialize, _REGISTRY.deserialize, _REGISTRY.get
