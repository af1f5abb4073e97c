"""fastconv.autotune: time every algorithm on a case here and remember the fastest."""
import numpy as np

from . import _args, _config, algorithms
from ._geometry import conv2d_geometry
from .algorithms import tuning


def autotune(x, weight, stride=1, padding=0, dilation=1, groups=1, *, data_format="NCHW",
             dtype=None, ops=algorithms.OPS, repeats=5):
    """Measure each algorithm on this convolution and store the winners for "auto".

    Later calls with the same shapes, arguments, dtype, layout and thread count,
    in this process and later ones, run the winner. The cache lives in
    $FASTCONV_CACHE_DIR (see fastconv.show_config()).

    Args:
        x, weight: arrays, or just their shapes (then give `dtype`).
        stride, padding, dilation, groups, data_format: as for conv2d.
        dtype: float32 (default for shapes) or float64; taken from x when an array.
        ops: which of "forward", "grad_input", "grad_weight" to tune.
        repeats: timed runs per algorithm (the median counts).

    Returns:
        {op: {"winner": name, "seconds": {name: median seconds}}}.
    """
    if dtype is None:
        dtype = x.dtype if isinstance(x, np.ndarray) else np.float32
    dtype = np.dtype(dtype)
    if dtype not in _args.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64. Received: dtype={dtype}")
    for op in ops:
        if op not in algorithms.OPS:
            raise ValueError(f"ops may only name {algorithms.OPS}. Received: ops={ops!r}")
    repeats = _args.as_int(repeats, "repeats", 1)
    x_shape = x.shape if isinstance(x, np.ndarray) else tuple(x)
    w_shape = weight.shape if isinstance(weight, np.ndarray) else tuple(weight)
    geom = conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups, data_format)
    rng = np.random.default_rng(0)
    x_data = rng.standard_normal(geom.input_shape).astype(dtype)
    w_data = rng.standard_normal(geom.weight_shape).astype(dtype)
    go_data = rng.standard_normal(geom.output_shape).astype(dtype)
    candidates = [a for a in algorithms.list_algorithms()
                  if a != "reference" and algorithms.select("forward", geom, dtype, a).name == a]
    threads = _config.get_num_threads()
    report, winners = {}, {}
    for op in ops:
        seconds = {name: _time(op, algorithms.select(op, geom, dtype, name), geom,
                               x_data, w_data, go_data, repeats) for name in candidates}
        winner = min(seconds, key=seconds.get)
        winners[tuning.case_key(op, geom, dtype, threads)] = winner
        report[op] = {"winner": winner, "seconds": seconds}
    tuning.record(winners)
    return report


def _time(op, algorithm, geom, x, weight, grad_output, repeats):
    from .benchmarks.timing import median_seconds  # only when tuning: keeps `import fastconv` light

    run = {
        "forward": lambda: algorithm.forward(x, weight, None, geom),
        "grad_input": lambda: algorithm.grad_input(grad_output, weight, geom),
        "grad_weight": lambda: algorithm.grad_weight(grad_output, x, geom),
    }[op]
    run()  # warm-up: first-call compilation and allocations
    return median_seconds(run, repeats)
