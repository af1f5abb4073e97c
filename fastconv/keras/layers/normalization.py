"""BatchNormalization: batch statistics in training, moving statistics otherwise."""
import numpy as np

from .. import constraints, initializers, regularizers
from .base import Layer
from .core import _serialize_optional, check_axis


class BatchNormalization(Layer):
    """gamma * (x - mean) / sqrt(var + epsilon) + beta along `axis`.

    In training (and only while the layer is trainable) mean and var are the batch's (biased variance)
    and the moving statistics move: moving = moving * momentum + batch * (1 - momentum). Otherwise the
    moving statistics are used and nothing changes, as in Keras (a frozen BatchNormalization runs in
    inference mode, the transfer-learning behaviour).
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, synchronized=False, **kwargs):
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise ValueError(f"Only a single axis is supported. Received: axis={axis}")
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"Expected an int value for argument `axis`. Received: axis={axis!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1]. Received: momentum={momentum!r}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be positive. Received: epsilon={epsilon!r}")
        if synchronized:
            raise ValueError(f"synchronized batch normalization is not supported. Received: synchronized={synchronized!r}")
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise ValueError(f"Invalid axis for input of rank {rank}. Received: axis={self.axis}")
        self._axis = self.axis % rank
        size = input_shape[self._axis]
        if size is None:
            raise ValueError(
                f"Axis {self.axis} of the input must be defined. Received: input_shape={tuple(input_shape)}"
            )
        self._rank = rank
        shape = (size,)
        if self.scale:
            self.gamma = self.add_weight(shape, self.gamma_initializer, "gamma",
                                         regularizer=self.gamma_regularizer, constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight(shape, self.beta_initializer, "beta",
                                        regularizer=self.beta_regularizer, constraint=self.beta_constraint)
        self.moving_mean = self.add_weight(shape, self.moving_mean_initializer, "moving_mean", trainable=False)
        self.moving_variance = self.add_weight(shape, self.moving_variance_initializer, "moving_variance",
                                               trainable=False)
        self.built = True

    def _check_input_shape(self, shape):
        if len(shape) != self._rank:
            raise ValueError(
                f'Input 0 of layer "{self.name}" is incompatible with the layer: expected ndim={self._rank}, '
                f"found ndim={len(shape)}. Full shape received: {tuple(shape)}"
            )
        check_axis(self, shape, self._axis, self.moving_mean.shape[0])

    def _broadcast(self, v):
        shape = [1] * self._rank
        shape[self._axis] = -1
        return v.reshape(shape)

    def call(self, inputs, training=False):
        reduce_axes = tuple(i for i in range(inputs.ndim) if i != self._axis)
        dt = inputs.dtype.type
        batch_mode = training and self.trainable
        if batch_mode:
            mean = inputs.mean(axis=reduce_axes)
            centered = inputs - self._broadcast(mean)
            var = np.mean(np.square(centered), axis=reduce_axes)
            m = self.momentum
            self.moving_mean.value[...] = self.moving_mean.value * dt(m) + mean * dt(1.0 - m)
            self.moving_variance.value[...] = self.moving_variance.value * dt(m) + var * dt(1.0 - m)
        else:
            mean, var = self.moving_mean.value, self.moving_variance.value
            centered = inputs - self._broadcast(mean)
        inv_std = (1.0 / np.sqrt(var + dt(self.epsilon))).astype(inputs.dtype)
        xhat = centered * self._broadcast(inv_std)
        out = xhat * self._broadcast(self.gamma.value) if self.scale else xhat.copy()
        if self.center:
            out += self._broadcast(self.beta.value)
        if training:
            self._cache = (xhat, inv_std, batch_mode, reduce_axes)
        return out

    def backward(self, grad_output, needs_input=True):
        xhat, inv_std, batch_mode, axes = self._cache
        g = grad_output
        if self.trainable:
            if self.scale:
                self._accumulate(self.gamma, np.sum(g * xhat, axis=axes))
            if self.center:
                self._accumulate(self.beta, np.sum(g, axis=axes))
        if not needs_input:
            return None
        scale = inv_std * self.gamma.value if self.scale else inv_std
        dxhat = g * self._broadcast(scale)
        if not batch_mode:
            return dxhat
        count = g.size // g.shape[self._axis]
        mean_d = np.sum(dxhat, axis=axes) / count
        mean_dx = np.sum(dxhat * xhat, axis=axes) / count
        return dxhat - self._broadcast(mean_d) - xhat * self._broadcast(mean_dx)

    def get_config(self):
        config = super().get_config()
        config.update(
            axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center, scale=self.scale,
            beta_initializer=initializers.serialize(self.beta_initializer),
            gamma_initializer=initializers.serialize(self.gamma_initializer),
            moving_mean_initializer=initializers.serialize(self.moving_mean_initializer),
            moving_variance_initializer=initializers.serialize(self.moving_variance_initializer),
            beta_regularizer=_serialize_optional(regularizers, self.beta_regularizer),
            gamma_regularizer=_serialize_optional(regularizers, self.gamma_regularizer),
            beta_constraint=_serialize_optional(constraints, self.beta_constraint),
            gamma_constraint=_serialize_optional(constraints, self.gamma_constraint),
        )
        return config
