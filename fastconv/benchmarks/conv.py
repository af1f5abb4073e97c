"""Convolution: each suite layer x layout x op, every algorithm, "auto", reference, torch."""
import numpy as np

from .. import algorithms
from .._geometry import conv2d_geometry
from ..functional import conv2d, conv2d_backward
from ..testing import SUITE_LAYERS, conv_inputs
from .timing import interleaved, median_seconds, torch_or_none

OPS = ("forward", "grad_input", "grad_weight")


def _fastconv_ops(case, x, weight, bias, data_format, algorithm):
    kw = dict(case.kwargs, data_format=data_format, algorithm=algorithm)
    grad_output = np.ones_like(conv2d(x, weight, bias, **kw))
    return {
        "forward": lambda: conv2d(x, weight, bias, **kw),
        "grad_input": lambda: conv2d_backward(grad_output, x, weight, needs=("input",), **kw),
        "grad_weight": lambda: conv2d_backward(grad_output, x, weight, needs=("weight",), **kw),
    }


def _runs(op, geom, name):
    if name in ("torch", "reference"):
        return name
    return algorithms.select(op, geom, np.float32, name).name


def _torch_ops(torch, case, x, weight, bias, data_format):
    """The same ops in torch.nn.functional; NHWC as channels_last tensors."""
    if data_format == "NHWC":
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)
        wt = torch.from_numpy(np.ascontiguousarray(weight.transpose(3, 2, 0, 1))).contiguous(
            memory_format=torch.channels_last)
    else:
        xt, wt = torch.from_numpy(x), torch.from_numpy(weight)
    bt = None if bias is None else torch.from_numpy(bias)
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)
    grad_output = torch.ones_like(torch.nn.functional.conv2d(xt, wt, bt, **kw))
    return {
        "forward": lambda: torch.nn.functional.conv2d(xt, wt, bt, **kw),
        "grad_input": lambda: torch.nn.grad.conv2d_input(xt.shape, wt, grad_output, **kw),
        "grad_weight": lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, grad_output, **kw),
    }


def run_conv_suite(layers=None, algorithm_names=None, ops=("forward",), data_formats=("NCHW", "NHWC"),
                   rounds=5, threads=2, with_torch=True, progress=print):
    """Rows {layer, data_format, op, contender, seconds, flops, runs} for every measurement;
    runs: the algorithm that ran (another than the contender where it declines the case)."""
    cases = [c for c in SUITE_LAYERS if layers is None or c.id in layers]
    names = algorithm_names or [a for a in algorithms.list_algorithms() if a != "reference"] + ["auto"]
    torch = torch_or_none(threads) if with_torch else None
    rows = []
    for case in cases:
        for data_format in data_formats:
            x, weight, bias = conv_inputs(case, np.float32, data_format)
            geom = conv2d_geometry(x.shape, weight.shape, data_format=data_format, **case.kwargs)
            contenders = {name: _fastconv_ops(case, x, weight, bias, data_format, name) for name in names}
            if torch is not None:
                contenders["torch"] = _torch_ops(torch, case, x, weight, bias, data_format)
            reference = _fastconv_ops(case, x, weight, bias, data_format, "reference")
            for op in ops:
                seconds = interleaved({name: fns[op] for name, fns in contenders.items()}, rounds)
                seconds["reference"] = median_seconds(reference[op], 1)
                rows += [dict(layer=case.id, data_format=data_format, op=op, contender=name,
                              seconds=s, flops=geom.flops, runs=_runs(op, geom, name))
                         for name, s in seconds.items()]
            progress(f"  conv2d  {case.id:15s} {data_format}  done")
    return rows
