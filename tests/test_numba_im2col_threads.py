"""numba_im2col's threads, as Cython's im2col: workers with their own tiles, columns and
single-threaded BLAS, grad_weight's per-worker accumulators, grad_input's samples per worker.

Checked against the reference on layers that make the workers split the work: tiles of whole
samples or of rows across samples, workspaces of a few rows, groups, strides and dilation,
a single channel, depthwise, pointwise; both layouts and dtypes.
"""
import numpy as np
import pytest

import fastconv
from fastconv import _config, _ext, algorithms
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import numba_im2col
from fastconv.testing import CONV_CASES, SUITE_LAYERS, ConvCase, conv_inputs

CASES = [
    # 7x7 planes: NCHW tiles of two whole samples (staging block), NHWC tiles of 15 rows
    ConvCase("small_planes", 9, 3, 7, 7, 5, (3, 3), padding=1),
    ConvCase("grouped_strided", 5, 6, 11, 10, 4, (3, 3), stride=2, padding=1, groups=2),
    ConvCase("one_channel_5x5_dilated", 4, 1, 12, 13, 6, (5, 5), padding=2, dilation=(1, 2)),
    ConvCase("depthwise", 3, 4, 9, 9, 4, (3, 3), padding=1, groups=4),
    ConvCase("pointwise", 4, 8, 6, 5, 6, (1, 1)),
    ConvCase("one_sample", 1, 5, 8, 9, 7, (3, 2), padding=1),   # grad_input: transposed forward
    # tiles long enough for both workers to be at work at once (a shared buffer shows)
    ConvCase("busy", 32, 32, 32, 32, 32, (3, 3), padding=1),
]
# Bytes: a few output rows per worker in float32, one in float64 (tiles by the dozen).
FEW_ROWS = 6000
TOLERANCE = {np.float32: 1e-4, np.float64: 1e-11}


@pytest.fixture(autouse=True)
def parallel_even_when_small(monkeypatch):
    """Threads for every call: these layers are far below the serial threshold."""
    monkeypatch.setattr(_config, "SERIAL_FLOPS", 0)


@pytest.fixture
def workspace_limit():
    previous = fastconv.get_workspace_limit()
    yield fastconv.set_workspace_limit
    fastconv.set_workspace_limit(previous)


def _case(case_id):
    return next(c for c in CASES if c.id == case_id)


def _geometry(case, data_format, dtype=np.float32):
    x, w, _ = conv_inputs(case, dtype, data_format)
    return conv2d_geometry(x.shape, w.shape, data_format=data_format, **case.kwargs)


def _results(case, dtype, data_format, threads, algorithm="numba_im2col"):
    """(output, grad_input, grad_weight) on `threads` threads."""
    x, w, b = conv_inputs(case, dtype, data_format)
    kwargs = dict(case.kwargs, data_format=data_format)
    gy = np.random.default_rng(1).standard_normal(
        _geometry(case, data_format).output_shape).astype(dtype)
    with fastconv.num_threads(threads):
        out = fastconv.conv2d(x, w, b, algorithm=algorithm, **kwargs)
        gx, gw, _ = fastconv.conv2d_backward(gy, x, w, algorithm=algorithm, **kwargs)
    return out, gx, gw


def _assert_close(got, want, dtype):
    """Equal to rounding: sums of thousands of terms round by a fraction of their largest."""
    for name, g, r in zip(("output", "grad_input", "grad_weight"), got, want):
        tolerance = TOLERANCE[dtype]
        np.testing.assert_allclose(g, r, rtol=tolerance, atol=tolerance * np.abs(r).max(),
                                   err_msg=name)


@pytest.mark.parametrize("limit", [None, FEW_ROWS, 1], ids=["default", "few_rows", "one_row"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_any_thread_count_matches_the_reference(case, dtype, data_format, limit,
                                                workspace_limit):
    if limit is not None:
        workspace_limit(limit)
    want = _results(case, dtype, data_format, 1, algorithm="reference")
    one = _results(case, dtype, data_format, 1)
    _assert_close(one, want, dtype)
    for threads in (2, 3):   # 3 workers share Numba's 2 threads on two cores
        _assert_close(_results(case, dtype, data_format, threads), one, dtype)


@pytest.mark.parametrize("limit", [None, FEW_ROWS], ids=["default", "few_rows"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_repeated_runs_are_bitwise_equal(case, data_format, limit, workspace_limit):
    if limit is not None:
        workspace_limit(limit)
    first = _results(case, np.float32, data_format, 2)
    for _ in range(3):
        for got, want in zip(_results(case, np.float32, data_format, 2), first):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_the_cases_have_tiles_across_samples_and_tiles_by_the_dozen(data_format):
    """What the tests above rely on: small_planes's tiles cover parts of two samples or
    several whole ones on two workers, and FEW_ROWS makes dozens of one- or two-row tiles."""
    case = _case("small_planes")
    adapter = algorithms._REGISTRY["numba_im2col"]
    geom = _geometry(case, data_format)
    nhwc = data_format == "NHWC"
    g = numba_im2col._geometry(geom.input_shape, geom.weight_shape, geom.output_shape, nhwc,
                               *geom.kernel_args)
    elements = adapter._workspace_elements(geom, (64 << 20) // 4, "forward", 2)
    tiles = numba_im2col._plan_tiles(g, elements, 0, nhwc, 2)
    assert tiles.threads == 2 and tiles.per_sample == 0
    assert tiles.rows % g.oH != 0 if nhwc else tiles.rows == 2 * g.oH
    tiles = numba_im2col._plan_tiles(g, FEW_ROWS // 4, g.K * g.R, nhwc, 2)
    assert tiles.threads == 2 and tiles.rows <= 2 and tiles.count >= 30


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_workspace_elements_are_cythons(op, data_format):
    """The same plan as the Cython module: the same workspace for every op, thread count and
    limit (from below one output row's columns to the default)."""
    for case in CASES + CONV_CASES + SUITE_LAYERS:
        geom = _geometry(case, data_format)
        sizes = (geom.batch, geom.in_channels, geom.in_h, geom.in_w, geom.out_channels,
                 geom.kernel_h, geom.kernel_w, geom.out_h, geom.out_w, geom.groups)
        for threads in (1, 2, 3):
            for limit in (1, 1000, FEW_ROWS, 1 << 16, 16 << 20):
                args = (*sizes, limit, geom.channels_last, op, threads)
                assert (numba_im2col.workspace_elements(*args)
                        == _ext.conv_im2col.workspace_elements(*args)), (case.id, threads, limit)


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernels_stay_inside_the_workspace_the_adapter_allocates(case, data_format, op):
    """Every worker's columns, staging block and accumulator lie in workspace_elements(op,
    threads): NaNs after it stay NaNs (BLAS writes through raw pointers), and the result holds."""
    adapter = algorithms._REGISTRY["numba_im2col"]
    geom = _geometry(case, data_format, np.float64)
    x, w, b = conv_inputs(case, np.float64, data_format)
    gy = np.random.default_rng(1).standard_normal(geom.output_shape)
    arrays = {"forward": (x, w, b, np.empty(geom.output_shape)),
              "grad_input": (gy, w, np.empty(geom.input_shape)),
              "grad_weight": (gy, x, np.empty(geom.weight_shape))}[op]
    for limit in (FEW_ROWS // 8, 64 << 17):
        n = adapter._workspace_elements(geom, limit, op, 2)
        buffer = np.full(n + 256, np.nan)
        kernel = getattr(numba_im2col, f"{op}_{data_format.lower()}")
        with _config.kernel_blas_threads(1):
            kernel(*arrays, buffer[:n], *geom.kernel_args, 2)
        assert np.isnan(buffer[n:]).all()
        kwargs = dict(case.kwargs, data_format=data_format)
        if op == "forward":
            want = fastconv.conv2d(x, w, b, algorithm="reference", **kwargs)
        else:
            grads = fastconv.conv2d_backward(gy, x, w, algorithm="reference", **kwargs)
            want = grads[0] if op == "grad_input" else grads[1]
        np.testing.assert_allclose(arrays[-1], want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_few_pixels_many_channels_run_tiles_in_turn_with_blas_on_all_cores(data_format):
    """As Cython's im2col: a worker's share of the columns smaller than the weights (32
    output pixels, 2 threads x 128 channels) means one worker, BLAS on both cores."""
    case = ConvCase("wide", 2, 128, 4, 4, 128, (3, 3), padding=1)
    geom = _geometry(case, data_format)
    numba_adapter = algorithms._REGISTRY["numba_im2col"]
    cython_adapter = algorithms._REGISTRY["im2col"]
    for op in ("forward", "grad_input", "grad_weight"):
        assert numba_adapter._thread_split(op, geom, 2) == (1, 2)
        assert numba_adapter._thread_split(op, _geometry(_case("small_planes"), data_format), 2) \
            == cython_adapter._thread_split(op, _geometry(_case("small_planes"), data_format), 2) \
            == (2, 1)
    want = _results(case, np.float64, data_format, 1, algorithm="reference")
    _assert_close(_results(case, np.float64, data_format, 2), want, np.float64)
