"""The pictures of `fastconv train`, drawn with matplotlib's Agg backend (no display needed).

    learning_curves.png   loss and accuracy per epoch, training and validation
    filters.png           the first Conv2D layer's kernels, one tile per filter
    confusion_matrix.png  counts of (true class, predicted class) on the test set
"""
import math

import numpy as np


def _figure(**kwargs):
    """A Figure on the Agg canvas, outside pyplot: no global backend switch, nothing to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    from .checkpoint import atomic_write
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def learning_curves(history, path, title=""):
    """Two panels, loss and accuracy, each with the training and (when present) validation curve."""
    fig = _figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for prefix, style in (("", "o-"), ("val_", "s--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(epochs[:len(values)], values, style, label=("validation " if prefix else "training ") + label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label.capitalize())
        ax.grid(True, alpha=0.3)
        if len(epochs):
            ax.set_xticks(epochs if len(epochs) <= 20 else np.linspace(1, len(epochs), 10).round())
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def filter_grid(kernel, path, title=""):
    """Tiles of a Conv2D kernel (kh, kw, C_in, filters); RGB when C_in is 3, else channel mean in grey."""
    kernel = np.asarray(kernel, dtype=np.float64)
    kh, kw, c_in, n = kernel.shape
    cols = min(n, 8)
    rows = math.ceil(n / cols)
    fig = _figure(figsize=(1.3 * cols, 1.45 * rows + (0.5 if title else 0)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        w = kernel[:, :, :, i]
        lo, hi = w.min(), w.max()
        scaled = (w - lo) / (hi - lo) if hi > lo else np.zeros_like(w)
        if c_in == 3:
            ax.imshow(scaled, interpolation="nearest")
        else:
            ax.imshow(scaled.mean(axis=2), cmap="gray", interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(str(i), fontsize=7, pad=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def confusion_matrix(y_true, y_pred, num_classes):
    """counts[t, p]: how many samples of class t were predicted as p."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return counts


def confusion_matrix_plot(counts, path, class_names=None, title=""):
    n = counts.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    fig = _figure(figsize=(1.6 + 0.6 * n, 1.0 + 0.6 * n))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = counts.max() / 2 if counts.size else 0
    for t in range(n):
        for p in range(n):
            ax.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=7,
                    color="white" if counts[t, p] > threshold else "black")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{title + ': ' if title else ''}test accuracy {accuracy:.3f}")
    fig.tight_layout()
    _save(fig, path)
