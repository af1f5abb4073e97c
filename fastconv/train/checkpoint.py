"""Per-epoch training checkpoints, written atomically, from which a run resumes bit for bit.

`DIR/checkpoint.h5` (HDF5) holds everything the rest of a run depends on:
    attrs   format, format_version, config (JSON: the run's resolved options), epoch (epochs done),
            history (JSON: the epoch logs so far), rng_state (JSON: the bit_generator state of
            fastconv.keras.backend.rng(), which draws the shuffles and the dropout masks),
            optimizer (JSON: class and config), optimizer_iterations
    weights/<i>                       model.weights[i] (trainable and not), in the model's order
    optimizer_slots/<i>/<slot name>   the optimizer's state for model.trainable_weights[i]

Files are written to a temporary file in the same directory, flushed and fsync'ed, renamed over the
target with os.replace and the directory fsync'ed, so a crash or Ctrl-C leaves the previous
checkpoint or the new one, never a mixture. SIGINT is held back while a file is being written.
"""
import contextlib
import json
import os
import signal
import threading

import numpy as np

from .. import _atomic
from ..keras.models.saving import checksummed

FILENAME = "checkpoint.h5"
FORMAT = "fastconv.train.checkpoint"
FORMAT_VERSION = 1


@contextlib.contextmanager
def sigint_deferred():
    """Holds back SIGINT (Ctrl-C) inside the block; a Ctrl-C that arrived is raised after it.

    An ignored SIGINT stays ignored.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        # Signal handlers can only be set from the main thread; and a process that ignores
        # SIGINT (a background job, nohup) must go on ignoring it, even during a write.
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def atomic_write(path, write):
    """fastconv's atomic write, with Ctrl-C held back until the file is in place."""
    with sigint_deferred():
        _atomic.atomic_write(path, write)


def atomic_write_text(path, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    atomic_write(path, write)


# ---------------------------------------------------------------- save / load

def path_in(directory):
    return os.path.join(os.fspath(directory), FILENAME)


def save(directory, model, config, epoch, history):
    """Writes DIR/checkpoint.h5 for the state after `epoch` completed epochs."""
    import h5py
    from fastconv.keras import backend, optimizers
    iterations, slots = model.optimizer.get_state(model.trainable_weights)
    rng_state = backend.rng().bit_generator.state

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["config"] = json.dumps(config)
            f.attrs["epoch"] = int(epoch)
            f.attrs["history"] = json.dumps(history)
            f.attrs["rng_state"] = json.dumps(rng_state)
            f.attrs["optimizer"] = json.dumps(optimizers.serialize(model.optimizer))
            f.attrs["optimizer_iterations"] = int(iterations)
            weights = f.create_group("weights")
            for i, value in enumerate(model.get_weights()):
                weights.create_dataset(f"{i:04d}", data=value, **checksummed(value))
            group = f.create_group("optimizer_slots")
            for i, per_variable in enumerate(slots):
                sub = group.create_group(f"{i:04d}")
                for name, value in per_variable.items():
                    sub.create_dataset(name, data=value, **checksummed(value))

    atomic_write(path_in(directory), write)


def read(directory):
    """The checkpoint of DIR as a dict (config, epoch, history, rng_state, weights, iterations, slots).

    Raises:
        FileNotFoundError: when DIR holds no checkpoint.
        ValueError: when the file is not a fastconv training checkpoint.
    """
    import h5py
    path = path_in(directory)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no checkpoint to resume from: {path} does not exist. --resume takes the --output directory "
            f"of an earlier `fastconv train` run. Received: --resume {directory}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ValueError(f"{path} is not a fastconv training checkpoint (no '{FORMAT}' format attribute)")
            weights = f["weights"]
            slots = f["optimizer_slots"]
            return {
                "config": json.loads(f.attrs["config"]),
                "epoch": int(f.attrs["epoch"]),
                "history": json.loads(f.attrs["history"]),
                "rng_state": json.loads(f.attrs["rng_state"]),
                "optimizer": json.loads(f.attrs["optimizer"]),
                "iterations": int(f.attrs["optimizer_iterations"]),
                "weights": [np.asarray(weights[k][()]) for k in sorted(weights)],
                "slots": [{name: np.asarray(slots[k][name][()]) for name in slots[k]} for k in sorted(slots)],
            }
    except OSError as err:
        raise ValueError(f"{path} is not a readable checkpoint: {err}") from None


def restore(state, model):
    """Puts the weights, optimizer state and random generator state of `state` back in place."""
    from fastconv.keras import backend
    model.set_weights(state["weights"])
    model.optimizer.set_state(model.trainable_weights, state["iterations"], state["slots"])
    backend.rng().bit_generator.state = state["rng_state"]
