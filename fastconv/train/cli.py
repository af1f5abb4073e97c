"""`fastconv train`: train a named CNN on a dataset, with progress, pictures and resumable checkpoints.

    fastconv train                                     # digits (no download needed), 10 epochs
    fastconv train --dataset fashion_mnist --epochs 5 --output runs/fmnist
    fastconv train --resume runs/fmnist --epochs 8     # continue, bit for bit, to 8 epochs

It prints the model summary, Keras's progress bar and the test loss and accuracy, and writes to
--output: model.h5, history.csv, history.json, learning_curves.png, filters.png,
confusion_matrix.png, and checkpoint.h5 after every epoch (see fastconv.train.checkpoint).
Ctrl-C stops at once; the last epoch's checkpoint stays, and `--resume DIR` continues from it.
"""
import argparse
import csv
import io
import json
import os
import sys

import numpy as np

from . import architectures, checkpoint

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
DEFAULTS = {"dataset": "digits", "epochs": 10, "batch_size": 32, "validation_split": 0.1, "algorithm": "auto"}
# Options fixed by the run being resumed; --resume accepts only --epochs (and the same values).
_FIXED_BY_RUN = ("dataset", "model", "batch_size", "optimizer", "learning_rate", "validation_split",
                 "algorithm", "threads", "seed", "limit")
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad option or input: printed as `fastconv train: error: ...`, exit status 2."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer. Received: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer. Received: {text}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number. Received: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number. Received: {text}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1). Received: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1). Received: {text}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer. Received: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer. Received: {text}")
    return value


def _algorithms():
    import fastconv
    return ["auto"] + fastconv.list_algorithms()


def add_arguments(parser):
    """Adds the options of `fastconv train` to `parser`."""
    models = ", ".join(f"{name} ({arch.description})" for name, arch in architectures.ARCHITECTURES.items())
    defaults = ", ".join(f"{d}: {m}" for d, m in architectures.DEFAULT_FOR_DATASET.items())
    parser.add_argument("--dataset", choices=DATASETS,
                        help="digits (scikit-learn's 8x8 digits, built in), mnist, fashion_mnist or cifar10 "
                             "(read from local files, see fastconv.keras.datasets). Default: digits")
    parser.add_argument("--model", choices=list(architectures.ARCHITECTURES), metavar="NAME",
                        help=f"the architecture: {models}. Default per dataset: {defaults}")
    parser.add_argument("--epochs", type=_positive_int, help=f"epochs in all (default {DEFAULTS['epochs']}); "
                                                             "with --resume, the new total")
    parser.add_argument("--batch-size", type=_positive_int, help=f"default {DEFAULTS['batch_size']}")
    parser.add_argument("--optimizer", choices=architectures.OPTIMIZERS,
                        help="default: the model's (adam; sgd with momentum 0.9 for cifar10_cnn)")
    parser.add_argument("--learning-rate", type=_positive_float, help="default: the model's (0.001; 0.01 with sgd)")
    parser.add_argument("--validation-split", type=_fraction,
                        help=f"fraction of the training data held out to validate each epoch "
                             f"(default {DEFAULTS['validation_split']})")
    parser.add_argument("--algorithm", choices=_algorithms(), help="the convolution algorithm (default auto)")
    parser.add_argument("--threads", type=_positive_int, help="threads for the kernels (default: all cores)")
    parser.add_argument("--seed", type=_seed, help="random seed (default: a fresh one, printed and recorded)")
    parser.add_argument("--limit", type=_positive_int, metavar="N",
                        help="train on the first N training samples (and test on at most N test samples)")
    parser.add_argument("--output", metavar="DIR", help="where to write everything (default runs/DATASET_MODEL)")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run whose --output was DIR from its last checkpoint")
    return parser


def add_parser(subparsers):
    """Adds `train` to the `fastconv` command's subparsers; `run(args)` executes it."""
    parser = subparsers.add_parser("train", help="train a CNN on a dataset (progress, pictures, checkpoints)",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_arguments(parser)


def main(argv=None):
    """`fastconv train` on its own: parses `argv` and returns the exit status of `run`."""
    parser = argparse.ArgumentParser(prog="fastconv train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args):
    """Executes `fastconv train` for parsed `args`; returns the exit status (0, or 130 after Ctrl-C).

    Raises:
        SystemExit: for bad input, with the message (`fastconv train: error: ...`) and status 2.
    """
    try:
        if args.resume:
            state = checkpoint.read(args.resume)
            config, output = _resume_config(args, state)
        else:
            state = None
            config = _new_config(args)
            output = args.output or os.path.join("runs", f"{config['dataset']}_{config['model']}")
            _check_output(output)
        return _train(config, output, state)
    except (UsageError, FileNotFoundError) as err:
        print(f"fastconv train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as err:
        print(f"fastconv train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


# ---------------------------------------------------------------- configuration

def _new_config(args):
    import fastconv
    dataset = args.dataset or DEFAULTS["dataset"]
    model = args.model or architectures.DEFAULT_FOR_DATASET[dataset]
    arch = architectures.ARCHITECTURES[model]
    optimizer = args.optimizer or arch.optimizer
    if args.learning_rate is not None:
        learning_rate = args.learning_rate
    elif optimizer == arch.optimizer:
        learning_rate = arch.learning_rate
    else:
        learning_rate = 0.01 if optimizer == "sgd" else 0.001
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    return {
        "dataset": dataset,
        "model": model,
        "epochs": args.epochs or DEFAULTS["epochs"],
        "batch_size": args.batch_size or DEFAULTS["batch_size"],
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "validation_split": DEFAULTS["validation_split"] if args.validation_split is None else args.validation_split,
        "algorithm": args.algorithm or DEFAULTS["algorithm"],
        "threads": args.threads or fastconv.get_num_threads(),
        "seed": seed,
        "limit": args.limit,
    }


def _resume_config(args, state):
    config = dict(state["config"])
    conflicts = [f"--{key.replace('_', '-')} {getattr(args, key)} (the run used {config[key]})"
                 for key in _FIXED_BY_RUN
                 if getattr(args, key) is not None and getattr(args, key) != config[key]]
    if args.output and os.path.abspath(args.output) != os.path.abspath(args.resume):
        conflicts.append(f"--output {args.output} (a resumed run writes to its own directory, {args.resume})")
    if conflicts:
        raise UsageError(
            "--resume continues a run with the options it was started with; only --epochs may change. "
            f"Received: {'; '.join(conflicts)}")
    if args.epochs:
        config["epochs"] = args.epochs
    return config, args.resume


def _check_output(output):
    """Refuses to start over a run that has not finished (it could still be resumed)."""
    if not os.path.isfile(checkpoint.path_in(output)):
        return
    try:
        state = checkpoint.read(output)
    except ValueError:
        return
    if state["epoch"] < state["config"]["epochs"]:
        raise UsageError(
            f"{output} holds an unfinished run ({state['epoch']} of {state['config']['epochs']} epochs). "
            f"Continue it with `fastconv train --resume {output}`, or choose another --output.")


# ---------------------------------------------------------------- data

def load_dataset(name, limit=None):
    """(x_train, y_train, x_test, y_test, class_names): x float32 in [0, 1], (N, H, W, C); y int64 (N,)."""
    from fastconv.keras import datasets
    module = getattr(datasets, name)
    (x_train, y_train), (x_test, y_test) = module.load_data()
    if limit:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]

    def images(x):
        x = x.astype(np.float32) / np.float32(255)
        return x[..., np.newaxis] if x.ndim == 3 else x

    names = getattr(module, "CLASS_NAMES", None) or [str(i) for i in range(10)]
    return (images(x_train), y_train.reshape(-1).astype(np.int64), images(x_test),
            y_test.reshape(-1).astype(np.int64), list(names))


# ---------------------------------------------------------------- history files

def _history_rows(history):
    keys = sorted(history)
    count = len(history.get("loss", []))
    return keys, [[epoch] + [history[k][epoch] if epoch < len(history[k]) else "" for k in keys]
                  for epoch in range(count)]


def write_history(output, history):
    """history.json ({"epoch": [0, 1, ...], "loss": [...], ...}) and history.csv (Keras's CSVLogger layout)."""
    keys, rows = _history_rows(history)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch"] + keys)
    writer.writerows(rows)
    checkpoint.atomic_write_text(os.path.join(output, "history.csv"), buffer.getvalue())
    document = {"epoch": [row[0] for row in rows], **history}
    checkpoint.atomic_write_text(os.path.join(output, "history.json"), json.dumps(document, indent=1) + "\n")


# ---------------------------------------------------------------- training

def _checkpointer(output, model, config, history):
    from fastconv.keras.callbacks import Callback

    class Checkpointer(Callback):
        """After each epoch: history += logs; write checkpoint.h5, history.csv and history.json."""

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                history.setdefault(key, []).append(float(value))
            checkpoint.save(output, model, config, epoch + 1, history)
            write_history(output, history)

    return Checkpointer()


def _train(config, output, state):
    import fastconv
    from fastconv.keras import backend, utils

    previous = fastconv.get_num_threads(), fastconv.get_default_algorithm()
    try:
        fastconv.set_num_threads(config["threads"])
        fastconv.set_default_algorithm(config["algorithm"])
        return _train_configured(config, output, state, backend, utils)
    finally:
        fastconv.set_num_threads(previous[0])
        fastconv.set_default_algorithm(previous[1])


def _train_configured(config, output, state, backend, utils):
    try:
        x_train, y_train, x_test, y_test, class_names = load_dataset(config["dataset"], config["limit"])
        os.makedirs(output, exist_ok=True)
        utils.set_random_seed(config["seed"])
        backend.clear_session()
        model = architectures.build(config["model"], x_train.shape[1:], len(class_names))
        model.compile(optimizer=architectures.make_optimizer(config["optimizer"], config["learning_rate"]),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        print(f"dataset {config['dataset']}: x_train shape {x_train.shape}, {len(x_train)} train samples, "
              f"{len(x_test)} test samples")
        print(f"model {config['model']}, {config['optimizer']} (learning rate {config['learning_rate']}), "
              f"batch size {config['batch_size']}, {config['threads']} threads, algorithm {config['algorithm']}, "
              f"seed {config['seed']}")
        model.summary()
        history = {}
        initial_epoch = 0
        if state is not None:
            checkpoint.restore(state, model)
            history = {k: list(v) for k, v in state["history"].items()}
            initial_epoch = state["epoch"]
            print(f"resuming from {checkpoint.path_in(output)} after epoch {initial_epoch}")
        else:
            checkpoint.save(output, model, config, 0, history)
        if initial_epoch < config["epochs"]:
            model.fit(x_train, y_train, batch_size=config["batch_size"], epochs=config["epochs"],
                      initial_epoch=initial_epoch, validation_split=config["validation_split"],
                      callbacks=[_checkpointer(output, model, config, history)], verbose=1)
        return _finish(model, config, output, history, x_test, y_test, class_names)
    except KeyboardInterrupt:
        return _interrupted(output)


def _interrupted(output):
    try:
        state = checkpoint.read(output)
    except (FileNotFoundError, ValueError):
        print("\nInterrupted before the first checkpoint was written: nothing to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    write_history(output, state["history"])
    print(f"\nInterrupted. {checkpoint.path_in(output)} holds the state after epoch {state['epoch']} of "
          f"{state['config']['epochs']} (a partial epoch is not kept).\n"
          f"Resume with: fastconv train --resume {output}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _finish(model, config, output, history, x_test, y_test, class_names):
    from . import plots
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=config["batch_size"], verbose=0)
    print(f"Test loss: {test_loss:.4f}")
    print(f"Test accuracy: {test_accuracy:.4f}")
    model_path = os.path.join(output, "model.h5")
    model.save(model_path)
    write_history(output, history)
    title = f"{config['model']} on {config['dataset']}"
    plots.learning_curves(history, os.path.join(output, "learning_curves.png"), title=title)
    conv = next((layer for layer in model.layers if type(layer).__name__ == "Conv2D"), None)
    if conv is not None:
        plots.filter_grid(conv.get_weights()[0], os.path.join(output, "filters.png"),
                          title=f"{conv.name} filters ({title})")
    predicted = np.argmax(model.predict(x_test, batch_size=config["batch_size"], verbose=0), axis=-1)
    counts = plots.confusion_matrix(y_test, predicted, len(class_names))
    plots.confusion_matrix_plot(counts, os.path.join(output, "confusion_matrix.png"), class_names, title=title)
    summary = {"test_loss": float(test_loss), "test_accuracy": float(test_accuracy), "epochs": config["epochs"]}
    checkpoint.atomic_write_text(os.path.join(output, "results.json"),
                                 json.dumps({"config": config, **summary}, indent=1) + "\n")
    print(f"Wrote {model_path}, history.csv, history.json, learning_curves.png, filters.png, "
          f"confusion_matrix.png and results.json to {output}")
    return 0
