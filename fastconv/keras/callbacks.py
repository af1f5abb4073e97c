"""Keras's `callbacks` module: hooks that `fit`, `evaluate` and `predict` call.

The trainer drives a `CallbackList` exactly as Keras 3's trainers do::

    callbacks = CallbackList(user_callbacks, add_history=True, add_progbar=verbose != 0,
                             model=model, verbose=verbose, epochs=epochs, steps=steps)
    callbacks.on_train_begin()
    for epoch in ...:
        callbacks.on_epoch_begin(epoch)
        for step in ...:
            callbacks.on_train_batch_begin(step)
            ...
            callbacks.on_train_batch_end(step, logs)   # running means of the epoch so far
        callbacks.on_epoch_end(epoch, epoch_logs)       # + "val_*" entries
        if model.stop_training: break
    callbacks.on_train_end(epoch_logs)

The model seen by callbacks needs: `stop_training`, `optimizer.learning_rate` (settable),
`get_weights()`, `set_weights(weights)`, `save(path)`, `save_weights(path)`.
"""
import collections
import csv
import importlib.util
import math
import os
import sys
import time
import warnings

import numpy as np

from fastconv.keras.utils.progbar import Progbar

_HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)


def _print(message):
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


class Callback:
    """Base class: every hook does nothing; subclasses override the ones they need.

    Attributes:
        params: dict set by `set_params` (verbose, epochs, steps).
        model: the model being trained, set by `set_model`.
    """

    def __init__(self):
        self.params = {}
        self._model = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self._model = model

    @property
    def model(self):
        return self._model

    def on_batch_begin(self, batch, logs=None):
        """Alias Keras keeps: called by `on_train_batch_begin`."""

    def on_batch_end(self, batch, logs=None):
        """Alias Keras keeps: called by `on_train_batch_end`."""

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass


class CallbackList(Callback):
    """Calls every hook on each callback in turn, adding History / ProgbarLogger if asked.

    Args:
        callbacks: None, a Callback, or a list of Callbacks.
        add_history: append a `History` unless one is in `callbacks`.
        add_progbar: append a `ProgbarLogger` unless one is in `callbacks`.
        model: passed to `set_model` of every callback.
        **params: passed to `set_params` (Keras's trainers pass verbose, epochs, steps).

    Raises:
        TypeError: if an entry of `callbacks` is not a Callback.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        super().__init__()
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    "All entries of `callbacks` must be `keras.callbacks.Callback` instances. "
                    f"Received: callbacks={callbacks!r}"
                )
        self._history = next((c for c in self.callbacks if isinstance(c, History)), None)
        self._progbar = next((c for c in self.callbacks if isinstance(c, ProgbarLogger)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, callback):
        self.callbacks.append(callback)

    def set_params(self, params):
        self.params = params
        for callback in self.callbacks:
            callback.set_params(params)

    def set_model(self, model):
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def _call(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def on_batch_begin(self, batch, logs=None):
        self._call("on_batch_begin", batch, logs)

    def on_batch_end(self, batch, logs=None):
        self._call("on_batch_end", batch, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)


class History(Callback):
    """Records the epoch logs: `history.history["loss"]` is the list of epoch losses.

    `fit` returns it; it also sets `model.history` to itself after each epoch.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


class ProgbarLogger(Callback):
    """Prints the progress bar of fit / evaluate / predict (see `utils.Progbar`).

    verbose 1: a bar per epoch (and "Epoch i/n" headers when n > 1); verbose 2: one line per
    epoch. Validation run inside fit shows nothing of its own; its `val_*` values appear on
    the epoch's final line. Logs are taken as the running means they are (Keras 2's display).
    """

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params):
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset_progbar()
            self._maybe_init_progbar()

    def on_predict_begin(self, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        self._maybe_init_progbar()
        if self.verbose and self.epochs > 1:
            _print(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)

    def on_epoch_end(self, epoch, logs=None):
        self._finalize_progbar(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs=None):
        self._finalize_progbar(logs)

    def _reset_progbar(self):
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self):
        if self.progbar is None:
            self.progbar = Progbar(target=self.target, verbose=self.verbose, unit_name="step")

    def _values(self, logs):
        values = [(k, v) for k, v in (logs or {}).items() if np.ndim(v) == 0]
        self.progbar.stateful_metrics.update(k for k, _ in values)
        return values

    def _update_progbar(self, batch, logs):
        self._maybe_init_progbar()
        self.seen = batch + 1  # one-based
        if self.verbose == 1:
            self.progbar.update(self.seen, self._values(logs), finalize=False)

    def _finalize_progbar(self, logs):
        self._maybe_init_progbar()
        if self.target is None:
            self.target = self.seen
            self.progbar.target = self.seen
        self.progbar.update(self.target, self._values(logs), finalize=True)


# --------------------------------------------------------------------- monitored values

_MODES = ("auto", "min", "max")
_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "fmeasure", "f1")


def _check_mode(mode, owner):
    if mode not in _MODES:
        raise ValueError(f"{owner} mode must be one of {_MODES}. Received: mode={mode!r}")
    return mode


def _monitor_mode(mode, monitor):
    """"min" or "max" for `monitor`; "auto" maximises accuracy-like metrics, minimises others."""
    if mode != "auto":
        return mode
    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "max" if any(word in name for word in _HIGHER_IS_BETTER) else "min"


def _learning_rate(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError(
            'Optimizer must have a "learning_rate" attribute. '
            f"Received: optimizer={optimizer!r}"
        )
    return float(np.asarray(optimizer.learning_rate))


class EarlyStopping(Callback):
    """Stops training when `monitor` has stopped improving.

    Args:
        monitor: the log entry to watch (default "val_loss").
        min_delta: smallest change counted as an improvement.
        patience: epochs without improvement before stopping.
        verbose: 1 prints when stopping / restoring.
        mode: "min", "max" or "auto" (maximise accuracy-like names, minimise the rest).
        baseline: training stops if the model does not beat this value within `patience`.
        restore_best_weights: at the end, set the weights of the best epoch back.
        start_from_epoch: epochs to wait before watching at all.

    Raises:
        ValueError: for an unknown mode or negative patience / start_from_epoch.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if patience < 0:
            raise ValueError(f"patience must be non-negative. Received: patience={patience}")
        if start_from_epoch < 0:
            raise ValueError(
                f"start_from_epoch must be non-negative. Received: start_from_epoch={start_from_epoch}"
            )
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.min_delta = abs(min_delta)
        self.mode = _check_mode(mode, "EarlyStopping")
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if _monitor_mode(self.mode, self.monitor) == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = self._monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # Until something improves, the current weights are the best seen.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # Only restart waiting if the baseline is beaten too.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            _print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _print("Restoring model weights from the end of the best epoch: "
                       f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def _monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs)}",
                UserWarning, stacklevel=3,
            )
        return value


class ModelCheckpoint(Callback):
    """Saves the model (or its weights) after each epoch, or every `save_freq` batches.

    Args:
        filepath: path, formatted with `epoch` (1-based) and the logs, e.g.
            "weights.{epoch:02d}-{val_loss:.2f}.h5". Missing directories are created.
        monitor: the log entry compared when `save_best_only`.
        verbose: 1 prints a line per save decision.
        save_best_only: only save when `monitor` improved on the best so far.
        save_weights_only: call `model.save_weights` instead of `model.save`.
        mode: "min", "max" or "auto".
        save_freq: "epoch" or a number of batches.
        initial_value_threshold: the value `monitor` must beat for the first save.

    Raises:
        ValueError: for an unknown mode or an invalid save_freq.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = _monitor_mode(_check_mode(mode, "ModelCheckpoint"), monitor)
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq < 1):
            raise ValueError(
                f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' or a "
                f"positive integer. Received: save_freq={save_freq!r}"
            )
        self.save_freq = save_freq
        if initial_value_threshold is not None:
            self.best = initial_value_threshold
        else:
            self.best = math.inf if self.mode == "min" else -math.inf
        self._batches_seen = 0
        self._current_epoch = 0

    def _improved(self, current):
        return current < self.best if self.mode == "min" else current > self.best

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_seen += 1
        if self._batches_seen % self.save_freq == 0:
            self._save(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _filepath(self, epoch, batch, logs):
        try:
            if batch is None:
                return self.filepath.format(epoch=epoch + 1, **(logs or {}))
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **(logs or {}))
        except KeyError as err:
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {err}. '
                f"Received: logs with keys {sorted(logs or {})}"
            ) from err

    def _save(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._filepath(epoch, batch, logs)
        directory = os.path.dirname(filepath)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"Can save best model only with {self.monitor} available.",
                              UserWarning, stacklevel=3)
                return
            if not self._improved(current):
                if self.verbose > 0:
                    _print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                           f"{self.best:.5f}")
                return
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                       f"{current:.5f}, saving model to {filepath}")
            self.best = current
        elif self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
        if self.save_weights_only:
            self.model.save_weights(filepath)
        else:
            self.model.save(filepath)


class CSVLogger(Callback):
    """Streams the epoch logs to a CSV file: a header `epoch,<sorted keys>` and a row per epoch.

    Args:
        filename: the CSV file.
        separator: the field separator.
        append: append to an existing file (the header is written only if it is empty).
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(
                f"separator must be a single character. Received: separator={separator!r}"
            )
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.writer = None
        self.keys = None
        self.csv_file = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        mode = "w"
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename) as existing:
                    self.append_header = not bool(len(existing.readline()))
            mode = "a"
        self.csv_file = open(self.filename, mode, newline="")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        if self.writer is None:
            class Dialect(csv.excel):
                delimiter = self.sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = collections.OrderedDict({"epoch": epoch})
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None:
            self.csv_file.close()
        self.csv_file = None
        self.writer = None


def _csv_value(value):
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.ndim > 0 or isinstance(value, (list, tuple)):
        return f"\"[{', '.join(map(str, value))}]\""
    return value


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at the start of each epoch.

    Args:
        schedule: `schedule(epoch, lr) -> new lr` (epoch 0-based); Keras 1's `schedule(epoch)`
            is accepted too.
        verbose: 1 prints each change.

    The epoch logs get a "learning_rate" entry.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule must be callable. Received: schedule={schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        current = _learning_rate(self.model)
        try:
            learning_rate = self.schedule(epoch, current)
        except TypeError:  # the old one-argument API
            learning_rate = self.schedule(epoch)
        if isinstance(learning_rate, np.ndarray) and learning_rate.ndim == 0:
            learning_rate = learning_rate.item()
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (float, np.floating)):
            raise ValueError(
                "The output of the `schedule` function should be a float. "
                f"Received: learning_rate={learning_rate!r}"
            )
        self.model.optimizer.learning_rate = float(learning_rate)
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                   f"{float(learning_rate)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self.model)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` when `monitor` stops improving.

    Args:
        monitor: the log entry to watch.
        factor: multiplier of the learning rate (< 1).
        patience: epochs without improvement before reducing.
        verbose: 1 prints each reduction.
        mode: "min", "max" or "auto".
        min_delta: threshold for counting a change as an improvement.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: lower bound on the learning rate.
        **kwargs: `epsilon`, Keras 2's name of `min_delta` (with a warning).

    The epoch logs get a "learning_rate" entry.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if "epsilon" in kwargs:
            min_delta = kwargs.pop("epsilon")
            warnings.warn("`epsilon` argument is deprecated and will be removed, use "
                          "`min_delta` instead.", UserWarning, stacklevel=2)
        if kwargs:
            raise TypeError(f"Unrecognized arguments for ReduceLROnPlateau. Received: {kwargs}")
        if factor >= 1.0:
            raise ValueError(
                f"ReduceLROnPlateau does not support a factor >= 1.0. Received: factor={factor}"
            )
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.mode = _monitor_mode(_check_mode(mode, "ReduceLROnPlateau"), monitor)
        self.min_delta = min_delta
        self.cooldown = cooldown
        self.min_lr = min_lr
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.wait = 0

    def _improved(self, current):
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = _learning_rate(self.model)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is "
                f"not available. Available metrics are: {','.join(logs)}.",
                UserWarning, stacklevel=2,
            )
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = _learning_rate(self.model)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        _print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                               f"to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class TerminateOnNaN(Callback):
    """Stops training as soon as a batch's loss is NaN or infinite."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            _print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback made of the functions given for some hooks.

    Args:
        on_epoch_begin, on_epoch_end: `f(epoch, logs)`.
        on_train_begin, on_train_end: `f(logs)`.
        on_train_batch_begin, on_train_batch_end: `f(batch, logs)`.
        **kwargs: functions for any other hook (`on_batch_end=...`, `on_test_begin=...`).

    Raises:
        TypeError: for a keyword that is not a hook name, or a non-callable value.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        unknown = sorted(set(kwargs) - set(_HOOKS))
        if unknown:
            raise TypeError(f"LambdaCallback got unknown hook names. Received: {unknown}")
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback hooks must be callable. Received: {name}={fn!r}")
            setattr(self, name, fn)


class TensorBoard(Callback):
    """Writes TensorBoard event files with tensorboardX.

    Per-epoch scalars go to `log_dir/train` ("epoch_loss", "epoch_accuracy", ...,
    "epoch_learning_rate") and `log_dir/validation` (the `val_*` entries without the prefix),
    as Keras does. With `update_freq="batch"` (or an int N) the running batch logs are also
    written every N batches as "batch_<name>" against the global batch count;
    `histogram_freq=N` writes a histogram of every model weight each N epochs.

    Args:
        log_dir: directory of the event files.
        histogram_freq: epochs between weight histograms (0: none).
        update_freq: "epoch", "batch" or a number of batches.
        write_steps_per_second: also log the training speed per epoch.
        **kwargs: Keras's other arguments (write_graph, write_images, profile_batch,
            embeddings_freq, embeddings_metadata) are accepted and ignored.

    Raises:
        ImportError: if tensorboardX is not installed.
    """

    _IGNORED = ("write_graph", "write_images", "profile_batch", "embeddings_freq",
                "embeddings_metadata")

    def __init__(self, log_dir="logs", histogram_freq=0, update_freq="epoch",
                 write_steps_per_second=False, **kwargs):
        super().__init__()
        unknown = sorted(set(kwargs) - set(self._IGNORED))
        if unknown:
            raise TypeError(f"Unrecognized arguments for TensorBoard. Received: {unknown}")
        if importlib.util.find_spec("tensorboardX") is None:
            raise ImportError(
                "The TensorBoard callback needs tensorboardX: `pip install tensorboardX`."
            )
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool)
                                       or not isinstance(update_freq, int) or update_freq < 1):
            raise ValueError(
                "update_freq must be 'epoch', 'batch' or a positive integer. "
                f"Received: update_freq={update_freq!r}"
            )
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = histogram_freq
        self.update_freq = update_freq
        self.write_steps_per_second = write_steps_per_second
        self._writers = {}
        self._train_step = 0
        self._epoch_start = None
        self._epoch_steps = 0

    def _writer(self, name):
        if name not in self._writers:
            from tensorboardX import SummaryWriter

            self._writers[name] = SummaryWriter(os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_train_begin(self, logs=None):
        self._train_step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()
        self._epoch_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._train_step += 1
        self._epoch_steps += 1
        if self.update_freq != "epoch" and self._train_step % self.update_freq == 0:
            writer = self._writer("train")
            for name, value in _scalars(logs):
                writer.add_scalar(f"batch_{name}", value, self._train_step)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        validation = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "learning_rate"):
            train.setdefault("learning_rate", float(optimizer.learning_rate))
        if self.write_steps_per_second and self._epoch_start is not None:
            elapsed = time.time() - self._epoch_start
            train["steps_per_second"] = self._epoch_steps / elapsed if elapsed > 0 else 0.0
        for subdir, values in (("train", train), ("validation", validation)):
            if values:
                writer = self._writer(subdir)
                for name, value in _scalars(values):
                    writer.add_scalar(f"epoch_{name}", value, epoch)
                writer.flush()
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write_histograms(epoch)

    def _write_histograms(self, epoch):
        weights = getattr(self.model, "weights", None)
        if weights is None:
            return
        writer = self._writer("train")
        for index, weight in enumerate(weights):
            name = getattr(weight, "path", None) or f"weight_{index}"
            writer.add_histogram(name, np.asarray(getattr(weight, "value", weight)), epoch)
        writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _scalars(logs):
    for name, value in (logs or {}).items():
        if np.ndim(value) == 0 and isinstance(np.asarray(value).item(), (int, float)):
            yield name, float(value)

