"""Crash-safe training: SIGKILL mid-epoch then --resume is bitwise an uninterrupted run;
damaged model and checkpoint files give clear errors; loading never runs code from a file."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from fastconv.keras.models import load_model  # noqa: E402
from fastconv.train import checkpoint, cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--limit", "200", "--seed", "7", "--threads", "1", "--batch-size", "32"]


def train(*argv):
    return cli.main([str(a) for a in argv])


def weights(path):
    return load_model(path, compile=False).get_weights()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert train("--epochs", 1, "--output", out, *QUICK) == 0
    return out


@pytest.mark.parametrize("delay", [0.0, 0.13, 0.37])
def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path, delay):
    """Kill at a few offsets after a checkpoint (mid-epoch, or mid-write), resume, compare bits."""
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, "-m", "fastconv.train", "--epochs", "100000", "--output", str(out), *QUICK],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if checkpoint.read(out)["epoch"] >= 1:
                    break
            except (FileNotFoundError, ValueError, OSError, KeyError):
                pass
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    done = checkpoint.read(out)["epoch"]  # the last complete checkpoint survives the kill
    assert done >= 1
    assert train("--resume", out, "--epochs", done + 1) == 0
    straight = tmp_path / "straight"
    assert train("--epochs", done + 1, "--output", straight, *QUICK) == 0
    a, b = weights(straight / "model.h5"), weights(out / "model.h5")
    assert len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))
    assert json.loads((out / "history.json").read_text()) == json.loads((straight / "history.json").read_text())


def _damaged(src, dst, how):
    data = bytearray(Path(src).read_bytes())
    if how == "truncated_half":
        data = data[: len(data) // 2]
    elif how == "truncated_header":
        data = data[:100]
    elif how == "empty":
        data = b""
    elif how == "zeroed_middle":
        mid = len(data) // 2
        data[mid: mid + 4096] = bytes(4096)
    elif how == "garbage":
        data = bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8))
    Path(dst).write_bytes(bytes(data))
    return dst


# "zeroed_middle" damages weight bytes only: the datasets' Fletcher-32 checksums catch it.
DAMAGE = ["truncated_half", "truncated_header", "empty", "garbage", "zeroed_middle"]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_model_file_gives_clear_error(finished_run, tmp_path, how):
    path = _damaged(finished_run / "model.h5", tmp_path / "model.h5", how)
    try:
        model = load_model(path, compile=False)
    except (ValueError, OSError) as err:
        assert str(path) in str(err) or "file" in str(err).lower(), err
        return
    # Loading damaged bytes without an error is only fine if every weight came back exact.
    for got, want in zip(model.get_weights(), weights(finished_run / "model.h5")):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_checkpoint_gives_clear_error(finished_run, tmp_path, how):
    src = checkpoint.path_in(finished_run)
    run = tmp_path / "run"
    run.mkdir()
    _damaged(src, checkpoint.path_in(run), how)
    try:
        state = checkpoint.read(run)
    except ValueError as err:
        assert "checkpoint" in str(err), err
        return
    want = checkpoint.read(finished_run)
    for got, exp in zip(state["weights"], want["weights"]):
        np.testing.assert_array_equal(got, exp)
    for got, exp in zip(state["slots"], want["slots"]):
        for name in exp:
            np.testing.assert_array_equal(got[name], exp[name])


MALICIOUS_CLASSES = ["os.system", "builtins.eval", "subprocess.Popen", "__import__", "Lambda"]


@pytest.mark.parametrize("class_name", MALICIOUS_CLASSES)
def test_loading_never_executes_code(finished_run, tmp_path, class_name):
    """A config naming a callable (or a Lambda with code) is refused; nothing is imported or run."""
    path = tmp_path / "evil.h5"
    path.write_bytes((finished_run / "model.h5").read_bytes())
    marker = tmp_path / "pwned"
    with h5py.File(path, "r+") as f:
        key = next(k for k in f.attrs if "config" in k)
        config = json.loads(f.attrs[key])
        layers = config["config"]["layers"]
        layers[1] = {"class_name": class_name, "module": "os",
                     "config": {"name": "evil", "command": f"touch {marker}", "function": f"touch {marker}",
                                "args": [f"touch {marker}"]}}
        f.attrs[key] = json.dumps(config)
    with pytest.raises((ValueError, TypeError)):
        load_model(path, compile=False)
    assert not marker.exists()


def test_pickled_payload_is_not_unpickled(finished_run, tmp_path):
    """An object array (pickle) stored in place of a weight is refused, never unpickled."""
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.h5"
    path.write_bytes((finished_run / "model.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        target = names[0]
        del f[target]
        f.create_dataset(target, data=np.void(pickle.dumps(Boom())))
    with pytest.raises((ValueError, TypeError, OSError, KeyError)):
        load_model(path, compile=False)
    assert not (tmp_path / "pwned").exists()


def _write_then_signal(tmp):
    with open(tmp, "w") as fh:
        fh.write("complete")
    os.kill(os.getpid(), signal.SIGINT)     # Ctrl-C in the middle of a write


@pytest.fixture
def sigint_handler():
    """Restores the test process's SIGINT handler, whatever a test sets."""
    previous = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_write_is_raised_once_the_file_is_in_place(tmp_path, sigint_handler):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    path = tmp_path / "state.txt"
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, _write_then_signal)
    assert path.read_text() == "complete"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_ctrl_c_stays_ignored_during_a_write(tmp_path, sigint_handler):
    # A background job or a nohup'ed run ignores SIGINT; writing a checkpoint must not undo that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path = tmp_path / "state.txt"
    checkpoint.atomic_write(path, _write_then_signal)
    assert path.read_text() == "complete"
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
