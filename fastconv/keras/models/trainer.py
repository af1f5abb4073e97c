"""compile / fit / evaluate / predict and the *_on_batch methods, on NumPy arrays.

One training step: forward (training=True, each layer caching what its backward needs), the compiled
loss and its gradient with respect to the outputs (`Loss.gradient`), backward through the graph
(layers add their variables' gradients), regularizer gradients added, then
`optimizer.apply_gradients`, then the metrics' `update_state`.
"""
import math

import numpy as np

from .. import backend


def _flatten(struct):
    if struct is None:
        return None
    if isinstance(struct, dict):
        return struct
    if isinstance(struct, (list, tuple)):
        return list(struct)
    return [struct]


def _check_positive_int(value, name, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


class Trainer:
    """Mixin of Model: everything that runs data through a compiled model."""

    def __init__(self):
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._loss_objects = None
        self._metric_specs = None
        self._metrics = None
        self._compile_config = None

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True, **kwargs):
        """Configure the model for training: an optimizer, a loss (per output) and metrics."""
        from .. import losses, optimizers
        for old in ("sample_weight_mode", "target_tensors", "distribute"):
            kwargs.pop(old, None)
        if kwargs:
            raise TypeError(f"Invalid keyword argument(s) in `compile()`: {tuple(kwargs)}. Received: {kwargs}")
        if weighted_metrics:
            raise ValueError(f"`weighted_metrics` is not supported. Received: weighted_metrics={weighted_metrics!r}")
        self.optimizer = optimizers.get(optimizer)
        self.loss = loss
        n_out = len(self.outputs) if self.built else None
        if loss is None:
            self._loss_objects = None
        elif isinstance(loss, dict):
            self._loss_objects = {k: losses.get(v) for k, v in loss.items()}
        elif isinstance(loss, (list, tuple)):
            self._loss_objects = [losses.get(v) for v in loss]
        else:
            self._loss_objects = losses.get(loss)
        self._loss_weights = loss_weights
        self._metric_specs = metrics
        self._metrics = None
        self._compile_config = {
            "loss": loss, "metrics": metrics, "loss_weights": loss_weights,
        }
        self.compiled = True
        self.stop_training = False
        if n_out is not None:
            self._resolve_losses()

    def _resolve_losses(self):
        """One (Loss, weight) per output, in output order."""
        names = self.output_names
        spec = self._loss_objects
        if spec is None:
            raise ValueError(
                "No loss to compute. Provide a `loss` argument in `compile()`. Received: loss=None"
            )
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - set(names))
            if unknown:
                raise ValueError(
                    f"Unknown entries in loss dictionary: {unknown}. Only expected the following keys: {names}"
                )
            per_output = [spec.get(n) for n in names]
        elif isinstance(spec, list):
            if len(spec) != len(names):
                raise ValueError(
                    f"When there is more than one output, `loss` as a list must have one entry per output "
                    f"({len(names)}). Received: loss={self.loss!r}"
                )
            per_output = spec
        else:
            per_output = [spec] * len(names)
        weights = self._loss_weights
        if weights is None:
            weights = [1.0] * len(names)
        elif isinstance(weights, dict):
            weights = [float(weights.get(n, 1.0)) for n in names]
        else:
            weights = [float(w) for w in _flatten(weights)]
            if len(weights) != len(names):
                raise ValueError(
                    f"`loss_weights` must have one entry per output ({len(names)}). Received: "
                    f"loss_weights={self._loss_weights!r}"
                )
        self._losses_resolved = list(zip(per_output, weights))

    def _resolve_metrics(self, ys, outputs):
        from .. import metrics as metrics_module
        names = self.output_names
        spec = self._metric_specs
        resolved = []  # (output index, Metric, log name)
        if spec:
            if isinstance(spec, dict):
                per_output = {n: _flatten(spec.get(n)) or [] for n in names}
                unknown = sorted(set(spec) - set(names))
                if unknown:
                    raise ValueError(
                        f"Unknown entries in metrics dictionary: {unknown}. Only expected the following keys: "
                        f"{names}"
                    )
            elif len(names) > 1 and isinstance(spec, (list, tuple)) and len(spec) == len(names) and all(
                    isinstance(s, (list, tuple)) for s in spec):
                per_output = {n: list(s) for n, s in zip(names, spec)}
            else:
                per_output = {n: list(_flatten(spec)) for n in names}
            for i, n in enumerate(names):
                for ident in per_output[n]:
                    loss = self._losses_resolved[i][0]
                    metric = metrics_module.get(ident, loss=loss, y_true_shape=np.shape(ys[i]),
                                                y_pred_shape=outputs[i])
                    log = metric.name if len(names) == 1 else f"{n}_{metric.name}"
                    resolved.append((i, metric, log))
        self._metrics = resolved

    @property
    def metrics_names(self):
        names = ["loss"]
        if len(getattr(self, "outputs", [])) > 1 and self.compiled:
            names += [f"{n}_loss" for n in self.output_names]
        if self._metrics:
            names += [log for _, _, log in self._metrics]
        return names

    def _assert_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"You must call `compile()` before using the model for {what}.")

    # ------------------------------------------------------------------ data
    def _standardize_x(self, x, build=True):
        if x is None:
            raise ValueError("Unexpected value for `x`: None. Expected NumPy array(s) of input data.")
        if build and not self.built:
            self._build_from_arrays(np.asarray(x if not isinstance(x, (list, tuple)) else x[0]))
        if isinstance(x, dict):
            missing = [n for n in self.input_names if n not in x]
            if missing:
                raise ValueError(f"Missing data for input(s) {missing}. Received keys: {sorted(x)}")
            arrays = [x[n] for n in self.input_names]
        elif isinstance(x, (list, tuple)) and len(self.inputs) > 1:
            arrays = list(x)
        else:
            arrays = [x]
        dtype = self.dtype
        out = []
        for a in arrays:
            a = np.asarray(a)
            if a.dtype.kind not in "fiub":
                raise ValueError(f"Input data must be numeric. Received: x.dtype={a.dtype}")
            out.append(np.asarray(a, dtype=dtype))
        self._check_input_arrays(out)
        return out

    def _standardize_y(self, y):
        if y is None:
            return None
        names = self.output_names
        if isinstance(y, dict):
            missing = [n for n in names if n not in y]
            if missing:
                raise ValueError(f"Missing targets for output(s) {missing}. Received keys: {sorted(y)}")
            arrays = [y[n] for n in names]
        elif isinstance(y, (list, tuple)) and len(names) > 1:
            arrays = list(y)
            if len(arrays) != len(names):
                raise ValueError(
                    f"The model has {len(names)} outputs, but `y` holds {len(arrays)} arrays."
                )
        else:
            arrays = [y]
        out = []
        for a in arrays:
            a = np.asarray(a)
            if a.dtype.kind == "f" and a.dtype != np.dtype(self.dtype):
                a = a.astype(self.dtype)
            if a.ndim == 0:
                raise ValueError(f"Targets must have a batch dimension. Received: y.shape={a.shape}")
            out.append(a)
        return out

    @staticmethod
    def _check_cardinality(xs, ys=None, sw=None):
        sizes = {"x": [len(a) for a in xs]}
        if ys is not None:
            sizes["y"] = [len(a) for a in ys]
        if sw is not None:
            sizes["sample_weight"] = [len(sw)]
        flat = {s for v in sizes.values() for s in v}
        if len(flat) > 1:
            detail = "\n".join(f"'{k}' sizes: {', '.join(map(str, v))}" for k, v in sizes.items())
            raise ValueError(
                "Data cardinality is ambiguous. Make sure all arrays contain the same number of samples.\n"
                + detail
            )
        return flat.pop() if flat else 0

    @staticmethod
    def _require_samples(n, method):
        """Keras refuses to fit or evaluate on no data rather than report an empty result."""
        if n == 0:
            raise ValueError(f"Expected input data to be non-empty in `{method}()`. Received: 0 samples")

    def _sample_weights(self, ys, sample_weight, class_weight):
        sw = None
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=self.dtype)
            if sw.ndim == 2 and sw.shape[1] == 1:
                sw = sw[:, 0]
            if sw.ndim != 1:
                raise ValueError(
                    f"`sample_weight` must be a 1-D array of one weight per sample. Received: "
                    f"sample_weight.shape={sw.shape}"
                )
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise ValueError(f"`class_weight` must be a dict. Received: class_weight={class_weight!r}")
            if len(ys) > 1:
                raise ValueError("`class_weight` is only supported for Models with a single output.")
            y = ys[0]
            if y.ndim > 1 and y.shape[-1] > 1:
                classes = np.argmax(y, axis=-1)
            else:
                classes = np.round(y.reshape(len(y), -1)[:, 0]).astype(np.int64)
            missing = sorted(set(np.unique(classes).tolist()) - {int(k) for k in class_weight})
            if missing:
                raise ValueError(
                    f"`class_weight` has no entry for class(es) {missing} present in the data. Received: "
                    f"class_weight={class_weight}"
                )
            lookup = np.zeros(int(classes.max()) + 1 if classes.size else 1, dtype=self.dtype)
            for k, v in class_weight.items():
                if 0 <= int(k) < len(lookup):
                    lookup[int(k)] = v
            cw = lookup[classes]
            sw = cw if sw is None else sw * cw
        return sw

    # ------------------------------------------------------------------ one batch
    def _compute_loss(self, ys, outputs, sw, with_gradient):
        total, per_output, grads = 0.0, [], []
        for (loss_obj, weight), y, out in zip(self._losses_resolved, ys, outputs):
            if loss_obj is None:
                per_output.append(0.0)
                grads.append(None)
                continue
            value = float(loss_obj(y, out, sample_weight=sw))
            per_output.append(value)
            total += weight * value
            if with_gradient:
                g = np.asarray(loss_obj.gradient(y, out, sample_weight=sw), dtype=out.dtype)
                grads.append(g * out.dtype.type(weight) if weight != 1.0 else g)
        penalties = self.losses
        if penalties:
            total += float(sum(penalties))
        return total, per_output, grads

    def _train_batch(self, xs, ys, sw):
        self._zero_grads()
        outputs = self._forward(xs, training=True)
        if self._metrics is None:
            self._resolve_metrics(ys, [o.shape for o in outputs])
        total, per_output, grads = self._compute_loss(ys, outputs, sw, with_gradient=True)
        self._backward(grads)
        pairs = self._gradients()
        self._zero_grads()
        if pairs:
            self.optimizer.apply_gradients(pairs)
        self._update_metrics(ys, outputs, sw)
        return total, per_output

    def _test_batch(self, xs, ys, sw):
        outputs = self._forward(xs, training=False)
        if self._metrics is None:
            self._resolve_metrics(ys, [o.shape for o in outputs])
        total, per_output, _ = self._compute_loss(ys, outputs, sw, with_gradient=False)
        self._update_metrics(ys, outputs, sw)
        return total, per_output

    def _update_metrics(self, ys, outputs, sw):
        for i, metric, _ in self._metrics:
            metric.update_state(ys[i], outputs[i], sample_weight=sw)

    def _reset_metrics(self):
        for _, metric, _ in self._metrics or []:
            metric.reset_state()

    def _logs(self, loss_sum, per_output_sums, count):
        logs = {"loss": loss_sum / max(count, 1)}
        if len(self.outputs) > 1:
            for n, s in zip(self.output_names, per_output_sums):
                logs[f"{n}_loss"] = s / max(count, 1)
        for _, metric, log in self._metrics or []:
            logs[log] = float(metric.result())
        return logs

    # ------------------------------------------------------------------ fit
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1, **kwargs):
        """Train for `epochs` epochs over (x, y) in mini-batches; returns the History callback."""
        from .. import callbacks as callbacks_module
        if "nb_epoch" in kwargs:  # Keras 1
            epochs = kwargs.pop("nb_epoch")
        if kwargs:
            raise TypeError(f"Invalid keyword argument(s) in `fit()`: {tuple(kwargs)}. Received: {kwargs}")
        self._assert_compiled("training")
        batch_size = _check_positive_int(batch_size, "batch_size") or 32
        epochs = int(epochs)
        verbose = 1 if verbose == "auto" else int(verbose)
        if not 0 <= validation_split < 1:
            raise ValueError(
                f"`validation_split` must be in [0, 1). Received: validation_split={validation_split!r}"
            )
        if y is None:
            raise ValueError("`y` is required: fastconv trains on (x, y) arrays. Received: y=None")
        xs = self._standardize_x(x)
        self._resolve_losses()
        ys = self._standardize_y(y)
        sw = self._sample_weights(ys, sample_weight, class_weight)
        n = self._check_cardinality(xs, ys, sw)
        self._require_samples(n, "fit")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ValueError(
                    "`validation_data` should be a tuple `(x_val, y_val)` or `(x_val, y_val, val_sample_weights)`. "
                    f"Received: validation_data={type(validation_data)}"
                )
            val_sw = validation_data[2] if len(validation_data) == 3 else None
            val = (self._standardize_x(validation_data[0]), self._standardize_y(validation_data[1]), val_sw)
        elif validation_split:
            split_at = int(math.floor(n * (1.0 - validation_split)))
            if split_at == 0 or split_at == n:
                raise ValueError(
                    f"Training data contains {n} samples, which is not sufficient to split it into a "
                    f"validation and training set as specified by `validation_split={validation_split}`. "
                    "Either provide more data, or a different value for the `validation_split` argument."
                )
            val_x = [a[split_at:] for a in xs]
            val_y = [a[split_at:] for a in ys]
            val = (val_x, val_y, None if sw is None else sw[split_at:])
            xs, ys = [a[:split_at] for a in xs], [a[:split_at] for a in ys]
            sw = None if sw is None else sw[:split_at]
            n = split_at
        steps = max(math.ceil(n / batch_size), 1) if n else 0
        if steps_per_epoch is not None:
            steps = min(steps, _check_positive_int(steps_per_epoch, "steps_per_epoch"))
        callback_list = callbacks_module.CallbackList(
            callbacks, add_history=True, add_progbar=verbose != 0, model=self, verbose=verbose,
            epochs=epochs, steps=steps)
        self.stop_training = False
        callback_list.on_train_begin()
        logs = {}
        epoch_logs = {}
        for epoch in range(int(initial_epoch), epochs):
            self._reset_metrics()
            callback_list.on_epoch_begin(epoch)
            order = backend.rng().permutation(n) if shuffle else None
            loss_sum, per_sums, seen = 0.0, None, 0
            for step in range(steps):
                callback_list.on_train_batch_begin(step)
                lo, hi = step * batch_size, min((step + 1) * batch_size, n)
                if order is None:
                    bx, by = [a[lo:hi] for a in xs], [a[lo:hi] for a in ys]
                    bw = None if sw is None else sw[lo:hi]
                else:
                    idx = order[lo:hi]
                    bx, by = [a[idx] for a in xs], [a[idx] for a in ys]
                    bw = None if sw is None else sw[idx]
                loss, per_output = self._train_batch(bx, by, bw)
                size = hi - lo
                loss_sum += loss * size
                per_sums = [p * size for p in per_output] if per_sums is None else [
                    s + p * size for s, p in zip(per_sums, per_output)]
                seen += size
                logs = self._logs(loss_sum, per_sums or [], seen)
                callback_list.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_arrays(
                    val[0], val[1], val[2], validation_batch_size or batch_size, validation_steps)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        callback_list.on_train_end(logs=epoch_logs)
        history = next((cb for cb in getattr(callback_list, "callbacks", [])
                        if isinstance(cb, callbacks_module.History)), None)
        if history is not None:
            self.history = history
        return self.history

    # ------------------------------------------------------------------ evaluate
    def _evaluate_arrays(self, xs, ys, sample_weight, batch_size, steps=None, callback_list=None):
        """Logs of the compiled loss and metrics over standardized arrays (lists per input/output)."""
        sw = self._sample_weights(ys, sample_weight, None)
        n = self._check_cardinality(xs, ys, sw)
        if self._metrics is None:
            outputs_shapes = [t.shape for t in self.outputs]
            self._resolve_metrics(ys, outputs_shapes)
        self._reset_metrics()
        total_steps = math.ceil(n / batch_size)
        if steps is not None:
            total_steps = min(total_steps, steps)
        loss_sum, per_sums, seen = 0.0, [0.0] * len(self.outputs), 0
        logs = {}
        for step in range(total_steps):
            if callback_list is not None:
                callback_list.on_test_batch_begin(step)
            lo, hi = step * batch_size, min((step + 1) * batch_size, n)
            loss, per_output = self._test_batch([a[lo:hi] for a in xs], [a[lo:hi] for a in ys],
                                                None if sw is None else sw[lo:hi])
            size = hi - lo
            loss_sum += loss * size
            per_sums = [s + p * size for s, p in zip(per_sums, per_output)]
            seen += size
            logs = self._logs(loss_sum, per_sums, seen)
            if callback_list is not None:
                callback_list.on_test_batch_end(step, logs)
        return logs or self._logs(0.0, per_sums, 0)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """Loss and metrics on (x, y): a float, [loss, *metrics], or a dict with return_dict."""
        from .. import callbacks as callbacks_module
        if kwargs:
            raise TypeError(f"Invalid keyword argument(s) in `evaluate()`: {tuple(kwargs)}. Received: {kwargs}")
        self._assert_compiled("evaluation")
        if y is None:
            raise ValueError("`y` is required to evaluate. Received: y=None")
        batch_size = _check_positive_int(batch_size, "batch_size") or 32
        verbose = 1 if verbose == "auto" else int(verbose)
        xs = self._standardize_x(x)
        self._resolve_losses()
        ys = self._standardize_y(y)
        n = self._check_cardinality(xs, ys)
        self._require_samples(n, "evaluate")
        total_steps = math.ceil(n / batch_size) if steps is None else min(math.ceil(n / batch_size), steps)
        callback_list = callbacks_module.CallbackList(
            callbacks, add_history=False, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1,
            steps=total_steps)
        callback_list.on_test_begin()
        logs = self._evaluate_arrays(xs, ys, sample_weight, batch_size, steps, callback_list)
        callback_list.on_test_end(logs)
        if return_dict:
            return logs
        values = [logs[name] for name in self.metrics_names if name in logs]
        return values[0] if len(values) == 1 else values

    # ------------------------------------------------------------------ predict
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None, **kwargs):
        """Outputs for x, computed in batches (inference mode); a list for several outputs."""
        from .. import callbacks as callbacks_module
        if kwargs:
            raise TypeError(f"Invalid keyword argument(s) in `predict()`: {tuple(kwargs)}. Received: {kwargs}")
        batch_size = _check_positive_int(batch_size, "batch_size") or 32
        verbose = 1 if verbose == "auto" else int(verbose)
        xs = self._standardize_x(x)
        n = self._check_cardinality(xs)
        total_steps = math.ceil(n / batch_size) if steps is None else min(math.ceil(n / batch_size), steps)
        callback_list = callbacks_module.CallbackList(
            callbacks, add_history=False, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1,
            steps=total_steps)
        callback_list.on_predict_begin()
        chunks = None
        for step in range(total_steps):
            callback_list.on_predict_batch_begin(step)
            lo, hi = step * batch_size, min((step + 1) * batch_size, n)
            outs = self._forward([a[lo:hi] for a in xs], training=False)
            chunks = [[o] for o in outs] if chunks is None else [c + [o] for c, o in zip(chunks, outs)]
            callback_list.on_predict_batch_end(step, {"outputs": outs[0] if len(outs) == 1 else outs})
        callback_list.on_predict_end()
        if chunks is None:
            results = [np.zeros((0,) + tuple(t.shape[1:]), dtype=self.dtype) for t in self.outputs]
        else:
            results = [np.concatenate(c, axis=0) for c in chunks]
        return self._structure_outputs(results)

    def _structure_outputs(self, results):
        if self._output_dict_keys is not None:
            return dict(zip(self._output_dict_keys, results))
        return results[0] if len(results) == 1 and self._single_output else results

    # ------------------------------------------------------------------ on batch
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One gradient step on this batch; returns the loss (and metrics) of the batch."""
        self._assert_compiled("training")
        xs = self._standardize_x(x)
        self._resolve_losses()
        ys = self._standardize_y(y)
        sw = self._sample_weights(ys, sample_weight, class_weight)
        self._check_cardinality(xs, ys, sw)
        if self._metrics is not None:
            self._reset_metrics()
        loss, per_output = self._train_batch(xs, ys, sw)
        return self._batch_result(loss, per_output, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compiled("evaluation")
        xs = self._standardize_x(x)
        self._resolve_losses()
        ys = self._standardize_y(y)
        sw = self._sample_weights(ys, sample_weight, None)
        self._check_cardinality(xs, ys, sw)
        if self._metrics is not None:
            self._reset_metrics()
        loss, per_output = self._test_batch(xs, ys, sw)
        return self._batch_result(loss, per_output, return_dict)

    def predict_on_batch(self, x):
        xs = self._standardize_x(x)
        return self._structure_outputs(self._forward(xs, training=False))

    def _batch_result(self, loss, per_output, return_dict):
        logs = self._logs(loss, per_output, 1)
        if return_dict:
            return logs
        values = [logs[name] for name in self.metrics_names if name in logs]
        return values[0] if len(values) == 1 else values

    # ------------------------------------------------------------------ saving (see saving.py)
    def save(self, filepath, overwrite=True, include_optimizer=True, **kwargs):
        from .saving import save_model
        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer, **kwargs)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        from .saving import save_weights
        save_weights(self, filepath, overwrite=overwrite, **kwargs)

    def load_weights(self, filepath, skip_mismatch=False, by_name=False, **kwargs):
        from .saving import load_weights
        load_weights(self, filepath, skip_mismatch=skip_mismatch, by_name=by_name, **kwargs)

    def to_json(self, **kwargs):
        import json
        from .saving import model_config
        return json.dumps(model_config(self), **kwargs)
