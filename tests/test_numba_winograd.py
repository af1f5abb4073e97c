"""numba_winograd: the Numba port of Cython's Winograd kernels agrees with them and with the
reference, runs the same tilings (F(2x2, 5x5) for 5x5 kernels with 16 or more channels per group),
keeps infinities and NaN where a direct sum puts them, and runs BLAS on one thread."""
import contextlib

import numpy as np
import pytest

import fastconv
from fastconv import _config, _ext, algorithms
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import numba_winograd
from fastconv.testing import ConvCase, conv_inputs
from fastconv.testing.tolerances import assert_close

CASES = [
    ConvCase("c8_3x3_odd_output", 2, 8, 9, 11, 6, (3, 3), padding=1),      # 9x11: partial tiles
    ConvCase("c8_3x3_valid", 3, 8, 8, 9, 5, (3, 3)),
    ConvCase("c6_3x3_asymmetric", 2, 6, 7, 8, 7, (3, 3), padding=((0, 2), (1, 0))),
    ConvCase("c8_5x5_same", 2, 8, 10, 7, 6, (5, 5), padding="same"),
    ConvCase("c5_3x5", 2, 5, 9, 12, 4, (3, 5), padding=(1, 2)),
    ConvCase("c12_3x3_groups3", 2, 12, 9, 9, 9, (3, 3), padding=1, groups=3),
    ConvCase("c8_5x5_groups2", 2, 8, 11, 9, 10, (5, 5), padding=2, groups=2),
    ConvCase("c37_3x3_batch1", 1, 37, 10, 9, 19, (3, 3), padding=1),        # vector remainders
    ConvCase("c16_3x3_many_blocks", 3, 16, 30, 26, 24, (3, 3), padding=1, bias=False),
]
# F(2x2, 5x5) and F(5x5, 2x2): 5x5 kernels with 16 or more channels per group
F25_CASES = [
    ConvCase("c16_5x5_odd_output", 2, 16, 9, 9, 8, (5, 5)),     # 5x5: edge tiles on both sides
    ConvCase("c20_5x5_same", 1, 20, 7, 12, 24, (5, 5), padding="same"),
    ConvCase("c17_5x5_asymmetric", 2, 17, 8, 6, 5, (5, 5), padding=((0, 3), (2, 1))),
    ConvCase("c32_5x5_groups2", 2, 32, 10, 11, 16, (5, 5), padding=1, groups=2),
    ConvCase("c48_5x5_one_pixel", 1, 48, 5, 5, 48, (5, 5), groups=3),
    ConvCase("c32_5x5_many_blocks", 3, 32, 14, 14, 40, (5, 5), padding=2, bias=False),
]
OPS = ("forward", "grad_input", "grad_weight")


def _results(case, algorithm, dtype, data_format, x=None, grad_output=None):
    """forward, grad_input and grad_weight of a case, from the given x and grad_output or
    seeded random ones."""
    x0, w, b = conv_inputs(case, dtype, data_format)
    x = x0 if x is None else x
    kw = dict(case.kwargs, data_format=data_format, algorithm=algorithm)
    y = fastconv.conv2d(x, w, b, **kw)
    if grad_output is None:
        grad_output = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    return [y, *fastconv.conv2d_backward(grad_output, x, w, **kw)[:2]]


def _reference(case, dtype, data_format, x=None, grad_output=None):
    """The reference's results in float64, from the same inputs."""
    x0, w, b = conv_inputs(case, dtype, data_format)
    x = x0 if x is None else x
    if grad_output is None:
        geom = conv2d_geometry(x.shape, w.shape, data_format=data_format, **case.kwargs)
        grad_output = np.random.default_rng(5).standard_normal(geom.output_shape).astype(dtype)
    x64, w64, go64 = (a.astype(np.float64) for a in (x, w, grad_output))
    b64 = None if b is None else b.astype(np.float64)
    kw = dict(case.kwargs, data_format=data_format, algorithm="reference")
    return [fastconv.conv2d(x64, w64, b64, **kw),
            *fastconv.conv2d_backward(go64, x64, w64, **kw)[:2]]


def _geometry(case, data_format):
    x, w, _ = conv_inputs(case, np.float32, data_format)
    return conv2d_geometry(x.shape, w.shape, data_format=data_format, **case.kwargs)


def _sizes(case, threads):
    """The arguments of the modules' workspace functions for a case."""
    g = _geometry(case, "NCHW")
    return (g.batch, g.in_channels, g.in_h, g.in_w, g.out_channels, g.kernel_h, g.kernel_w,
            g.out_h, g.out_w, g.padding[0][0], g.padding[1][0], g.groups, threads)


def _transform_roundings(kernel, channels_per_group):
    """How many roundings of the result's size Numba's and Cython's transforms may differ by:
    F(2x2, 5x5)'s scale values by up to 10 along each axis before they cancel."""
    return 64 if kernel == (5, 5) and channels_per_group >= 16 else 16


@contextlib.contextmanager
def _parallel_calls(threads):
    """`threads` threads, used even on these small layers."""
    saved = _config.SERIAL_FLOPS
    _config.SERIAL_FLOPS = 0
    try:
        with fastconv.num_threads(threads):
            yield
    finally:
        _config.SERIAL_FLOPS = saved


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CASES + F25_CASES, ids=lambda c: c.id)
def test_the_cases_run_numba_winograd_itself(case, data_format):
    geom = _geometry(case, data_format)
    for op in OPS:
        assert algorithms.select(op, geom, np.float32, "numba_winograd").name == "numba_winograd"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CASES + F25_CASES, ids=lambda c: c.id)
def test_matches_the_reference(case, data_format, dtype):
    got = _results(case, "numba_winograd", dtype, data_format)
    want = _reference(case, dtype, data_format)
    taps = case.in_channels // case.groups * case.kernel[0] * case.kernel[1]
    # N*oH*oW terms per weight; F(5x5, 2x2)'s 6x6 transforms add rounding of their own whatever
    # that count (as in test_winograd_5x5)
    lengths = (taps, case.out_channels // case.groups * case.kernel[0] * case.kernel[1],
               max(got[0].size // case.out_channels, 36))
    for op, g, r, length in zip(OPS, got, want, lengths):
        assert g.dtype == dtype
        assert_close(g, r, dtype, length, op)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", CASES + F25_CASES, ids=lambda c: c.id)
def test_matches_cythons_winograd_to_a_few_roundings(case, data_format, dtype):
    # The same algorithm and GEMMs: only the order of the transforms' additions may differ.
    with _parallel_calls(2):
        got = _results(case, "numba_winograd", dtype, data_format)
        want = _results(case, "winograd", dtype, data_format)
    roundings = _transform_roundings(case.kernel, case.in_channels // case.groups)
    for op, g, w in zip(OPS, got, want):
        bound = roundings * np.finfo(dtype).eps * max(1.0, float(np.abs(w).max()))
        assert float(np.abs(g.astype(np.float64) - w).max()) <= bound, op


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("C", [6, 32])      # 5x5 on 3x3 sub-kernels, F(2x2, 5x5)
def test_module_functions_match_cythons(C, nhwc, dtype):
    # the module interface itself: the same arguments, flags and results as _conv_winograd
    N, H, W, K, k, pad, G = 2, 9, 8, 4, 5, 2, 2
    oH, oW = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, H, W, C) if nhwc else (N, C, H, W)).astype(dtype)
    hwio = rng.standard_normal((k, k, C // G, K)).astype(dtype)
    bias = rng.standard_normal(K).astype(dtype)
    out_shape = (N, oH, oW, K) if nhwc else (N, K, oH, oW)
    grad_output = rng.standard_normal(out_shape).astype(dtype)
    weight_shape = hwio.shape if nhwc else (K, C // G, k, k)
    layout = "nhwc" if nhwc else "nchw"
    results = []
    for module in (numba_winograd, _ext.conv_winograd):
        sizes = (N, C, H, W, K, k, k, oH, oW, pad, pad, G, 2)
        out = np.empty(out_shape, dtype)
        workspace = np.empty(module.workspace_elements(*sizes), dtype)
        flag = getattr(module, f"forward_{layout}")(x, hwio, bias, out, workspace, pad, pad, G, 2)
        grad_weight = np.empty(weight_shape, dtype)
        workspace = np.empty(module.grad_weight_workspace_elements(*sizes), dtype)
        getattr(module, f"grad_weight_{layout}")(grad_output, x, grad_weight, workspace, pad, pad,
                                                  G, 2)
        results.append((flag, out, grad_weight))
    (flag, out, grad_weight), (cython_flag, cython_out, cython_grad_weight) = results
    assert flag is cython_flag is False
    eps = _transform_roundings((k, k), C // G) * np.finfo(dtype).eps
    np.testing.assert_allclose(out, cython_out, rtol=0, atol=eps * np.abs(cython_out).max())
    np.testing.assert_allclose(grad_weight, cython_grad_weight, rtol=0,
                               atol=eps * np.abs(cython_grad_weight).max())


@pytest.mark.parametrize("kernel, channels, groups, alpha", [
    ((5, 5), 16, 1, 6), ((5, 5), 64, 2, 6), ((5, 5), 15, 1, 4), ((5, 5), 30, 2, 4),
    ((3, 5), 32, 1, 4), ((5, 3), 32, 1, 4), ((3, 3), 64, 1, 4)])
def test_the_plan_takes_f25_for_5x5_kernels_of_16_or_more_channels_per_group(kernel, channels,
                                                                            groups, alpha):
    kh, kw = kernel
    p = numba_winograd._plan(2, channels, 12, 12, 8, kh, kw, 13 - kh, 13 - kw, 0, 0, groups, 2)
    assert (p.alpha, p.npos) == (alpha, alpha * alpha)
    if alpha == 6:      # the whole kernel at once: one "sub-kernel", nothing to crop
        assert (p.S, p.R, p.span, p.padded) == (1, channels // groups, 6, 0)


@pytest.mark.parametrize("case", CASES + F25_CASES, ids=lambda c: c.id)
def test_the_same_tiling_as_cythons(case):
    # The workspaces differ only where the scratch does: per thread Numba keeps 4*Kg spare
    # outputs for edge tiles (Cython: Kg for F(2x2, 5x5), none otherwise), and its weight
    # gradient a kernel gradient padded to whole sub-kernels. U, V, M and the staging - the
    # positions, the blocks and the strides - are the same size.
    sizes = _sizes(case, 2)
    p = numba_winograd._plan(*sizes)
    spare = p.threads * (4 * p.Kg - (p.Kg if p.alpha == 6 else 0))
    cython = _ext.conv_winograd
    assert numba_winograd.workspace_elements(*sizes) == cython.workspace_elements(*sizes) + spare
    assert (numba_winograd.grad_weight_workspace_elements(*sizes)
            == cython.grad_weight_workspace_elements(*sizes) + spare + p.padded)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [CASES[3], F25_CASES[0], F25_CASES[3]], ids=lambda c: c.id)
def test_the_kernels_stay_within_the_workspace_they_ask_for(case, data_format):
    x, w, b = conv_inputs(case, np.float64, data_format)
    hwio = w if data_format == "NHWC" else np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    out_shape = _geometry(case, data_format).output_shape
    sizes = _sizes(case, 2)
    tail = sizes[9:]    # pad_top, pad_left, groups, threads
    layout = data_format.lower()
    forward = getattr(numba_winograd, f"forward_{layout}")
    grad_weight = getattr(numba_winograd, f"grad_weight_{layout}")
    runs = {
        numba_winograd.workspace_elements:
            lambda ws: forward(x, hwio, b, np.empty(out_shape), ws, *tail),
        numba_winograd.grad_weight_workspace_elements:
            lambda ws: grad_weight(np.ones(out_shape), x, np.empty(w.shape), ws, *tail),
    }
    for elements, run in runs.items():
        n = elements(*sizes)
        guarded = np.full(n + 64, 7.0)
        run(guarded[:n])
        assert (guarded[n:] == 7.0).all(), elements.__name__


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [CASES[0], F25_CASES[0]], ids=lambda c: c.id)
def test_infinities_and_nan_land_where_a_direct_sum_puts_them(case, data_format, monkeypatch):
    x, _, _ = conv_inputs(case, np.float64, data_format)
    nchw = x if data_format == "NCHW" else x.transpose(0, 3, 1, 2)   # a view: writes reach x
    nchw[0, 1, 4, 5] = np.inf
    nchw[1, 3, 0, 2] = -np.inf
    nchw[1, 0, 7, 8] = np.nan
    fallback = algorithms._REGISTRY["numba_winograd"]._fallback
    assert fallback.name == "numba_im2col"
    calls = []
    for op in OPS:
        original = getattr(fallback, op)
        monkeypatch.setattr(fallback, op, lambda *a, op=op, original=original: (
            calls.append(op), original(*a))[1])
    grad_output = np.ones(_geometry(case, data_format).output_shape)
    grad_output.flat[3] = np.inf
    got = _results(case, "numba_winograd", np.float64, data_format, x, grad_output)
    want = _reference(case, np.float64, data_format, x, grad_output)
    for op, g, r in zip(OPS, got, want):
        assert not np.isfinite(r).all(), op
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=op)
        np.testing.assert_array_equal(np.isinf(g) * np.sign(g), np.isinf(r) * np.sign(r),
                                      err_msg=op)
        finite = np.isfinite(r)
        np.testing.assert_allclose(g[finite], r[finite], rtol=1e-10, atol=1e-10, err_msg=op)
    assert calls == ["forward", "forward", "grad_weight"]    # grad_input: the transposed forward


def test_the_module_flags_outputs_that_are_not_finite():
    x = np.ones((1, 4, 6, 6), np.float32)
    hwio = np.ones((3, 3, 4, 2), np.float32)
    out = np.empty((1, 2, 4, 4), np.float32)
    workspace = np.empty(numba_winograd.workspace_elements(1, 4, 6, 6, 2, 3, 3, 4, 4, 0, 0, 1, 1),
                         np.float32)
    bias = np.zeros(2, np.float32)
    assert numba_winograd.forward_nchw(x, hwio, bias, out, workspace, 0, 0, 1, 1) is False
    x[0, 2, 5, 5] = np.nan
    assert numba_winograd.forward_nchw(x, hwio, bias, out, workspace, 0, 0, 1, 1) is True


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [CASES[-1], F25_CASES[-1]], ids=lambda c: c.id)
def test_one_and_two_threads_agree(case, data_format):
    results = {}
    for threads in (1, 2):
        with _parallel_calls(threads):
            results[threads] = _results(case, "numba_winograd", np.float64, data_format)
            again = _results(case, "numba_winograd", np.float64, data_format)
        for first, second in zip(results[threads], again):
            np.testing.assert_array_equal(first, second)     # a fixed count: the same bits
    for op, one, two in zip(OPS, results[1], results[2]):     # blocks of other sizes: rounding
        np.testing.assert_allclose(one, two, rtol=1e-12,
                                   atol=1e-12 * max(1.0, float(np.abs(one).max())), err_msg=op)


def test_blas_runs_on_one_thread_beside_the_kernels_threads(monkeypatch):
    case = CASES[-1]
    blas_threads = []
    original = _config.kernel_blas_threads

    def recording(n):
        blas_threads.append(n)
        return original(n)

    monkeypatch.setattr(_config, "kernel_blas_threads", recording)
    with _parallel_calls(2):
        _results(case, "numba_winograd", np.float32, "NHWC")
    assert blas_threads == [1, 1, 1]
