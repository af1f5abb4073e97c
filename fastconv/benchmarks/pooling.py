"""Pooling: the suite's max, average and global-average layers, forward and backward,
both layouts, against torch and the reference; reported in GB/s."""
import numpy as np

from .._geometry import pool2d_geometry
from ..algorithms import reference
from ..functional import (
    avg_pool2d,
    avg_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from ..testing import POOL_SUITE_LAYERS, pool_input
from .timing import interleaved, median_seconds, torch_or_none


def _fastconv_ops(case, x, data_format):
    kw = dict(case.kwargs, data_format=data_format)
    if case.kind == "max":
        # the forward without indices, as torch's forward of a tensor that needs no gradient
        out, idx = max_pool2d(x, return_indices=True, **kw)
        return (lambda: max_pool2d(x, **kw),
                lambda: max_pool2d_backward(out, x, idx, **kw))
    if case.kind == "avg":
        grad = np.ones_like(avg_pool2d(x, **kw))
        return lambda: avg_pool2d(x, **kw), lambda: avg_pool2d_backward(grad, x, **kw)
    grad = np.ones(x.shape[:1] + (x.shape[3] if data_format == "NHWC" else x.shape[1],), x.dtype)
    return (lambda: global_avg_pool2d(x, data_format=data_format),
            lambda: global_avg_pool2d_backward(grad, x, data_format=data_format))


def _reference_ops(case, x, data_format):
    if case.kind == "global_avg":
        axes = (1, 2) if data_format == "NHWC" else (2, 3)
        return lambda: x.mean(axis=axes), lambda: np.broadcast_to(x.mean(axis=axes, keepdims=True), x.shape).copy()
    geom = pool2d_geometry(x.shape, case.kernel, case.stride, case.padding, 1, case.ceil_mode, data_format)
    if case.kind == "max":
        out, idx = reference.max_pool2d_forward(x, geom)
        return (lambda: reference.max_pool2d_forward(x, geom),
                lambda: reference.max_pool2d_backward(out, idx, geom))
    out = reference.avg_pool2d_forward(x, geom)
    return lambda: reference.avg_pool2d_forward(x, geom), lambda: reference.avg_pool2d_backward(out, geom)


def _torch_ops(torch, case, x, data_format):
    """Forward and backward through autograd, as a torch user would run them."""
    F = torch.nn.functional
    xt = torch.from_numpy(x)
    if data_format == "NHWC":
        xt = xt.permute(0, 3, 1, 2)  # a channels_last tensor, no copy
    if case.kind == "max":
        forward = lambda t: F.max_pool2d(t, case.kernel, case.stride, case.padding)  # noqa: E731
    elif case.kind == "avg":
        forward = lambda t: F.avg_pool2d(t, case.kernel, case.stride, case.padding)  # noqa: E731
    else:
        forward = lambda t: F.adaptive_avg_pool2d(t, 1)  # noqa: E731
    xg = xt.detach().requires_grad_()
    out = forward(xg)
    grad = torch.ones_like(out)
    return (lambda: forward(xt),
            lambda: torch.autograd.grad(out, xg, grad, retain_graph=True))


def _bytes_moved(case, x, out_size, direction):
    """Bytes read plus written: input and output, and the int64 indices max's backward reads."""
    index_bytes = 8 * out_size if case.kind == "max" and direction == "backward" else 0
    return x.nbytes + out_size * x.itemsize + index_bytes


def run_pool_suite(layers=None, data_formats=("NCHW", "NHWC"), rounds=5, threads=2, with_torch=True,
                   progress=print):
    """Rows {layer, data_format, op, contender, seconds, bytes} for every measurement."""
    torch = torch_or_none(threads) if with_torch else None
    rows = []
    for case in [c for c in POOL_SUITE_LAYERS if layers is None or c.id in layers]:
        for data_format in data_formats:
            x = pool_input(case, np.float32, data_format)
            forward, backward = _fastconv_ops(case, x, data_format)
            out = forward()
            out_size = (out[0] if isinstance(out, tuple) else out).size
            contenders = {"fastconv": (forward, backward)}
            if torch is not None:
                contenders["torch"] = _torch_ops(torch, case, x, data_format)
            reference_ops = _reference_ops(case, x, data_format)
            for i, direction in enumerate(("forward", "backward")):
                seconds = interleaved({name: ops[i] for name, ops in contenders.items()}, rounds)
                seconds["reference"] = median_seconds(reference_ops[i], 1)
                rows += [dict(layer=case.id, data_format=data_format, op=f"{case.kind}_{direction}",
                              contender=name, seconds=s,
                              bytes=_bytes_moved(case, x, out_size, direction))
                         for name, s in seconds.items()]
            progress(f"  pool2d  {case.id:21s} {data_format}  done")
    return rows
