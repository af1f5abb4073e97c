"""Timing convolution algorithms on the public layer suite (`fastconv bench`).

Everything is measured in one process and interleaved: each round times every
contender once, in turn, and the report gives medians over rounds, so a busy
neighbour on a shared machine slows all contenders alike.
"""
import statistics
import time

import numpy as np

from . import algorithms
from ._config import get_num_threads
from ._geometry import conv2d_geometry
from .functional import conv2d, conv2d_backward
from .testing import SUITE_LAYERS, conv_inputs

OPS = ("forward", "grad_input", "grad_weight")


def sgemm_gflops(size=2048, repeats=5):
    """This machine's float32 GEMM ceiling through NumPy's BLAS, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm up the BLAS threads
    return 2 * size**3 / _median_seconds(lambda: a @ b, repeats) / 1e9


def copy_gbytes(nbytes=256 * 2**20, repeats=5):
    """Memory-copy bandwidth (bytes read + written) in GB/s."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    return 2 * nbytes / _median_seconds(lambda: np.copyto(dst, src), repeats) / 1e9


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _torch_functions(case, x, weight, bias):
    """The same three ops in torch, or None when torch is absent."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(get_num_threads())
    xt, wt = torch.from_numpy(x), torch.from_numpy(weight)
    bt = None if bias is None else torch.from_numpy(bias)
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)
    go = torch.ones(torch.nn.functional.conv2d(xt, wt, bt, **kw).shape)
    grad = torch.nn.grad
    return {
        "forward": lambda: torch.nn.functional.conv2d(xt, wt, bt, **kw),
        "grad_input": lambda: grad.conv2d_input(xt.shape, wt, go, **kw),
        "grad_weight": lambda: grad.conv2d_weight(xt, wt.shape, go, **kw),
    }


def _fastconv_functions(case, x, weight, bias, algorithm):
    kw = dict(case.kwargs, algorithm=algorithm)
    go = np.ones_like(conv2d(x, weight, bias, **kw))
    return {
        "forward": lambda: conv2d(x, weight, bias, **kw),
        "grad_input": lambda: conv2d_backward(go, x, weight, needs=("input",), **kw),
        "grad_weight": lambda: conv2d_backward(go, x, weight, needs=("weight",), **kw),
    }


def run_suite(layers=None, algorithm_names=None, ops=("forward",), rounds=5, reference_rounds=1,
              with_torch=True, progress=print):
    """Median seconds per (layer, op, contender); contenders are algorithms, "auto" and "torch"."""
    layers = [c for c in SUITE_LAYERS if layers is None or c.id in layers]
    names = algorithm_names or [a for a in algorithms.list_algorithms() if a != "reference"] + ["auto"]
    results = []
    for case in layers:
        x, weight, bias = conv_inputs(case, np.float32)
        contenders = {name: _fastconv_functions(case, x, weight, bias, name) for name in names}
        torch_fns = _torch_functions(case, x, weight, bias) if with_torch else None
        if torch_fns:
            contenders["torch"] = torch_fns
        flops = conv2d_geometry(x.shape, weight.shape, **case.kwargs).flops
        for op in ops:
            times = {name: [] for name in contenders}
            for fns in contenders.values():
                fns[op]()  # warm-up: first-call allocations, BLAS thread start
            for _ in range(rounds):
                for name, fns in contenders.items():
                    start = time.perf_counter()
                    fns[op]()
                    times[name].append(time.perf_counter() - start)
            ref = _fastconv_functions(case, x, weight, bias, "reference")[op]
            times["reference"] = [_median_seconds(ref, reference_rounds)]
            for name, samples in times.items():
                results.append(dict(layer=case.id, op=op, contender=name,
                                    seconds=statistics.median(samples), flops=flops))
            progress(f"  {case.id:16s} {op:11s} done")
    return results
