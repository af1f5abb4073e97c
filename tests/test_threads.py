"""One thread count for OpenMP, Numba and BLAS; results independent of it within rounding."""
import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastconv
from fastconv import algorithms
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import compiled
from fastconv.testing import CONV_CASES, ConvCase, conv_inputs


def _blas_threads():
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_default_is_the_usable_cores():
    assert fastconv.get_num_threads() == fastconv._config.usable_cores() >= 1


def test_set_and_restore_threads_governs_blas():
    before = fastconv.get_num_threads()
    with fastconv.num_threads(1):
        assert fastconv.get_num_threads() == 1
        fastconv.conv2d(*conv_inputs(CONV_CASES[1]), algorithm="im2col", **CONV_CASES[1].kwargs)
        assert _blas_threads() == {1}
    assert fastconv.get_num_threads() == before
    fastconv.conv2d(*conv_inputs(CONV_CASES[1]), algorithm="im2col", **CONV_CASES[1].kwargs)
    assert _blas_threads() == {before}


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", None])
def test_bad_thread_counts(bad):
    with pytest.raises((ValueError, TypeError), match="Received: n="):
        fastconv.set_num_threads(bad)


@pytest.mark.parametrize("algorithm", [a for a in fastconv.list_algorithms() if a != "reference"])
def test_results_depend_on_threads_only_within_rounding(algorithm):
    case = next(c for c in CONV_CASES if c.id == "wide_channels")
    x, w, b = conv_inputs(case, np.float32)
    results = {}
    for n in (1, 2, 3):
        with fastconv.num_threads(n):
            out = fastconv.conv2d(x, w, b, algorithm=algorithm, **case.kwargs)
            grads = fastconv.conv2d_backward(np.ones_like(out), x, w, algorithm=algorithm, **case.kwargs)
            again = fastconv.conv2d(x, w, b, algorithm=algorithm, **case.kwargs)
            np.testing.assert_array_equal(out, again)  # fixed count: bitwise identical
            results[n] = (out, *grads)
    for n in (2, 3):
        for got, want in zip(results[n], results[1]):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("algorithm", ["im2col", "winograd", "numba_winograd"])
def test_few_pixels_many_channels_run_one_gemm_on_all_cores(algorithm, data_format):
    # 32 output pixels < 2 threads x 128 channels: the tiles run in turn, each GEMM on both
    # cores: split over the kernel's OpenMP threads (im2col) or on BLAS's (the others)
    case = dataclasses.replace(next(c for c in CONV_CASES if c.id == "wide_channels"),
                               batch=2, in_channels=128, height=4, width=4, out_channels=128)
    x, w, b = conv_inputs(case, np.float64, data_format)
    geom = conv2d_geometry(x.shape, w.shape, data_format=data_format, **case.kwargs)
    chosen = algorithms._REGISTRY[algorithm]
    assert chosen._thread_split("forward", geom, 2) == ((2, 1) if algorithm == "im2col" else (1, 2))
    kw = dict(case.kwargs, data_format=data_format)
    gy = np.random.default_rng(3).standard_normal(geom.output_shape)
    with fastconv.num_threads(2):
        got = [fastconv.conv2d(x, w, b, algorithm=algorithm, **kw),
               *fastconv.conv2d_backward(gy, x, w, algorithm=algorithm, **kw)[:2]]
    want = [fastconv.conv2d(x, w, b, algorithm="reference", **kw),
            *fastconv.conv2d_backward(gy, x, w, algorithm="reference", **kw)[:2]]
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("kernel, stride, padding", [((3, 3), 2, 1), ((1, 1), 1, 0)])
def test_im2col_tiles_in_turn_split_each_gemm_over_the_threads(kernel, stride, padding, groups,
                                                                dtype, data_format):
    # One sample of 25 output pixels (a strided 3x3, or a 1x1 that multiplies the input in
    # place), 96 channels: every op runs its tiles (and col2im its sample) in turn, and each
    # GEMM's rows or columns are cut into blocks of 16 for the threads, with 3 threads some
    # blocks short or empty.
    size = 9 if stride == 2 else 5
    case = ConvCase("in_turn", 1, 64, size, size, 96, kernel, stride=stride, padding=padding,
                    groups=groups)
    x, w, b = conv_inputs(case, dtype, data_format)
    geom = conv2d_geometry(x.shape, w.shape, data_format=data_format, **case.kwargs)
    assert compiled.weights_outweigh_columns(geom, 2)
    kw = dict(case.kwargs, data_format=data_format)
    gy = np.random.default_rng(5).standard_normal(geom.output_shape).astype(dtype)
    want = [fastconv.conv2d(x, w, b, algorithm="reference", **kw),
            *fastconv.conv2d_backward(gy, x, w, algorithm="reference", **kw)[:2]]
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for threads in (1, 2, 3):
        with fastconv.num_threads(threads):
            got = [fastconv.conv2d(x, w, b, algorithm="im2col", **kw),
                   *fastconv.conv2d_backward(gy, x, w, algorithm="im2col", **kw)[:2]]
            again = fastconv.conv2d(x, w, b, algorithm="im2col", **kw)
        np.testing.assert_array_equal(got[0], again)
        for g, r in zip(got, want):
            np.testing.assert_allclose(g, r, rtol=tol, atol=tol)


SCRIPT = textwrap.dedent("""
    import numpy as np, fastconv
    from fastconv.testing import SUITE_LAYERS, conv_inputs
    case = [c for c in SUITE_LAYERS if c.id == "cifar_res20"][0]
    x, w, b = conv_inputs(case)
    x = x[:8]
    fastconv.set_num_threads({threads})
    for algorithm in ("direct", "im2col", "numba_direct", "numba_im2col"):
        out = fastconv.conv2d(x, w, b, algorithm=algorithm, **case.kwargs)
        fastconv.conv2d_backward(np.ones_like(out), x, w, algorithm=algorithm, **case.kwargs)
    fastconv.max_pool2d(out, 2)
    print("ok")
""")


@pytest.mark.parametrize("omp, openblas, threads", [
    ("1", "4", 2), ("4", "1", 1), ("3", "3", 4), (None, "2", 1), ("2", None, 3)])
def test_no_hang_with_conflicting_environment(omp, openblas, threads):
    env = dict(os.environ)
    for name, value in (("OMP_NUM_THREADS", omp), ("OPENBLAS_NUM_THREADS", openblas)):
        env.pop(name, None)
        if value is not None:
            env[name] = value
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(threads=threads)], env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_ctrl_c_just_after_counting_a_blas_user_does_not_block_later_calls(monkeypatch):
    """A KeyboardInterrupt can land as kernel_blas_threads leaves its lock, just after it
    counted the caller as a user of its BLAS thread count. The user must be uncounted again:
    a later call needing another count would otherwise wait forever (a notebook that
    interrupts a fit and trains again)."""
    import threading

    from fastconv import _config

    class InterruptedOnce(threading.Condition):
        armed = True

        def __exit__(self, *exc):
            released = super().__exit__(*exc)
            if self.armed:
                self.armed = False
                raise KeyboardInterrupt
            return released

    with fastconv.num_threads(2):
        monkeypatch.setattr(_config, "_blas_mode", InterruptedOnce())
        with pytest.raises(KeyboardInterrupt):
            with _config.kernel_blas_threads(1):
                pass
        assert _config._blas_mode_users == 0
        done = threading.Event()

        def other_count():
            with _config.kernel_blas_threads(2):
                done.set()

        worker = threading.Thread(target=other_count, daemon=True)
        worker.start()
        worker.join(10)
        assert done.is_set(), "a call needing 2 BLAS threads blocked after the interrupt"


def test_ctrl_c_inside_a_kernel_releases_its_blas_threads():
    from fastconv import _config

    with fastconv.num_threads(2):
        with pytest.raises(KeyboardInterrupt):
            with _config.kernel_blas_threads(1):
                raise KeyboardInterrupt
        assert _config._blas_mode_users == 0
