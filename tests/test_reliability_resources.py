"""Threads, memory and sizes: concurrent calls, leaks, > 2**31 elements, impossible allocations.

Concurrency and leak checks run in a child interpreter: a crash or an abort there is
a failed test with the child's output, not a dead test run.
"""
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastconv
from fastconv.algorithms import reference
from fastconv._geometry import pool2d_geometry

ALGORITHMS = fastconv.list_algorithms()
SANITIZED = os.environ.get("FASTCONV_SANITIZED") == "1"


@pytest.fixture(autouse=True)
def _slow_only_when_asked(request):
    """The slow tests here (10,000 calls per kernel; 8.6 GB inputs and 17 GB peaks) run only when
    asked for, with `pytest -m slow` or FASTCONV_RUN_SLOW=1: a plain `pytest` stays fast and small."""
    if request.node.get_closest_marker("slow") is None:
        return
    expr = request.config.getoption("markexpr") or ""
    if os.environ.get("FASTCONV_RUN_SLOW") != "1" and ("slow" not in expr or "not slow" in expr):
        pytest.skip("slow: run with `pytest -m slow` (or FASTCONV_RUN_SLOW=1)")

# Every kernel, as a function of one input set: (name, call) with call(inputs) -> tuple of arrays.
KERNELS_SOURCE = textwrap.dedent("""
    import numpy as np, fastconv

    def make_inputs(seed, layout, dtype=np.float32):
        r = np.random.default_rng(seed)
        x = r.standard_normal((4, 16, 18, 17)).astype(dtype)
        w = r.standard_normal((24, 16, 3, 3)).astype(dtype)
        dw = r.standard_normal((16, 1, 3, 3)).astype(dtype)
        if layout == "NHWC":
            x, w, dw = (np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(w.transpose(2, 3, 1, 0)),
                        np.ascontiguousarray(dw.transpose(2, 3, 1, 0)))
        b = r.standard_normal(24).astype(dtype)
        return dict(x=x, w=w, dw=dw, b=b, layout=layout, r=r)

    CONV_KW = dict(stride=(1, 2), padding=1)

    def conv_calls(algorithm):
        def forward(a):
            return (fastconv.conv2d(a["x"], a["w"], a["b"], data_format=a["layout"], algorithm=algorithm, **CONV_KW),
                    fastconv.conv2d(a["x"], a["dw"], None, groups=16, data_format=a["layout"], algorithm=algorithm))
        def backward(a):
            out = fastconv.conv2d(a["x"], a["w"], a["b"], data_format=a["layout"], algorithm=algorithm, **CONV_KW)
            go = np.cos(out)
            return fastconv.conv2d_backward(go, a["x"], a["w"], data_format=a["layout"], algorithm=algorithm,
                                            **CONV_KW)
        def grad_input(a):
            out = fastconv.conv2d(a["x"], a["w"], a["b"], data_format=a["layout"], algorithm="reference", **CONV_KW)
            return fastconv.conv2d_backward(np.cos(out), a["x"], a["w"], data_format=a["layout"], needs="input",
                                            algorithm=algorithm, **CONV_KW)[:1]
        def grad_weight(a):
            out = fastconv.conv2d(a["x"], a["w"], a["b"], data_format=a["layout"], algorithm="reference", **CONV_KW)
            return fastconv.conv2d_backward(np.cos(out), a["x"], a["w"], data_format=a["layout"], needs="weight",
                                            algorithm=algorithm, **CONV_KW)[1:2]
        return {f"conv2d[{algorithm}]": forward, f"conv2d_backward[{algorithm}]": backward,
                f"grad_input[{algorithm}]": grad_input, f"grad_weight[{algorithm}]": grad_weight}

    def pool_calls(backend):
        def use():
            fastconv.set_pooling_backend(backend)
        def max_pool(a):
            use()
            out, idx = fastconv.max_pool2d(a["x"], 3, 2, 1, return_indices=True, data_format=a["layout"])
            return out, idx, fastconv.max_pool2d_backward(np.sin(out), a["x"], idx, 3, 2, 1, data_format=a["layout"])
        def max_pool_dilated(a):
            use()
            out, idx = fastconv.max_pool2d(a["x"], 3, 1, 1, dilation=2, return_indices=True, data_format=a["layout"])
            return out, idx
        def avg_pool(a):
            use()
            out = fastconv.avg_pool2d(a["x"], 3, 2, 1, ceil_mode=True, data_format=a["layout"])
            return out, fastconv.avg_pool2d_backward(np.sin(out), a["x"], 3, 2, 1, ceil_mode=True,
                                                     data_format=a["layout"])
        def global_avg(a):
            use()
            out = fastconv.global_avg_pool2d(a["x"], data_format=a["layout"])
            return out, fastconv.global_avg_pool2d_backward(out, a["x"], data_format=a["layout"])
        return {f"max_pool2d[{backend}]": max_pool, f"max_pool2d_dilated[{backend}]": max_pool_dilated,
                f"avg_pool2d[{backend}]": avg_pool, f"global_avg_pool2d[{backend}]": global_avg}
""")


def run_child(body, timeout=900, env=None):
    """Run KERNELS_SOURCE + body in a child interpreter; its last stdout line is JSON."""
    script = KERNELS_SOURCE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})})
    assert proc.returncode == 0, (f"child interpreter failed (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- thread safety
THREADS_BODY = """
    import threading, json, sys
    algorithms = [a for a in fastconv.list_algorithms() if a != "reference"]
    calls = {{}}
    for algorithm in algorithms:
        calls.update(conv_calls(algorithm))
    # Pooling backends are a process-wide switch: one backend per run.
    calls.update(pool_calls(sys.argv[1] if len(sys.argv) > 1 else "{backend}"))
    fastconv.set_num_threads({threads})
    fastconv._config.SERIAL_FLOPS = fastconv._config.SERIAL_BYTES = 0  # parallel regions on every call
    layouts = ["NCHW", "NHWC", "NCHW", "NHWC"]
    inputs = [make_inputs(t, layouts[t], (np.float32, np.float64)[t // 2]) for t in range(4)]
    expected = {{(t, name): call(inputs[t]) for t in range(4) for name, call in calls.items()}}
    barrier = threading.Barrier(4)
    mismatches, errors = [], []

    def worker(t):
        try:
            barrier.wait()
            for repeat in range({repeats}):
                for name, call in (calls.items() if (t + repeat) % 2 else reversed(calls.items())):
                    got = call(inputs[t])
                    for i, (g, e) in enumerate(zip(got, expected[(t, name)])):
                        if g.dtype != e.dtype or not np.array_equal(g, e, equal_nan=True):
                            mismatches.append(f"thread {{t}} repeat {{repeat}} {{name}} output {{i}}")
        except Exception as exc:  # reported to the parent
            errors.append(f"thread {{t}}: {{type(exc).__name__}}: {{exc}}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(600)
    hung = [i for i, th in enumerate(threads) if th.is_alive()]
    import numba
    print(json.dumps(dict(mismatches=mismatches[:20], errors=errors, hung=hung, calls=sorted(calls),
                          numba_layer=numba.threading_layer())))
"""


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_calls_match_sequential(backend, threads):
    """4 Python threads, each its own inputs (two layouts, two dtypes), every kernel
    in alternating orders: results are bitwise those of sequential calls."""
    report = run_child(THREADS_BODY.format(backend=backend, threads=threads, repeats=3))
    assert not report["hung"], report
    assert not report["errors"], report["errors"]
    assert not report["mismatches"], report["mismatches"]
    assert len(report["calls"]) == 4 * (len(ALGORITHMS) - 1) + 4


# --------------------------------------------------------------------------- leaks
LEAK_BODY = """
    import gc, json
    def rss_mb():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    import os
    fastconv.set_num_threads(2)
    fastconv._config.SERIAL_FLOPS = fastconv._config.SERIAL_BYTES = 0  # parallel regions on every call
    calls = {{}}
    for algorithm in [a for a in fastconv.list_algorithms() if a != "reference"]:
        calls.update({{k: v for k, v in conv_calls(algorithm).items() if k.startswith(("grad_", "conv2d["))}})
    calls.update(pool_calls("cython"))
    calls.update({{k + "_": v for k, v in pool_calls("numba").items()}})
    def tiny(seed, layout):
        r = np.random.default_rng(seed)
        x = r.standard_normal((2, 16, 5, 4)).astype(np.float32)
        w = r.standard_normal((24, 16, 3, 3)).astype(np.float32)
        dw = r.standard_normal((16, 1, 3, 3)).astype(np.float32)
        if layout == "NHWC":
            x, w, dw = (np.ascontiguousarray(x.transpose(0, 2, 3, 1)), np.ascontiguousarray(w.transpose(2, 3, 1, 0)),
                        np.ascontiguousarray(dw.transpose(2, 3, 1, 0)))
        return dict(x=x, w=w, dw=dw, b=r.standard_normal(24).astype(np.float32), layout=layout)
    growth = {{}}
    for name, call in calls.items():
        args = [tiny(1, "NCHW"), tiny(2, "NHWC")]
        for i in range({warmup}):
            call(args[i % 2])
        gc.collect()
        before = rss_mb()
        for i in range({calls}):
            call(args[i % 2])
        gc.collect()
        growth[name] = rss_mb() - before
    print(json.dumps(growth))
"""


def _check_leaks(n_calls):
    if SANITIZED:
        pytest.skip("AddressSanitizer's quarantine holds freed memory: RSS is not flat under it")
    return run_child(LEAK_BODY.format(warmup=300, calls=n_calls), timeout=1800)


@pytest.mark.slow
def test_ten_thousand_calls_of_each_kernel_keep_rss_flat():
    growth = _check_leaks(10_000)
    assert len(growth) == 3 * (len(ALGORITHMS) - 1) + 8
    grown = {name: round(mb, 2) for name, mb in growth.items() if mb > 2.0}
    assert not grown, f"resident memory grew by more than 2 MB over 10,000 calls: {grown}"


def test_thousand_calls_of_each_kernel_keep_rss_flat():
    """The quick version of the leak check for the default run."""
    growth = _check_leaks(1_000)
    grown = {name: round(mb, 2) for name, mb in growth.items() if mb > 1.0}
    assert not grown, f"resident memory grew by more than 1 MB over 1,000 calls: {grown}"


# --------------------------------------------------------------------------- impossible sizes
@pytest.mark.parametrize("algorithm", [*ALGORITHMS, "auto"])
def test_impossible_output_raises_memory_error_quickly(algorithm):
    """A 16 TiB output (2**42 elements) is refused by the allocator, before any kernel runs."""
    x = np.ones((1, 1, 1, 1), np.float32)
    start = time.perf_counter()
    with pytest.raises(MemoryError):
        fastconv.conv2d(x, x, padding=2**20, algorithm=algorithm)
    with pytest.raises(MemoryError):  # and with a big batch in the product too
        fastconv.conv2d(np.ones((2**12, 1, 1, 1), np.float32), x, padding=2**14, algorithm=algorithm)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("algorithm", [*ALGORITHMS, "auto"])
def test_output_past_int64_bytes_is_a_clear_error(algorithm):
    """2**64 elements: NumPy refuses the shape; nothing overflows before it."""
    x = np.ones((1, 1, 1, 1), np.float64)
    with pytest.raises((MemoryError, ValueError), match="too big|allocate"):
        fastconv.conv2d(x, x, padding=2**31 - 2, algorithm=algorithm)
    assert fastconv.conv2d_output_shape(x.shape, x.shape, padding=2**31 - 2) == (1, 1, 2**32 - 3, 2**32 - 3)


HUGE_VIEW = dict(shape=(2**10,) * 4, strides=(0,) * 4)  # 2**40 elements sharing one value


@pytest.mark.parametrize("op", ["conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward",
                                "avg_pool2d", "avg_pool2d_backward", "global_avg_pool2d"])
def test_huge_zero_stride_views_raise_memory_error(op):
    """A zero-stride view claiming 2**40 elements must be copied to contiguous memory: MemoryError."""
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), **HUGE_VIEW)
    w = np.ones((1, 2**10, 1, 1), np.float32)
    calls = {
        "conv2d": lambda: fastconv.conv2d(big, w),
        "conv2d_backward": lambda: fastconv.conv2d_backward(big, big, np.ones((2**10, 2**10, 1, 1), np.float32)),
        "max_pool2d": lambda: fastconv.max_pool2d(big, 2),
        "max_pool2d_backward": lambda: fastconv.max_pool2d_backward(
            big[:, :, :512, :512], big, np.zeros((2**10, 2**10, 512, 512), np.int8)[:0], 2),
        "avg_pool2d": lambda: fastconv.avg_pool2d(big, 2),
        "avg_pool2d_backward": lambda: fastconv.avg_pool2d_backward(big[:, :, :512, :512], big, 2),
        "global_avg_pool2d": lambda: fastconv.global_avg_pool2d(big),
    }
    start = time.perf_counter()
    with pytest.raises(MemoryError) as info:
        calls[op]()
    assert "allocate" in str(info.value)
    assert time.perf_counter() - start < 5


# --------------------------------------------------------------------------- > 2**31 elements
BIG_H, BIG_W = 2**15, 2**16 + 64  # 2**31 + 2**21 elements: 8.6 GB of float32


def _available_gb():
    with open("/proc/meminfo") as fh:
        info = dict(line.split(":", 1) for line in fh)
    return int(info["MemAvailable"].split()[0]) / 2**20


def _pattern_rows(h0, h1, w):
    """Small integers, exact in float32, that differ along both axes: x[h, w] = h % 7 + (w % 11) / 4."""
    return ((np.arange(h0, h1) % 7)[:, None] + (np.arange(w) % 11)[None, :] / 4).astype(np.float32)


@pytest.fixture(scope="module")
def big_input():
    if SANITIZED:
        pytest.skip("8.6 GB inputs are not run under AddressSanitizer")
    if _available_gb() < 12:
        pytest.skip(f"needs 12 GB of free memory; {_available_gb():.1f} GB available")
    x = np.empty((1, 1, BIG_H, BIG_W), np.float32)
    for h0 in range(0, BIG_H, 1024):
        x[0, 0, h0:h0 + 1024] = _pattern_rows(h0, min(h0 + 1024, BIG_H), BIG_W)
    assert x.size > 2**31
    yield x
    del x


def _tail(x, rows):
    """The last `rows` rows of the big input as a small array (past element 2**31)."""
    return np.ascontiguousarray(x[:, :, -rows:])


@pytest.mark.slow
@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_pooling_past_2_31_elements(big_input, op):
    """Pooling an input of 2**31 + 2**21 elements: the last rows, past element 2**31, are right."""
    x = big_input
    kw = dict(kernel_size=4, stride=4)
    tail = _tail(x, 64)
    geom = pool2d_geometry(tail.shape, 4, 4)
    if op == "avg_pool2d":
        out = fastconv.avg_pool2d(x, **kw)
        assert out.shape == (1, 1, BIG_H // 4, BIG_W // 4)
        np.testing.assert_allclose(out[:, :, -16:], reference.avg_pool2d_forward(tail, geom), rtol=1e-6)
        return
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    assert out.shape == (1, 1, BIG_H // 4, BIG_W // 4)
    want, want_idx = reference.max_pool2d_forward(tail, geom)
    np.testing.assert_array_equal(out[:, :, -16:], want)
    # Flat indices in the whole H x W plane: the tail's row offset puts them past 2**31.
    np.testing.assert_array_equal(idx[:, :, -16:], want_idx + (BIG_H - 64) * BIG_W)
    assert idx.max() >= 2**31
    head, _ = reference.max_pool2d_forward(np.ascontiguousarray(x[:, :, :64]),
                                           pool2d_geometry((1, 1, 64, BIG_W), 4, 4))
    np.testing.assert_array_equal(out[:, :, :16], head)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["max_pool2d_backward", "avg_pool2d_backward"])
def test_pooling_backward_past_2_31_elements(big_input, op):
    """The gradients are as large as the input: a second 8.6 GB array."""
    if _available_gb() < 11:
        pytest.skip(f"needs 11 GB more free memory; {_available_gb():.1f} GB available")
    x = big_input
    kw = dict(kernel_size=4, stride=4)
    if op == "max_pool2d_backward":
        out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
        gx = fastconv.max_pool2d_backward(np.ones_like(out), x, idx, **kw)
        del idx
        # One 1 per window, at the window's maximum: the last rows' gradient holds BIG_W // 4 ones.
        assert gx[0, 0, -4:].sum() == BIG_W // 4
        tail_idx = reference.max_pool2d_forward(_tail(x, 4), pool2d_geometry((1, 1, 4, BIG_W), 4, 4))[1]
        want = np.zeros(4 * BIG_W, np.float32)
        want[tail_idx.ravel()] = 1
        np.testing.assert_array_equal(gx[0, 0, -4:].ravel(), want)
    else:
        out = fastconv.avg_pool2d(x, **kw)
        gx = fastconv.avg_pool2d_backward(np.ones_like(out), x, **kw)
        assert np.all(gx[0, 0, -4:] == 1 / 16) and np.all(gx[0, 0, :4] == 1 / 16)
    del gx


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "reference"])
def test_strided_1x1_conv_past_2_31_elements(big_input, algorithm):
    """A strided 1x1 conv reads pixels past element 2**31; forward and weight gradient."""
    x = big_input
    w = np.full((2, 1, 1, 1), 0.5, np.float32)
    w[1] = -2
    out = fastconv.conv2d(x, w, stride=4, algorithm=algorithm)
    assert out.shape == (1, 2, BIG_H // 4, -(-BIG_W // 4))
    want_tail = x[0, 0, -64::4, ::4]
    np.testing.assert_array_equal(out[0, 0, -16:], 0.5 * want_tail)
    np.testing.assert_array_equal(out[0, 1, -16:], -2 * want_tail)
    go = np.zeros_like(out)
    go[0, :, -1, -1] = 1  # only the last output pixel: the weight gradient is the input there
    _, gw, gb = fastconv.conv2d_backward(go, x, w, stride=4, needs=("weight", "bias"), algorithm=algorithm)
    last = x[0, 0, (out.shape[2] - 1) * 4, (out.shape[3] - 1) * 4]
    np.testing.assert_array_equal(gw.reshape(-1), [last, last])
    np.testing.assert_array_equal(gb, [1, 1])
