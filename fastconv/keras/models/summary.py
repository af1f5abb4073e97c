"""Model.summary(): Keras 3's table (rendered without rich) and parameter totals."""
import shutil

import numpy as np

from ..layers.base import shape_to_str


def readable_memory_size(size):
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    for unit in units:
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} {units[-1]}"


def _count(variables):
    return int(sum(int(np.prod(v.shape)) for v in variables))


def _nbytes(variables):
    return int(sum(v.value.nbytes for v in variables))


def _fit(text, width):
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _wrap(text, width):
    """Cell lines of at most `width` characters (rich folds long cells)."""
    if len(text) <= width:
        return [text]
    parts, line = [], ""
    for word in text.split(", "):
        candidate = f"{line}, {word}" if line else word
        if len(candidate) <= width:
            line = candidate
        else:
            if line:
                parts.append(line + ",")
            line = word
    parts.append(line)
    return [_fit(p, width) for p in parts]


def render_table(header, rows, widths, alignment):
    inner = [w - 2 for w in widths]

    def border(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in inner) + right

    def line(cells, edge):
        wrapped = [_wrap(c, w) for c, w in zip(cells, inner)]
        height = max(len(w) for w in wrapped)
        out = []
        for k in range(height):
            parts = []
            for lines, w, align in zip(wrapped, inner, alignment):
                text = lines[k] if k < len(lines) else ""
                parts.append(" " + (text.rjust(w) if align == "right" else text.ljust(w)) + " ")
            out.append(edge + edge.join(parts) + edge)
        return out

    out = [border("┏", "┳", "┓", "━")]
    out += line(header, "┃")
    out.append(border("┡", "╇", "┩", "━"))
    for i, row in enumerate(rows):
        if i:
            out.append(border("├", "┼", "┤", "─"))
        out += line(row, "│")
    out.append(border("└", "┴", "┘", "─"))
    return out


def print_summary(model, line_length=None, positions=None, print_fn=None, show_trainable=False):
    rows_info = model._summary_rows()   # [(layer, output_shape_str, connected_to or None)]
    sequential_like = all(info[2] is None for info in rows_info)
    if sequential_like:
        default, positions = 88, positions or [0.45, 0.80, 1.0]
        header, alignment = ["Layer (type)", "Output Shape", "Param #"], ["left", "left", "right"]
    else:
        default, positions = 108, positions or [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        alignment = ["left", "left", "right", "left"]
    if show_trainable:
        default += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header.append("Trainable")
        alignment.append("left")
    line_length = line_length or min(default, shutil.get_terminal_size((default + 4, 24)).columns - 4)
    widths, current = [], 0
    for pos in positions:
        width = (int(pos * line_length) if pos <= 1 else int(pos)) - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width)
        current += width

    rows = []
    for layer, shape, connected in rows_info:
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        row = [f"{layer.name} ({type(layer).__name__})", shape, params]
        if not sequential_like:
            row.append(connected or "-")
        if show_trainable:
            row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
        rows.append(row)

    trainable = model.trainable_weights
    non_trainable = model.non_trainable_weights
    t_count, n_count = _count(trainable), _count(non_trainable)
    t_size, n_size = _nbytes(trainable), _nbytes(non_trainable)
    lines = [f'Model: "{model.name}"']
    lines += render_table(header, rows, widths, alignment)
    lines.append(f" Total params: {t_count + n_count:,} ({readable_memory_size(t_size + n_size)})")
    lines.append(f" Trainable params: {t_count:,} ({readable_memory_size(t_size)})")
    lines.append(f" Non-trainable params: {n_count:,} ({readable_memory_size(n_size)})")
    text = "\n".join(lines)
    if print_fn is None:
        print(text)
    else:
        print_fn(text)


def format_shape(shape):
    if isinstance(shape, list):
        return "[" + ", ".join(shape_to_str(s) for s in shape) + "]"
    return shape_to_str(shape)
