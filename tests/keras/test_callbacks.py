"""fastconv.keras.callbacks, driven by a tiny fake model through the trainer's call sequence."""
import csv
import glob
import math
import os
import re
import struct

import numpy as np
import pytest

from fastconv.keras import callbacks as cb
from fastconv.keras import optimizers


class FakeModel:
    """What callbacks may use of a model: weights, saving, optimizer, stop_training."""

    def __init__(self, learning_rate=0.1):
        self.stop_training = False
        self.optimizer = optimizers.SGD(learning_rate)
        self._weights = [np.zeros(2)]
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self._weights]

    def set_weights(self, weights):
        self._weights = [np.array(w) for w in weights]

    def save(self, filepath):
        with open(filepath, "w") as f:
            f.write("model")
        self.saved.append(("model", filepath))

    def save_weights(self, filepath):
        with open(filepath, "w") as f:
            f.write("weights")
        self.saved.append(("weights", filepath))


def fit(model, callbacks, epoch_logs, steps=2, verbose=0, batch_logs=None):
    """The trainer's loop: epoch e sets the weights to [e, e] and ends with epoch_logs[e]."""
    callback_list = cb.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                    model=model, verbose=verbose, epochs=len(epoch_logs),
                                    steps=steps)
    callback_list.on_train_begin()
    logs = {}
    for epoch, logs in enumerate(epoch_logs):
        callback_list.on_epoch_begin(epoch)
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            model.set_weights([np.full(2, float(epoch))])
            step_logs = dict(batch_logs(epoch, step)) if batch_logs else {"loss": logs["loss"]}
            callback_list.on_train_batch_end(step, step_logs)
            if model.stop_training:
                break
        logs = dict(logs)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return callback_list


def losses_logs(values, key="val_loss"):
    return [{"loss": 1.0, key: v} for v in values]


# ------------------------------------------------------------------- CallbackList, History

class Recorder(cb.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_batch_end(self, batch, logs=None):  # reached through on_train_batch_end
        self.calls.append(f"batch_end {batch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch}")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_callback_list_order_params_and_default_callbacks():
    model, recorder = FakeModel(), Recorder()
    callback_list = fit(model, [recorder], losses_logs([1.0, 0.5]), steps=1)
    assert recorder.calls == ["train_begin", "epoch_begin 0", "batch_end 0", "epoch_end 0",
                              "epoch_begin 1", "batch_end 0", "epoch_end 1", "train_end"]
    assert recorder.model is model and recorder.params == {"verbose": 0, "epochs": 2, "steps": 1}
    assert [type(c) for c in callback_list.callbacks] == [Recorder, cb.History]
    assert model.history.history == {"loss": [1.0, 1.0], "val_loss": [1.0, 0.5]}
    assert model.history.epoch == [0, 1]


def test_callback_list_keeps_a_user_history_and_adds_progbar():
    history = cb.History()
    callback_list = cb.CallbackList([history], add_history=True, add_progbar=True,
                                    model=FakeModel(), verbose=1, epochs=1, steps=1)
    assert callback_list.callbacks[0] is history
    assert [type(c) for c in callback_list.callbacks] == [cb.History, cb.ProgbarLogger]


def test_callback_list_rejects_non_callbacks():
    with pytest.raises(TypeError, match="Received: callbacks="):
        cb.CallbackList([lambda: None])


# --------------------------------------------------------------------------- ProgbarLogger

def test_progbar_logger_in_fit_verbose_1(capsys):
    fit(FakeModel(), None, [{"loss": 0.5, "val_loss": 0.25}] * 2, steps=3, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert re.fullmatch(r"3/3 \[={30}\] - \d+s \S+/step - loss: 0\.5000 - val_loss: 0\.2500",
                        lines[1]), lines[1]
    assert len(lines) == 4


def test_progbar_logger_in_fit_verbose_2_prints_one_line_per_epoch(capsys):
    fit(FakeModel(), None, [{"loss": 0.5}] * 2, steps=3, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2"
    assert re.fullmatch(r"3/3 - \d+s - \S+/step - loss: 0\.5000", lines[1]), lines[1]
    assert len(lines) == 4


def test_progbar_logger_for_evaluate_and_predict(capsys):
    callback_list = cb.CallbackList(None, add_progbar=True, model=FakeModel(), verbose=1,
                                    epochs=1, steps=2)
    callback_list.on_test_begin()
    for step in range(2):
        callback_list.on_test_batch_end(step, {"loss": 0.75})
    callback_list.on_test_end({"loss": 0.75})
    callback_list.on_predict_begin()
    for step in range(2):
        callback_list.on_predict_batch_end(step, {"outputs": np.zeros((4, 2))})
    callback_list.on_predict_end()
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"2/2 \[={30}\] - \d+s \S+/step - loss: 0\.7500", lines[0]), lines
    assert re.fullmatch(r"2/2 \[={30}\] - \d+s \S+/step", lines[1]), lines


# --------------------------------------------------------------------------- EarlyStopping

def test_early_stopping_patience_and_restore_best_weights(capsys):
    model = FakeModel()
    stopper = cb.EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    callback_list = fit(model, [stopper], losses_logs([1.0, 0.8, 0.9, 0.85, 0.95, 0.1]))
    assert stopper.stopped_epoch == 3 and model.history.epoch == [0, 1, 2, 3]
    np.testing.assert_array_equal(model.get_weights()[0], [1.0, 1.0])  # epoch 1 was best
    assert "Epoch 4: early stopping" in capsys.readouterr().out
    assert callback_list.callbacks[0] is stopper


def test_early_stopping_min_delta_and_max_mode():
    model = FakeModel()
    stopper = cb.EarlyStopping(monitor="val_accuracy", min_delta=0.05, patience=1)
    fit(model, [stopper], losses_logs([0.5, 0.53, 0.7], key="val_accuracy"))
    assert stopper.stopped_epoch == 1  # +0.03 is not an improvement of at least 0.05


def test_early_stopping_baseline_and_start_from_epoch():
    stopper = cb.EarlyStopping(patience=2, baseline=0.5)
    fit(FakeModel(), [stopper], losses_logs([1.0, 1.1, 1.2, 1.3]))
    assert stopper.stopped_epoch == 1
    stopper = cb.EarlyStopping(patience=2)
    fit(FakeModel(), [stopper], losses_logs([1.0, 1.1, 1.2, 1.3]))
    assert stopper.stopped_epoch == 2
    stopper = cb.EarlyStopping(patience=1, start_from_epoch=2)
    fit(FakeModel(), [stopper], losses_logs([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert stopper.stopped_epoch == 3


def test_early_stopping_warns_when_monitor_is_missing():
    with pytest.warns(UserWarning, match="`val_loss` which is not available"):
        fit(FakeModel(), [cb.EarlyStopping()], [{"loss": 1.0}])


def test_early_stopping_rejects_unknown_mode():
    with pytest.raises(ValueError, match="Received: mode='minimum'"):
        cb.EarlyStopping(mode="minimum")


# ------------------------------------------------------------------------- ModelCheckpoint

def test_model_checkpoint_formats_names_and_saves_every_epoch(tmp_path):
    model = FakeModel()
    path = str(tmp_path / "ckpt" / "model.{epoch:02d}-{val_loss:.2f}.h5")
    fit(model, [cb.ModelCheckpoint(path)], losses_logs([0.5, 0.25]))
    assert [os.path.basename(p) for _, p in model.saved] == ["model.01-0.50.h5",
                                                            "model.02-0.25.h5"]
    assert all(kind == "model" for kind, _ in model.saved)


def test_model_checkpoint_save_best_only_weights(tmp_path, capsys):
    model = FakeModel()
    path = str(tmp_path / "w{epoch}.weights.h5")
    checkpoint = cb.ModelCheckpoint(path, monitor="val_acc", save_best_only=True,
                                    save_weights_only=True, verbose=1)
    fit(model, [checkpoint], losses_logs([0.5, 0.4, 0.7], key="val_acc"))
    assert model.saved == [("weights", str(tmp_path / "w1.weights.h5")),
                           ("weights", str(tmp_path / "w3.weights.h5"))]
    out = capsys.readouterr().out
    assert "Epoch 2: val_acc did not improve from 0.50000" in out
    assert "Epoch 3: val_acc improved from 0.50000 to 0.70000, saving model to" in out


def test_model_checkpoint_every_n_batches_and_threshold(tmp_path):
    model = FakeModel()
    path = str(tmp_path / "b{epoch}-{batch}.keras")
    fit(model, [cb.ModelCheckpoint(path, save_freq=3)], losses_logs([1.0, 1.0]), steps=2)
    assert [os.path.basename(p) for _, p in model.saved] == ["b2-1.keras"]
    model = FakeModel()
    best = cb.ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True,
                              initial_value_threshold=0.3)
    fit(model, [best], losses_logs([0.5, 0.2]))
    assert len(model.saved) == 1


def test_model_checkpoint_errors(tmp_path):
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        fit(FakeModel(), [cb.ModelCheckpoint(str(tmp_path / "{val_acc}.h5"))], [{"loss": 1.0}])
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        fit(FakeModel(), [cb.ModelCheckpoint(str(tmp_path / "m.h5"), save_best_only=True)],
            [{"loss": 1.0}])
    with pytest.raises(ValueError, match="Received: save_freq=0"):
        cb.ModelCheckpoint("m.h5", save_freq=0)
    with pytest.raises(ValueError, match="Received: mode='best'"):
        cb.ModelCheckpoint("m.h5", mode="best")


# ------------------------------------------------------------------------------ CSVLogger

def test_csv_logger_writes_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    fit(FakeModel(), [cb.CSVLogger(path)], [{"loss": 0.5, "acc": 0.25}, {"loss": 0.4}])
    assert path.read_text().splitlines() == ["epoch,acc,loss", "0,0.25,0.5", "1,NA,0.4"]
    fit(FakeModel(), [cb.CSVLogger(path, separator=";", append=True)],
        [{"loss": 0.3, "acc": 0.5}])
    assert path.read_text().splitlines()[-1] == "0;0.5;0.3"
    assert len(path.read_text().splitlines()) == 4  # no second header
    with open(path) as f:
        assert next(csv.reader(f)) == ["epoch", "acc", "loss"]


# ------------------------------------------------------------ learning-rate callbacks

def test_learning_rate_scheduler_two_and_one_argument_schedules(capsys):
    model = FakeModel(learning_rate=0.1)
    history = fit(model, [cb.LearningRateScheduler(lambda epoch, lr: lr * 0.5, verbose=1)],
                  [{"loss": 1.0}] * 3).callbacks[-1]
    assert model.optimizer.learning_rate == pytest.approx(0.0125)
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.025, 0.0125])
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.05." in capsys.readouterr().out
    model = FakeModel()
    fit(model, [cb.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))], [{"loss": 1}] * 2)
    assert model.optimizer.learning_rate == pytest.approx(0.02)


def test_learning_rate_scheduler_needs_a_float():
    with pytest.raises(ValueError, match="should be a float. Received: learning_rate='x'"):
        fit(FakeModel(), [cb.LearningRateScheduler(lambda epoch, lr: "x")], [{"loss": 1.0}])
    with pytest.raises(TypeError, match="Received: schedule=3"):
        cb.LearningRateScheduler(3)


def test_reduce_lr_on_plateau_with_cooldown_and_min_lr():
    model = FakeModel(learning_rate=1.0)
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1, min_lr=0.3)
    history = fit(model, [reducer], losses_logs([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])).callbacks[-1]
    # Logged before the epoch's decision (as Keras): epoch 1 reduces to 0.5; epoch 2 ends its
    # one-epoch cooldown then waits again and reduces to max(0.25, min_lr) = 0.3; then floored.
    assert history.history["learning_rate"] == pytest.approx([1.0, 1.0, 0.5, 0.3, 0.3, 0.3])
    assert model.optimizer.learning_rate == pytest.approx(0.3)


def test_reduce_lr_on_plateau_arguments():
    with pytest.raises(ValueError, match="Received: factor=1.0"):
        cb.ReduceLROnPlateau(factor=1.0)
    with pytest.warns(UserWarning, match="use `min_delta`"):
        assert cb.ReduceLROnPlateau(epsilon=0.01).min_delta == 0.01
    with pytest.raises(TypeError, match="Received: {'patiense': 3}"):
        cb.ReduceLROnPlateau(patiense=3)
    reducer = cb.ReduceLROnPlateau(monitor="val_accuracy")
    assert reducer.mode == "max"


# --------------------------------------------------------------- TerminateOnNaN, Lambda

def test_terminate_on_nan_stops_at_the_bad_batch(capsys):
    model = FakeModel()
    logs = [{"loss": 1.0}, {"loss": 1.0}, {"loss": 1.0}]
    fit(model, [cb.TerminateOnNaN()], logs, steps=3,
        batch_logs=lambda epoch, step: {"loss": math.nan if (epoch, step) == (1, 1) else 1.0})
    assert model.stop_training and model.history.epoch == [0, 1]
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    model = FakeModel()
    fit(model, [cb.TerminateOnNaN()], logs)
    assert not model.stop_training


def test_lambda_callback():
    seen = []
    callback = cb.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, logs["loss"])),
                                 on_train_end=lambda logs: seen.append("end"),
                                 on_batch_end=lambda batch, logs: seen.append(batch))
    fit(FakeModel(), [callback], [{"loss": 0.5}], steps=2)
    assert seen == [0, 1, (0, 0.5), "end"]
    with pytest.raises(TypeError, match="Received: \\['on_epoch_ends'\\]"):
        cb.LambdaCallback(on_epoch_ends=print)
    with pytest.raises(TypeError, match="Received: on_epoch_end=1"):
        cb.LambdaCallback(on_epoch_end=1)


# ---------------------------------------------------------------------------- TensorBoard

def read_scalars(directory):
    """{tag: [(step, value)]} from the TFRecord event files, checking every record's CRC."""
    from tensorboardX.proto import event_pb2
    from tensorboardX.record_writer import masked_crc32c

    scalars = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            header = data[offset:offset + 8]
            (length,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[offset + 8:offset + 12])[0] == masked_crc32c(header)
            record = data[offset + 12:offset + 12 + length]
            (crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
            assert crc == masked_crc32c(record)
            offset += 16 + length
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_writes_train_and_validation_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    logs = [{"loss": 0.5, "accuracy": 0.75, "val_loss": 0.625},
            {"loss": 0.25, "accuracy": 0.875, "val_loss": 0.5}]
    fit(FakeModel(learning_rate=0.125), [cb.TensorBoard(log_dir=tmp_path, update_freq="batch")],
        logs, steps=2)
    train = read_scalars(tmp_path / "train")
    validation = read_scalars(tmp_path / "validation")
    assert train["epoch_loss"] == [(0, 0.5), (1, 0.25)]
    assert train["epoch_accuracy"] == [(0, 0.75), (1, 0.875)]
    assert train["epoch_learning_rate"] == [(0, 0.125), (1, 0.125)]
    assert [step for step, _ in train["batch_loss"]] == [1, 2, 3, 4]
    assert validation == {"epoch_loss": [(0, 0.625), (1, 0.5)]}


def test_tensorboard_files_are_read_by_tensorboard(tmp_path):
    pytest.importorskip("tensorboardX")
    accumulator_module = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    fit(FakeModel(), [cb.TensorBoard(log_dir=str(tmp_path))],
        [{"loss": 0.5, "val_loss": 0.75}, {"loss": 0.25, "val_loss": 0.5}])
    accumulator = accumulator_module.EventAccumulator(str(tmp_path / "validation"))
    accumulator.Reload()
    events = accumulator.Scalars("epoch_loss")
    assert [(e.step, e.value) for e in events] == [(0, 0.75), (1, 0.5)]


def test_tensorboard_arguments():
    pytest.importorskip("tensorboardX")
    with pytest.raises(ValueError, match="Received: update_freq='step'"):
        cb.TensorBoard(update_freq="step")
    with pytest.raises(TypeError, match="Received: \\['log_dirr'\\]"):
        cb.TensorBoard(log_dirr="x")
    cb.TensorBoard(write_graph=True, profile_batch=0)  # Keras's other arguments are accepted
