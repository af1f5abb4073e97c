"""Turning benchmark rows into tables (text or Markdown), a summary, and a bar chart."""
import math


def _index(rows):
    return {(r["layer"], r["data_format"], r["op"], r["contender"]): r for r in rows}


def _geomean(values):
    values = [v for v in values if v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def conv_table(rows, sgemm):
    """[(header...), (cells...)...] with ms, GFLOP/s, % of sgemm, x reference, x torch."""
    index = _index(rows)
    header = ("layer", "layout", "op", "algorithm", "ms", "GFLOP/s", "% sgemm", "x ref", "x torch")
    table = [header]
    for r in rows:
        if r["contender"] in ("reference", "torch"):
            continue
        key = (r["layer"], r["data_format"], r["op"])
        gflops = r["flops"] / r["seconds"] / 1e9
        torch_row = index.get(key + ("torch",))
        table.append((r["layer"], r["data_format"], r["op"], r["contender"], f"{r['seconds'] * 1e3:.2f}",
                      f"{gflops:.1f}", f"{100 * gflops / sgemm:.0f}%",
                      f"{index[key + ('reference',)]['seconds'] / r['seconds']:.1f}",
                      f"{torch_row['seconds'] / r['seconds']:.2f}" if torch_row else "-"))
        if torch_row and r["contender"] == "auto":
            table.append((r["layer"], r["data_format"], r["op"], "torch", f"{torch_row['seconds'] * 1e3:.2f}",
                          f"{r['flops'] / torch_row['seconds'] / 1e9:.1f}", "", "", "1.00"))
    return table


def pool_table(rows, copy_bandwidth):
    index = _index(rows)
    header = ("layer", "layout", "op", "impl", "ms", "GB/s", "% copy", "x ref", "x torch")
    table = [header]
    for r in rows:
        if r["contender"] == "reference":
            continue
        key = (r["layer"], r["data_format"], r["op"])
        gbytes = r["bytes"] / r["seconds"] / 1e9
        torch_row = index.get(key + ("torch",))
        table.append((r["layer"], r["data_format"], r["op"], r["contender"], f"{r['seconds'] * 1e3:.3f}",
                      f"{gbytes:.1f}", f"{100 * gbytes / copy_bandwidth:.0f}%",
                      f"{index[key + ('reference',)]['seconds'] / r['seconds']:.1f}",
                      f"{torch_row['seconds'] / r['seconds']:.2f}" if torch_row else "-"))
    return table


def summary(conv_rows, pool_rows):
    """One line per algorithm and layout: geometric-mean speed-up over torch and the reference."""
    lines = []
    for label, rows in (("conv2d", conv_rows), ("pool2d", pool_rows)):
        index = _index(rows)
        ours = [name for name in dict.fromkeys(r["contender"] for r in rows)
                if name not in ("reference", "torch")]
        for name in ours:
            for data_format in sorted({r["data_format"] for r in rows}):
                mine = [r for r in rows if r["contender"] == name and r["data_format"] == data_format]
                parts = []
                for versus in ("torch", "reference"):
                    ratios = [index[key]["seconds"] / r["seconds"] for r in mine
                              if (key := (r["layer"], data_format, r["op"], versus)) in index]
                    if ratios:
                        parts.append(f"{_geomean(ratios):.2f}x {versus} (min {min(ratios):.2f}x)")
                if parts:
                    lines.append(f"{label} {name:9s} {data_format}: geometric mean " + ", ".join(parts)
                                 + f" over {len(mine)} measurements")
    return lines + numba_gap(conv_rows)


def numba_gap(conv_rows):
    """Per layout: how the best Numba algorithm's time compares with the best compiled
    (Cython) one's, layer by layer and op by op (geometric mean and the worst case). A
    Numba algorithm that declines a case (Winograd a 1x1 layer) runs another, maybe a
    Cython one: those rows are not Numba's."""
    def best(rows, numba):
        times = {}
        for r in rows:
            name = r["contender"]
            if name in ("auto", "reference", "torch") or name.startswith("numba_") != numba:
                continue
            if numba and not r.get("runs", name).startswith("numba_"):
                continue
            key = (r["layer"], r["data_format"], r["op"])
            times[key] = min(times.get(key, math.inf), r["seconds"])
        return times

    numba, cython = best(conv_rows, True), best(conv_rows, False)
    lines = []
    for data_format in sorted({key[1] for key in numba.keys() & cython.keys()}):
        ratios = {key: numba[key] / cython[key] for key in numba.keys() & cython.keys()
                  if key[1] == data_format}
        worst = max(ratios, key=ratios.get)
        lines.append(f"conv2d Numba vs Cython {data_format}: the best Numba algorithm takes "
                     f"{_geomean(list(ratios.values())):.2f}x the best Cython one's time (geometric "
                     f"mean; worst {ratios[worst]:.2f}x, {worst[0]} {worst[2]}) over {len(ratios)} "
                     "measurements")
    return lines


def render(table, markdown=False):
    if markdown:
        lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
        lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
        return "\n".join(lines)
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(str(cell).rjust(w) if i >= 4 else str(cell).ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))) for row in table)


def plot(conv_rows, path):
    """Bar chart of forward GFLOP/s per layer and algorithm (PyTorch beside them)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in conv_rows if r["op"] == "forward" and r["contender"] != "reference"]
    groups = sorted({(r["layer"], r["data_format"]) for r in rows}, key=lambda g: (g[1], g[0]))
    contenders = list(dict.fromkeys(r["contender"] for r in rows))
    index = {(r["layer"], r["data_format"], r["contender"]): r for r in rows}
    width = 0.8 / len(contenders)
    fig, ax = plt.subplots(figsize=(max(8, len(groups) * 0.9), 4.5))
    for i, name in enumerate(contenders):
        heights = [index[g + (name,)]["flops"] / index[g + (name,)]["seconds"] / 1e9
                   if g + (name,) in index else 0 for g in groups]
        ax.bar([j + i * width for j in range(len(groups))], heights, width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))])
    ax.set_xticklabels([f"{layer}\n{fmt}" for layer, fmt in groups], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("GFLOP/s (forward, float32)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
