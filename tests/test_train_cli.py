"""`fastconv train` end to end: outputs, pictures, bad input, bitwise resume, Ctrl-C."""
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

import fastconv
from fastconv.keras import backend
from fastconv.keras.datasets import _files
from fastconv.keras.models import load_model
from fastconv.train import checkpoint, cli

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
QUICK = ["--limit", "200", "--seed", "7", "--threads", "1", "--batch-size", "32"]


def train(*argv):
    return cli.main([str(a) for a in argv])


def model_weights(path):
    return load_model(path, compile=False).get_weights()


def checkpoint_state(directory):
    return checkpoint.read(directory)


def test_digits_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--epochs", 2, "--output", out, *QUICK) == 0
    printed = capsys.readouterr().out
    assert "Total params" in printed and "Epoch 2/2" in printed
    assert "Test loss:" in printed and "Test accuracy:" in printed
    for name in ("learning_curves.png", "filters.png", "confusion_matrix.png"):
        assert (out / name).read_bytes()[:8] == PNG
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [0, 1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    assert all(len(history[k]) == 2 for k in ("loss", "accuracy", "val_loss", "val_accuracy"))
    csv_lines = (out / "history.csv").read_text().splitlines()
    assert csv_lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss" and len(csv_lines) == 3
    model = load_model(out / "model.h5")
    assert model.name == "digits_cnn" and model.input_shape == (None, 8, 8, 1)
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["seed"] == 7 and 0 <= results["test_accuracy"] <= 1
    assert f"{results['test_accuracy']:.4f}" in printed
    state = checkpoint_state(out)
    assert state["epoch"] == 2 and state["history"] == {k: v for k, v in history.items() if k != "epoch"}
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("checkpoint.h5", "history.csv", "filters.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir() and not os.environ.get("FASTCONV_DATA"),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_slice_end_to_end(tmp_path, capsys):
    from fastconv.keras.datasets import fashion_mnist
    try:
        fashion_mnist.load_data()
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    out = tmp_path / "fmnist"
    assert train("--dataset", "fashion_mnist", "--epochs", 1, "--output", out, "--limit", 150, "--seed", 1,
                 "--validation-split", 0) == 0
    printed = capsys.readouterr().out
    assert "fmnist_2conv" in printed and "(None, 7, 7, 64)" in printed and "Test accuracy:" in printed
    history = json.loads((out / "history.json").read_text())
    assert set(history) == {"epoch", "loss", "accuracy"}
    assert (out / "confusion_matrix.png").read_bytes()[:8] == PNG
    assert load_model(out / "model.h5").output_shape == (None, 10)


def write_synthetic(root, dataset, n=40):
    """A tiny MNIST (mnist.npz) or CIFAR-10 (cifar-10-batches-py/) under `root`."""
    import pickle
    rng = np.random.default_rng(0)
    if dataset == "mnist":
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        np.savez(root / "mnist.npz", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
        return
    directory = root / "cifar-10-batches-py"
    directory.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(n // 5, 3072), dtype=np.uint8),
                 b"labels": [i % 10 for i in range(n // 5)]}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("dataset, model, slots", [
    ("mnist", None, {"momentum", "velocity"}),
    ("mnist", "lenet5", {"momentum", "velocity"}),
    ("cifar10", None, {"momentum"}),
], ids=["mnist_cnn", "lenet5", "cifar10_cnn"])
def test_file_datasets_and_their_default_models(tmp_path, monkeypatch, capsys, dataset, model, slots):
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path))
    write_synthetic(tmp_path, dataset)
    out = tmp_path / "out"
    argv = ["--dataset", dataset, "--epochs", 1, "--output", out, "--limit", 40, "--seed", 2]
    assert train(*argv, *(["--model", model] if model else [])) == 0
    printed = capsys.readouterr().out
    expected = model or {"mnist": "mnist_cnn", "cifar10": "cifar10_cnn"}[dataset]
    assert f'Model: "{expected}"' in printed
    state = checkpoint_state(out)
    assert all(set(s) == slots for s in state["slots"])  # Adam, or SGD with momentum for cifar10_cnn
    assert (out / "filters.png").read_bytes()[:8] == PNG
    if dataset == "cifar10":
        kernel = load_model(out / "model.h5").layers[0].get_weights()[0]
        assert kernel.shape == (3, 3, 3, 32)


def test_add_parser_plugs_into_a_fastconv_command(tmp_path, monkeypatch):
    import argparse
    parser = argparse.ArgumentParser(prog="fastconv")
    commands = parser.add_subparsers(dest="command", required=True)
    from fastconv.train import add_parser, run
    add_parser(commands)
    args = parser.parse_args(["train", "--epochs", "1", "--output", str(tmp_path), *QUICK])
    assert args.command == "train" and args.epochs == 1 and args.limit == 200
    assert run(args) == 0 and (tmp_path / "model.h5").is_file()


def test_global_settings_are_restored(tmp_path):
    before = fastconv.get_num_threads(), fastconv.get_default_algorithm()
    train("--epochs", 1, "--output", tmp_path, "--algorithm", "im2col", *QUICK)
    assert (fastconv.get_num_threads(), fastconv.get_default_algorithm()) == before


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train("--epochs", 3, "--output", straight, *QUICK) == 0
    assert train("--epochs", 1, "--output", resumed, *QUICK) == 0
    assert checkpoint_state(resumed)["epoch"] == 1
    assert train("--resume", resumed, "--epochs", 3) == 0
    a, b = model_weights(straight / "model.h5"), model_weights(resumed / "model.h5")
    assert len(a) == len(b) == 8
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    sa, sb = checkpoint_state(straight), checkpoint_state(resumed)
    assert sa["iterations"] == sb["iterations"] == 3 * 6  # 180 training samples / 32 -> 6 steps
    assert all(np.array_equal(sa["slots"][i][k], sb["slots"][i][k]) for i in range(len(sa["slots"]))
               for k in sa["slots"][i])
    assert sa["rng_state"] == sb["rng_state"] and sa["history"] == sb["history"]


def test_checkpoint_holds_optimizer_slots_and_rng_state(tmp_path):
    train("--epochs", 1, "--output", tmp_path, "--optimizer", "adam", *QUICK)
    state = checkpoint_state(tmp_path)
    assert state["config"]["optimizer"] == "adam" and state["optimizer"]["class_name"] == "Adam"
    assert all(set(s) == {"momentum", "velocity"} for s in state["slots"])
    assert any(np.any(s["velocity"]) for s in state["slots"])
    assert state["rng_state"]["bit_generator"] == type(backend.rng().bit_generator).__name__
    with h5py.File(tmp_path / "checkpoint.h5") as f:
        assert f.attrs["format"] == checkpoint.FORMAT and len(f["weights"]) == 8


def error_of(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        train(*argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["--dataset", "imagenet"], "choose from 'digits', 'mnist', 'fashion_mnist', 'cifar10'"),
    (["--model", "resnet"], "choose from 'mnist_cnn', 'fmnist_2conv', 'lenet5', 'cifar10_cnn', 'digits_cnn'"),
    (["--optimizer", "lion"], "choose from 'adam', 'sgd'"),
    (["--algorithm", "fft"], "choose from 'auto'"),
    (["--epochs", "0"], "must be a positive integer. Received: 0"),
    (["--batch-size", "x"], "must be a positive integer. Received: 'x'"),
    (["--validation-split", "1"], "must be a number in [0, 1)"),
    (["--learning-rate", "-1"], "must be a positive number"),
], ids=["dataset", "model", "optimizer", "algorithm", "epochs", "batch-size", "validation-split", "lr"])
def test_bad_options_are_refused_with_the_choices(capsys, argv, expected):
    assert expected in error_of(capsys, *argv)


def test_model_too_big_for_the_images(tmp_path, capsys):
    err = error_of(capsys, "--model", "lenet5", "--output", tmp_path, *QUICK)
    assert "model 'lenet5' needs images of at least 12x12 pixels. Received: images of 8x8" in err


def test_resume_without_checkpoint(tmp_path, capsys):
    err = error_of(capsys, "--resume", tmp_path)
    assert "no checkpoint to resume from" in err and str(tmp_path) in err


def test_resume_refuses_changed_options(tmp_path, capsys):
    train("--epochs", 1, "--output", tmp_path, *QUICK)
    err = error_of(capsys, "--resume", tmp_path, "--batch-size", "64")
    assert "only --epochs may change" in err and "--batch-size 64 (the run used 32)" in err


def test_unfinished_run_is_not_overwritten(tmp_path, capsys):
    train("--epochs", 1, "--output", tmp_path, *QUICK)
    state = checkpoint_state(tmp_path)
    state["config"]["epochs"] = 5  # pretend the run was stopped after epoch 1 of 5
    with h5py.File(tmp_path / "checkpoint.h5", "r+") as f:
        f.attrs["config"] = json.dumps(state["config"])
    err = error_of(capsys, "--epochs", 1, "--output", tmp_path, *QUICK)
    assert "unfinished run (1 of 5 epochs)" in err and f"--resume {tmp_path}" in err


def test_missing_dataset_lists_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(_files, "SYSTEM_ROOTS", ())
    err = error_of(capsys, "--dataset", "cifar10", "--output", tmp_path / "out", *QUICK)
    assert "CIFAR-10 was not found" in err and "data_batch_1" in err and str(tmp_path / "nothing") in err


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "file.txt"
    checkpoint.atomic_write_text(target, "old")

    def fail(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(target, fail)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["file.txt"]


RUN_WITH_CTRL_C = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "runpy.run_module('fastconv.train', run_name='__main__', alter_sys=True)")


def test_ctrl_c_saves_and_resume_matches_an_uninterrupted_run(tmp_path):
    out = tmp_path / "interrupted"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The run takes Ctrl-C as a terminal's foreground process does, even where this test's own
    # process ignores SIGINT: a background job of a non-interactive shell does, a child
    # inherits that, and Python then leaves it ignored (the run would stop only if the signal
    # came while a checkpoint was being written). -X faulthandler: if it does not stop,
    # SIGABRT makes it print every thread's stack.
    process = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-c", RUN_WITH_CTRL_C, "--epochs", "100000",
         "--output", str(out), *QUICK],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if checkpoint.read(out)["epoch"] >= 2:
                    break
            except (FileNotFoundError, ValueError, OSError):
                pass
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            stdout, stderr = process.communicate(timeout=60)
            pytest.fail("the run did not stop within 60 s of Ctrl-C; its threads:\n" + stderr[-6000:])
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == cli.EXIT_INTERRUPTED, stderr
    assert f"Resume with: fastconv train --resume {out}" in stderr
    assert "Traceback" not in stderr
    done = checkpoint.read(out)["epoch"]
    assert done >= 2 and not [p for p in os.listdir(out) if p.endswith(".tmp")]
    assert len(json.loads((out / "history.json").read_text())["loss"]) == done

    assert train("--resume", out, "--epochs", done + 1) == 0
    straight = tmp_path / "straight"
    assert train("--epochs", done + 1, "--output", straight, *QUICK) == 0
    a, b = model_weights(straight / "model.h5"), model_weights(out / "model.h5")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_help_lists_models_and_datasets(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train("--help")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--resume DIR" in text and "fmnist_2conv" in text and "fashion_mnist" in text
