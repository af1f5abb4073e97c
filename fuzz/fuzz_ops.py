"""Atheris harness: decode an op, shapes, parameters, dtype and memory layout from the
fuzzer's bytes, call fastconv, and check the result against the NumPy reference.

    mkdir -p /tmp/fastconv-fuzz-corpus
    python fuzz/fuzz_ops.py -max_total_time=60 -timeout=10 -rss_limit_mb=6144 /tmp/fastconv-fuzz-corpus

Expected: a result equal to the reference, or ValueError / TypeError / MemoryError.
Anything else (another exception, a wrong result, a crash) is a finding. See README.md.
"""
import os
import sys

import atheris

with atheris.instrument_imports(include=["fastconv"]):
    import fastconv

import numpy as np

EXPECTED = (ValueError, TypeError, MemoryError)
MAX_ELEMENTS = 1 << 16  # outputs larger than this are only shape-checked, not run
ALGORITHMS = [*fastconv.list_algorithms(), "auto"]
OPS = ("conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
       "avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward")
LAYOUTS = ("contiguous", "transposed", "negative", "misaligned", "zero_stride", "fortran", "byteswapped",
           "readonly")


class Decoder:
    """Typed values out of the fuzzer's bytes."""

    def __init__(self, data):
        self.fdp = atheris.FuzzedDataProvider(data)

    def pick(self, options):
        return options[self.fdp.ConsumeIntInRange(0, len(options) - 1)]

    def small(self, low, high):
        return self.fdp.ConsumeIntInRange(low, high)

    def bool(self):
        return self.fdp.ConsumeBool()

    def size_arg(self, low=0, high=4):
        """Mostly small sizes, sometimes an edge value (negative, 0, 2**31, 2**63, bool, float, a triple)."""
        kind = self.small(0, 15)
        if kind < 10:
            return self.small(low, high)
        if kind == 10:
            return (self.small(low, high), self.small(low, high))
        return self.pick([-1, 0, 2**31 - 1, 2**31, 2**63, -(2**63), True, 1.5, (1, 1, 1),
                          ((0, 1), (1, 0)), "same", "valid", None, np.int8(2), np.uint64(1), "x"])

    def dtype(self):
        return self.pick([np.float32, np.float64, np.float32, np.float64, np.float16, np.int32, np.complex64])

    def values(self, shape, dtype):
        n = int(np.prod(shape, dtype=np.int64))
        seed = self.fdp.ConsumeIntInRange(0, 2**32 - 1)
        a = np.random.default_rng(seed).standard_normal(n)
        special = self.small(0, 7)
        if special and n:
            a[self.small(0, n - 1)] = [np.nan, np.inf, -np.inf, 1e-310, 1e38, -0.0, 3e38][special - 1]
        with np.errstate(all="ignore"):
            return a.astype(dtype).reshape(shape)

    def layout(self, a):
        kind = self.pick(LAYOUTS)
        if kind == "transposed" and a.ndim == 4:
            return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        if kind == "negative":
            return a[::-1].copy()[::-1]
        if kind == "misaligned" and a.dtype.itemsize > 1:
            raw = np.zeros(a.nbytes + 1, np.uint8)
            view = np.ndarray(a.shape, a.dtype, buffer=raw, offset=1)
            view[...] = a
            return view
        if kind == "zero_stride" and a.ndim >= 1 and a.size:
            return np.broadcast_to(a[:1], a.shape)
        if kind == "fortran":
            return np.asfortranarray(a)
        if kind == "byteswapped":
            return a.astype(a.dtype.newbyteorder(">"))
        if kind == "readonly":
            a = a.copy()
            a.setflags(write=False)
        return a


def fuzz_conv(d, backward):
    data_format = d.pick(["NCHW", "NHWC", "channels_last", "NCHW", "bad"])
    nhwc = data_format in ("NHWC", "channels_last")
    groups = d.size_arg(1, 3)
    g = groups if isinstance(groups, int) and 1 <= groups <= 3 else 1
    n, c, k = d.small(0, 3), g * d.small(0, 3), g * d.small(1, 3)
    h, w = d.small(0, 9), d.small(0, 9)
    kh, kw = d.small(0, 4), d.small(0, 4)
    dtype = d.dtype()
    x = d.layout(d.values((n, h, w, c) if nhwc else (n, c, h, w), dtype))
    cg = max(c // g, 1) if d.small(0, 9) else d.small(0, 4)
    wshape = (kh, kw, cg, k) if nhwc else (k, cg, kh, kw)
    weight = d.layout(d.values(wshape, d.pick([dtype, dtype, dtype, np.float64])))
    bias = None if d.bool() else d.values((k if d.small(0, 9) else k + 1,), dtype)
    kwargs = dict(stride=d.size_arg(1, 3), padding=d.size_arg(0, 3), dilation=d.size_arg(1, 3), groups=groups,
                  data_format=data_format)
    algorithm = d.pick(ALGORITHMS + ["winograd"])
    try:
        out_shape = fastconv.conv2d_output_shape(x.shape, weight.shape, **kwargs)
    except EXPECTED:
        out_shape = None
    if out_shape is not None and np.prod(out_shape, dtype=object) > MAX_ELEMENTS:
        return
    if not backward:
        out = fastconv.conv2d(x, weight, bias, algorithm=algorithm, **kwargs)
        want = fastconv.conv2d(x, weight, bias, algorithm="reference", **kwargs)
        _compare(out, want, x, weight, *([] if bias is None else [bias]))
        return
    go = d.layout(d.values(out_shape if out_shape and d.small(0, 9) else (n, k, 2, 2), dtype))
    needs = d.pick([("input", "weight", "bias"), ("input",), ("weight",), "bias", (), ("x",), 3])
    got = fastconv.conv2d_backward(go, x, weight, needs=needs, algorithm=algorithm, **kwargs)
    want = fastconv.conv2d_backward(go, x, weight, needs=needs, algorithm="reference", **kwargs)
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if a is not None:
            _compare(a, b, x, weight, go)


def _compare(got, want, *inputs):
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    if not all(np.isfinite(a).all() and np.abs(a).max(initial=0) < 1e30 for a in map(np.asarray, inputs)):
        return  # NaN/Inf/huge inputs: compared against PyTorch in tests/test_reliability_bad_input.py
    if want.dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def fuzz_pool(d, op):
    data_format = d.pick(["NCHW", "NHWC", "NCHW", "nhwc", "NWHC"])
    nhwc = data_format.upper() == "NHWC"
    n, c, h, w = d.small(0, 3), d.small(0, 4), d.small(0, 9), d.small(0, 9)
    x = d.layout(d.values((n, h, w, c) if nhwc else (n, c, h, w), d.dtype()))
    backend = d.pick(["cython", "cython", "numba"])
    fastconv.set_pooling_backend(backend)
    if op.startswith("global"):
        out = fastconv.global_avg_pool2d(x, data_format=data_format, keepdims=d.bool())
        if op.endswith("backward"):
            go = d.layout(d.values(out.shape if d.small(0, 9) else (n, c + 1), out.dtype))
            got = fastconv.global_avg_pool2d_backward(go, x, data_format=data_format)
            assert got.shape == x.shape
        return
    kwargs = dict(kernel_size=d.size_arg(1, 4), stride=d.pick([None, d.size_arg(1, 3)]),
                  padding=d.size_arg(0, 2), ceil_mode=d.pick([False, True, False, "yes"]), data_format=data_format)
    try:
        out_shape = fastconv.pool2d_output_shape(x.shape, kwargs["kernel_size"], kwargs["stride"], kwargs["padding"],
                                                 ceil_mode=kwargs["ceil_mode"], data_format=data_format)
    except EXPECTED:
        out_shape = None
    if out_shape is not None and np.prod(out_shape, dtype=object) > MAX_ELEMENTS:
        return
    if op.startswith("max"):
        dilation = d.size_arg(1, 3)
        out, idx = fastconv.max_pool2d(x, dilation=dilation, return_indices=True, **kwargs)
        fastconv.set_pooling_backend("cython" if backend == "numba" else "numba")
        other, other_idx = fastconv.max_pool2d(x, dilation=dilation, return_indices=True, **kwargs)
        np.testing.assert_array_equal(out, other)
        np.testing.assert_array_equal(idx, other_idx)
        if op.endswith("backward"):
            if d.bool():  # fuzzed indices, mostly out of range
                with np.errstate(all="ignore"):
                    idx = d.values(idx.shape, np.float64).astype(np.int64) * d.small(0, 1000)
            go = d.layout(d.values(out.shape, out.dtype))
            got = fastconv.max_pool2d_backward(go, x, d.layout(idx), dilation=dilation, **kwargs)
            assert got.shape == x.shape
    else:
        avg = dict(count_include_pad=d.bool(), divisor_override=d.pick([None, None, d.size_arg(1, 5)]))
        out = fastconv.avg_pool2d(x, **kwargs, **avg)
        fastconv.set_pooling_backend("cython" if backend == "numba" else "numba")
        other = fastconv.avg_pool2d(x, **kwargs, **avg)
        np.testing.assert_allclose(out, other, rtol=1e-5, atol=1e-6)
        if op.endswith("backward"):
            go = d.layout(d.values(out.shape, out.dtype))
            got = fastconv.avg_pool2d_backward(go, x, **kwargs, **avg)
            assert got.shape == x.shape


STATS = {}  # (op, outcome) -> count, printed every 50,000 runs with FASTCONV_FUZZ_STATS=1
SHOW_STATS = os.environ.get("FASTCONV_FUZZ_STATS") == "1"


def test_one_input(data):
    d = Decoder(data)
    op = d.pick(OPS)
    outcome = "ran"
    try:
        if op.startswith("conv2d"):
            fuzz_conv(d, op == "conv2d_backward")
        else:
            fuzz_pool(d, op)
    except EXPECTED as exc:
        outcome = type(exc).__name__
    finally:
        fastconv.set_pooling_backend("cython")
        STATS[op, outcome] = STATS.get((op, outcome), 0) + 1
        if SHOW_STATS and sum(STATS.values()) % 50_000 == 0:
            _print_stats()


def _print_stats():
    print(f"--- {sum(STATS.values())} runs", file=sys.stderr)
    for (op, outcome), count in sorted(STATS.items()):
        print(f"{op:28s} {outcome:12s} {count}", file=sys.stderr)


def main():
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    fastconv.set_num_threads(2)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
