"""Pooling: max and average, forward and backward, both layouts, against torch and the reference."""
import numpy as np

from .._geometry import pool2d_geometry
from ..algorithms import reference
from ..functional import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from ..testing import POOL_SUITE_LAYERS, pool_input
from .timing import interleaved, median_seconds, torch_or_none


def _fastconv_ops(case, x, data_format):
    kw = dict(case.kwargs, data_format=data_format)
    out, idx = max_pool2d(x, return_indices=True, **kw)
    grad_avg = np.ones_like(avg_pool2d(x, **kw))
    return {
        ("max", "forward"): lambda: max_pool2d(x, return_indices=True, **kw),
        ("max", "backward"): lambda: max_pool2d_backward(out, x, idx, **kw),
        ("avg", "forward"): lambda: avg_pool2d(x, **kw),
        ("avg", "backward"): lambda: avg_pool2d_backward(grad_avg, x, **kw),
    }


def _reference_ops(case, x, data_format):
    geom = pool2d_geometry(x.shape, case.kernel, case.stride, case.padding, 1, case.ceil_mode, data_format)
    out, idx = reference.max_pool2d_forward(x, geom)
    return {
        ("max", "forward"): lambda: reference.max_pool2d_forward(x, geom),
        ("max", "backward"): lambda: reference.max_pool2d_backward(out, idx, geom),
        ("avg", "forward"): lambda: reference.avg_pool2d_forward(x, geom),
        ("avg", "backward"): lambda: reference.avg_pool2d_backward(out, geom),
    }


def _torch_ops(torch, case, x, data_format):
    F = torch.nn.functional
    xt = torch.from_numpy(x)
    if data_format == "NHWC":
        xt = xt.permute(0, 3, 1, 2)  # a channels_last tensor, no copy
    args = (case.kernel, case.stride, case.padding)
    xg = xt.detach().clone().requires_grad_()
    out_max, idx = F.max_pool2d(xt, *args, return_indices=True)
    grad_max = torch.ones_like(out_max)
    grad_avg = torch.ones_like(F.avg_pool2d(xt, *args))
    return {
        ("max", "forward"): lambda: F.max_pool2d(xt, *args, return_indices=True),
        ("max", "backward"): lambda: torch.ops.aten.max_pool2d_with_indices_backward(
            grad_max, xg, case.kernel, case.stride or case.kernel, case.padding, 1, False, idx),
        ("avg", "forward"): lambda: F.avg_pool2d(xt, *args),
        ("avg", "backward"): lambda: torch.ops.aten.avg_pool2d_backward(
            grad_avg, xg, case.kernel, case.stride or case.kernel, case.padding, False, True, None),
    }


def _bytes_moved(kind, x, out_size):
    """Bytes read plus written, either direction: input and output (and int64 indices for max)."""
    index_bytes = 8 * out_size if kind == "max" else 0
    return x.nbytes + out_size * x.itemsize + index_bytes


def run_pool_suite(data_formats=("NCHW", "NHWC"), rounds=5, threads=2, with_torch=True, progress=print):
    """Rows {layer, data_format, op, contender, seconds, bytes} for every measurement."""
    torch = torch_or_none(threads) if with_torch else None
    rows = []
    for case in POOL_SUITE_LAYERS:
        for data_format in data_formats:
            x = pool_input(case, np.float32, data_format)
            out_size = max_pool2d(x, **case.kwargs, data_format=data_format).size
            contenders = {"fastconv": _fastconv_ops(case, x, data_format)}
            if torch is not None:
                contenders["torch"] = _torch_ops(torch, case, x, data_format)
            reference_ops = _reference_ops(case, x, data_format)
            for key in reference_ops:
                seconds = interleaved({name: ops[key] for name, ops in contenders.items()}, rounds)
                seconds["reference"] = median_seconds(reference_ops[key], 1)
                kind, direction = key
                moved = _bytes_moved(kind, x, out_size)
                rows += [dict(layer=case.id, data_format=data_format, op=f"{kind}_{direction}",
                              contender=name, seconds=s, bytes=moved) for name, s in seconds.items()]
            progress(f"  pool2d  {case.id:15s} {data_format}  done")
    return rows
