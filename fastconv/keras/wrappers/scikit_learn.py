"""KerasClassifier / KerasRegressor: Keras 2's scikit-learn wrappers, for GridSearchCV and cross_val_score.

`KerasClassifier(build_fn=None, **sk_params)`: `build_fn` returns a compiled model; each entry of
sk_params goes to build_fn when it names one of its arguments, and to `fit`/`predict`/`evaluate` when it
names one of theirs (epochs, batch_size, verbose, ...). Parameters passed to `fit(x, y, **kwargs)` win.
"""
import copy
import inspect

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
except ImportError:  # scikit-learn is optional; the wrappers still work stand-alone.
    class BaseEstimator:  # type: ignore[no-redef]
        pass

    class ClassifierMixin:  # type: ignore[no-redef]
        _estimator_type = "classifier"

    class RegressorMixin:  # type: ignore[no-redef]
        _estimator_type = "regressor"

_FIT_ARGS = ("batch_size", "epochs", "verbose", "callbacks", "validation_split", "validation_data", "shuffle",
             "class_weight", "sample_weight", "initial_epoch", "steps_per_epoch", "validation_steps",
             "validation_batch_size", "validation_freq")
_PREDICT_ARGS = ("batch_size", "verbose", "steps")
_EVALUATE_ARGS = ("batch_size", "verbose", "sample_weight", "steps")


class BaseWrapper(BaseEstimator):
    def __init__(self, build_fn=None, **sk_params):
        self.build_fn = build_fn
        self.sk_params = sk_params
        self.check_params(sk_params)

    def _build_callable(self):
        if self.build_fn is None:
            return self.__call__
        if inspect.isclass(self.build_fn) or not callable(self.build_fn):
            if not inspect.isclass(self.build_fn):
                raise ValueError(
                    f"`build_fn` must be a function returning a compiled model. Received: build_fn={self.build_fn!r}"
                )
            return self.build_fn.__call__
        return self.build_fn

    def check_params(self, params):
        """Every parameter must be an argument of build_fn, fit, predict or evaluate."""
        fn = self._build_callable()
        legal = set(_FIT_ARGS) | set(_PREDICT_ARGS) | set(_EVALUATE_ARGS)
        try:
            sig = inspect.signature(fn)
            if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
                return
            legal |= set(sig.parameters)
        except (TypeError, ValueError):  # pragma: no cover
            return
        for name in params:
            if name not in legal:
                raise ValueError(f"{name} is not a legal parameter. Received: {name}={params[name]!r}")

    def get_params(self, deep=True):
        params = copy.copy(self.sk_params)
        params["build_fn"] = self.build_fn
        return params

    def set_params(self, **params):
        self.check_params({k: v for k, v in params.items() if k != "build_fn"})
        if "build_fn" in params:
            self.build_fn = params.pop("build_fn")
        self.sk_params.update(params)
        return self

    def filter_sk_params(self, fn, override=None):
        """The sk_params (then override) that name arguments of fn."""
        override = override or {}
        try:
            names = set(inspect.signature(fn).parameters)
        except (TypeError, ValueError):  # pragma: no cover
            names = set()
        out = {k: v for k, v in self.sk_params.items() if k in names}
        out.update({k: v for k, v in override.items() if k in names})
        return out

    def _select(self, allowed, override):
        out = {k: v for k, v in self.sk_params.items() if k in allowed}
        out.update(override)
        return out

    def _build_model(self, **kwargs):
        fn = self._build_callable()
        model = fn(**self.filter_sk_params(fn, kwargs))
        if not getattr(model, "compiled", False):
            raise ValueError(
                "`build_fn` must return a compiled model (call `model.compile(...)` before returning it). "
                f"Received: {model!r}"
            )
        return model

    def fit(self, x, y, **kwargs):
        self.model = self._build_model(**kwargs)
        fit_args = self._select(_FIT_ARGS, {k: v for k, v in kwargs.items() if k in _FIT_ARGS})
        fit_args.setdefault("verbose", 0)
        self.history_ = self.model.fit(x, y, **fit_args)
        return self.history_

    def _check_fitted(self):
        if not hasattr(self, "model"):
            from sklearn.exceptions import NotFittedError
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")

    def __sklearn_is_fitted__(self):
        return hasattr(self, "model")


class KerasClassifier(ClassifierMixin, BaseWrapper):
    """scikit-learn classifier around a Keras model (labels may be any values; one-hot when the loss wants)."""

    def fit(self, x, y, sample_weight=None, **kwargs):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:
            self.classes_ = np.arange(y.shape[1])
            encoded = np.argmax(y, axis=1)
        elif y.ndim <= 2:
            self.classes_, encoded = np.unique(y.reshape(len(y)), return_inverse=True)
        else:
            raise ValueError(f"Invalid shape for y: {y.shape}. Received: y.shape={y.shape}")
        self.n_classes_ = len(self.classes_)
        self.model = self._build_model(**kwargs)
        targets = encoded
        if self._wants_one_hot(self.model):
            targets = np.eye(max(self.n_classes_, self.model.output_shape[-1] or 0), dtype=np.float32)[encoded]
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        fit_args = self._select(_FIT_ARGS, {k: v for k, v in kwargs.items() if k in _FIT_ARGS})
        fit_args.setdefault("verbose", 0)
        self.history_ = self.model.fit(x, targets, **fit_args)
        return self.history_

    @staticmethod
    def _wants_one_hot(model):
        from .. import losses
        loss = losses.get(model.loss) if not isinstance(model.loss, (list, dict)) else None
        fn = getattr(loss, "fn", None)
        name = getattr(loss, "name", "")
        return fn is losses.categorical_crossentropy or name in ("categorical_crossentropy",) or \
            type(loss).__name__ == "CategoricalCrossentropy"

    def predict_proba(self, x, **kwargs):
        self._check_fitted()
        probs = self.model.predict(x, **self._select(_PREDICT_ARGS, {"verbose": 0, **kwargs}))
        if probs.shape[1] == 1:
            probs = np.hstack([1 - probs, probs])
        return probs

    def predict(self, x, **kwargs):
        self._check_fitted()
        outputs = self.model.predict(x, **self._select(_PREDICT_ARGS, {"verbose": 0, **kwargs}))
        if outputs.shape[-1] > 1:
            index = outputs.argmax(axis=-1)
        else:
            index = (outputs[:, 0] > 0.5).astype(np.int64)
        return self.classes_[index]

    def score(self, x, y, sample_weight=None, **kwargs):
        """Mean accuracy of predict(x) against y (Keras 2 returned its compiled accuracy metric)."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:
            y = self.classes_[np.argmax(y, axis=1)]
        predicted = self.predict(x, **kwargs)
        correct = (predicted == y.reshape(len(y))).astype(np.float64)
        return float(np.average(correct, weights=sample_weight))


class KerasRegressor(RegressorMixin, BaseWrapper):
    """scikit-learn regressor around a Keras model; score is minus the loss (as Keras 2)."""

    def predict(self, x, **kwargs):
        self._check_fitted()
        outputs = self.model.predict(x, **self._select(_PREDICT_ARGS, {"verbose": 0, **kwargs}))
        return np.squeeze(outputs, axis=-1) if outputs.ndim > 1 and outputs.shape[-1] == 1 else outputs

    def score(self, x, y, **kwargs):
        self._check_fitted()
        args = self._select(_EVALUATE_ARGS, {"verbose": 0, **kwargs})
        result = self.model.evaluate(x, y, **args)
        loss = result[0] if isinstance(result, list) else result
        return -float(loss)
