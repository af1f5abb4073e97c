"""The specialised pooling kernels (NCHW 2x2 / 3x3 stride-2 rows, NHWC channel blocks) bit for bit.

The shared POOL_CASES are small (rows of 3-5 outputs, 2-4 channels), so they miss the vectorised runs of
the fast kernels: rows of at least 8 outputs, overlapping last runs, blocks of 64 channels plus a
remainder. Ties (small integers) and NaNs make the argmax rule visible.
"""
import numpy as np
import pytest

import fastconv
from fastconv._geometry import pool2d_geometry
from fastconv.algorithms import reference

# (H, W, kernel, stride, padding, ceil_mode): row lengths 6-33 around the vector lengths 4, 8 and 16
SHAPES = [
    (24, 24, 2, 2, 0, False),   # 2x2 windows tile the plane: the backward skips clearing it
    (15, 33, 2, 2, 0, False),   # the last row and column in no window: their gradient is 0
    (17, 35, 2, 2, 1, True),
    (16, 30, 2, 2, 0, False),
    (19, 67, 3, 2, 1, False),
    (14, 33, 3, 2, 0, True),
    (11, 40, 3, 2, 1, True),
    (9, 18, 3, 2, 1, False),
    (9, 12, 2, 2, 0, False),    # rows of 6 outputs: half vectors of double, scalars of float (AVX-512)
]


def _input(shape, dtype, seed, nan):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(dtype)  # many ties
    if nan:
        x.reshape(-1)[rng.choice(x.size, x.size // 50 + 1, replace=False)] = np.nan
    x.reshape(-1)[rng.choice(x.size, x.size // 50 + 1, replace=False)] = -np.inf
    return x


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nan", [False, True])
def test_max_pool2d_fast_paths_bitwise(shape, data_format, dtype, nan):
    h, w, k, s, p, ceil_mode = shape
    channels = 70 if data_format == "NHWC" else 3  # a 64-channel block and a remainder
    x = _input((2, channels, h, w), dtype, h * w + k, nan)
    if data_format == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    geom = pool2d_geometry(x.shape, k, s, p, 1, ceil_mode, data_format)
    out, idx = fastconv.max_pool2d(x, k, s, p, ceil_mode=ceil_mode, return_indices=True, data_format=data_format)
    ref_out, ref_idx = reference.max_pool2d_forward(x, geom)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("shape", SHAPES + [(9, 11, 3, 1, 1, False), (12, 12, 3, 3, 0, False)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("threads", [1, 2])
def test_max_pool2d_without_indices_gives_the_same_output(shape, data_format, backend, threads,
                                                           monkeypatch):
    """Without return_indices the kernels keep the indices in per-thread scratch: the
    output must be the one the indices run gives, on every thread of a parallel call."""
    from fastconv import _config
    h, w, k, s, p, ceil_mode = shape
    x = _input((3, 70, h, w), np.float32, h + w, True)
    if data_format == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    monkeypatch.setattr(_config, "SERIAL_BYTES", 0)    # a parallel region even for small arrays
    kwargs = dict(ceil_mode=ceil_mode, data_format=data_format)
    fastconv.set_pooling_backend(backend)
    try:
        with fastconv.num_threads(threads):
            out = fastconv.max_pool2d(x, k, s, p, **kwargs)
            with_indices, _ = fastconv.max_pool2d(x, k, s, p, return_indices=True, **kwargs)
    finally:
        fastconv.set_pooling_backend("cython")
    np.testing.assert_array_equal(out, with_indices)


def _signed_zeros_and_nan_payloads(shape, dtype, seed):
    """Ties between +0.0 and -0.0, and NaNs that differ in their payload bits: values equal under ==
    that differ bit for bit, so a kernel that takes another window element than the first maximum
    (or the last NaN) shows."""
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-1.0, -0.0, 0.0, 1.0, -np.inf], dtype), size=shape)
    bits = x.view(np.uint32 if dtype == np.float32 else np.uint64)
    nan = rng.choice(x.size, x.size // 40 + 1, replace=False)
    quiet = 0x7FC00000 if dtype == np.float32 else 0x7FF8000000000000
    bits.reshape(-1)[nan] = quiet + 1 + np.arange(nan.size)   # NaNs numbered in memory order
    return x


@pytest.mark.parametrize("shape", SHAPES + [(12, 12, 3, 1, 1, False), (20, 9, 2, 3, 1, True), (10, 12, 3, 2, 1, False),
                                            (7, 5, 3, 2, 1, False), (40, 131, 3, 2, 1, True)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_max_pool2d_values_only_is_the_indexed_element_bit_for_bit(shape, dtype, threads, monkeypatch):
    """Without indices, NCHW 2x2 and 3x3 windows at column stride 2 take a values-only kernel, in
    whole vectors, half vectors (rows of 4-15 outputs) or scalars. Its output must be exactly the
    element the indices name."""
    from fastconv import _config
    h, w, k, s, p, ceil_mode = shape
    x = _signed_zeros_and_nan_payloads((2, 5, h, w), dtype, h * w + s)
    monkeypatch.setattr(_config, "SERIAL_BYTES", 0)
    with fastconv.num_threads(threads):
        out = fastconv.max_pool2d(x, k, (s, 2), p, ceil_mode=ceil_mode)
        _, idx = fastconv.max_pool2d(x, k, (s, 2), p, ceil_mode=ceil_mode, return_indices=True)
    taken = np.take_along_axis(x.reshape(2, 5, -1), idx.reshape(2, 5, -1), axis=2).reshape(out.shape)
    uint = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(out.view(uint), taken.view(uint))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_fast_paths_match_torch(shape, dtype):
    torch = pytest.importorskip("torch")
    h, w, k, s, p, ceil_mode = shape
    x = _input((2, 3, h, w), dtype, 7 * h + w, True)
    out_t, idx_t = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, 1, ceil_mode, return_indices=True)
    out, idx = fastconv.max_pool2d(x, k, s, p, ceil_mode=ceil_mode, return_indices=True)
    np.testing.assert_array_equal(out, out_t.numpy())
    np.testing.assert_array_equal(idx, idx_t.numpy())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count_include_pad,divisor_override", [(True, None), (False, None), (True, 3)])
def test_avg_pool2d_fast_paths_match_torch(shape, dtype, count_include_pad, divisor_override):
    """NCHW rows of 2x2 / 3x3 stride-2 windows: the same sums in the same order as PyTorch, bit for bit."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    h, w, k, s, p, ceil_mode = shape
    rng = np.random.default_rng(h * w)
    x = rng.standard_normal((2, 3, h, w)).astype(dtype)
    x[0, 0, :2, :4] = -0.0  # an all -0.0 window sums to +0.0, as from 0
    kw = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad, divisor_override=divisor_override)
    xt = torch.from_numpy(x).requires_grad_()
    out_t = F.avg_pool2d(xt, k, s, p, **kw)
    go = rng.standard_normal(out_t.shape).astype(dtype)
    go[0, 0, 0, :2] = -0.0
    (grad_t,) = torch.autograd.grad(out_t, xt, torch.from_numpy(go))
    out = fastconv.avg_pool2d(x, k, s, p, **kw)
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    assert not np.signbit(out[0, 0, 0, 0])
    grad = fastconv.avg_pool2d_backward(go, x, k, s, p, **kw)
    np.testing.assert_array_equal(grad, grad_t.numpy())
    np.testing.assert_array_equal(np.signbit(grad), np.signbit(grad_t.numpy()))


@pytest.mark.parametrize("shape", SHAPES + [(12, 15, 3, 3, 0, False)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch, threads", [(1, 2), (3, 1), (9, 2)])
@pytest.mark.parametrize("count_include_pad,divisor_override", [(True, None), (True, 3)])
def test_avg_pool2d_nhwc_backward_matches_torch(shape, dtype, batch, threads, count_include_pad,
                                                divisor_override):
    """NHWC input gradient, channel blocks (one sample on two threads: blocks of 16 of the 70
    channels) and windows that tile the plane (written once, not cleared and added to): the
    same bits as PyTorch's, -0.0 gradients landing as +0.0."""
    torch = pytest.importorskip("torch")
    h, w, k, s, p, ceil_mode = shape
    rng = np.random.default_rng(h * w + batch)
    x = rng.standard_normal((batch, h, w, 70)).astype(dtype)
    kw = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad, divisor_override=divisor_override)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
    out_t = torch.nn.functional.avg_pool2d(xt, k, s, p, **kw)
    go = rng.standard_normal(out_t.shape).astype(dtype)
    go[0, :5, 0, 0] = -0.0
    (grad_t,) = torch.autograd.grad(out_t, xt, torch.from_numpy(go))
    grad_t = grad_t.permute(0, 2, 3, 1).numpy()
    with fastconv.num_threads(threads):
        grad = fastconv.avg_pool2d_backward(np.ascontiguousarray(go.transpose(0, 2, 3, 1)), x, k, s, p,
                                            data_format="NHWC", **kw)
    np.testing.assert_array_equal(grad, grad_t)
    np.testing.assert_array_equal(np.signbit(grad), np.signbit(grad_t))


@pytest.mark.parametrize("h, w, k", [(24, 24, 2), (8, 12, 2), (12, 15, 3), (4, 6, (2, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("threads", [1, 2])
def test_max_pool2d_nhwc_backward_of_tiling_windows_bitwise(h, w, k, dtype, backend, threads):
    """Windows that tile the plane: the input gradient written once, without clearing it first,
    is the scatter's bit for bit (-0.0 gradients landing as +0.0), and PyTorch's; indices that
    leave their window (a caller's own) fall back to the scatter."""
    torch = pytest.importorskip("torch")
    x = _input((3, h, w, 37), dtype, h * w, nan=True)
    go = np.random.default_rng(h).standard_normal(
        fastconv.pool2d_output_shape(x.shape, k, data_format="NHWC")).astype(dtype)
    go[0, 0, 0, :4] = -0.0
    out, idx = fastconv.max_pool2d(x, k, return_indices=True, data_format="NHWC")
    scatter = np.empty_like(x)
    fastconv._ext.pooling.max_pool2d_backward_nhwc(go, idx, scatter, 1)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
    out_t = torch.nn.functional.max_pool2d(xt, k)
    (want,) = torch.autograd.grad(out_t, xt, torch.from_numpy(go).permute(0, 3, 1, 2))
    want = want.permute(0, 2, 3, 1).numpy()
    moved = idx.copy()
    moved[1, 0, 0, 5] = (h - 1) * w + w - 1     # in the plane, not in window (0, 0)
    moved_scatter = np.empty_like(x)
    fastconv._ext.pooling.max_pool2d_backward_nhwc(go, moved, moved_scatter, 1)
    fastconv.set_pooling_backend(backend)
    try:
        with fastconv.num_threads(threads):
            got = fastconv.max_pool2d_backward(go, x, idx, k, data_format="NHWC")
            got_moved = fastconv.max_pool2d_backward(go, x, moved, k, data_format="NHWC")
    finally:
        fastconv.set_pooling_backend("cython")
    for a in (scatter, want):
        np.testing.assert_array_equal(got, a)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(a))
    np.testing.assert_array_equal(got_moved, moved_scatter)
    assert got_moved[1, -1, -1, 5] != 0 or go[1, 0, 0, 5] == 0


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch, hw", [(1, (7, 7)), (3, (8, 8)), (9, (1, 3)), (2, (13, 11))])
@pytest.mark.parametrize("threads", [1, 2])
def test_global_avg_pool2d_kernels(data_format, dtype, batch, hw, threads):
    """Rows of whole vectors, a vector and a tail (NCHW), channel blocks of one sample on two
    threads (NHWC): the mean within rounding of float64's, infinities and NaNs carried."""
    x = np.random.default_rng(batch).standard_normal((batch, 70) + hw).astype(dtype)
    x[0, 1, 0, 0], x[0, 2, 0, 0], x[-1, 3, -1, -1] = np.inf, np.nan, -np.inf
    x[0, 4, 0, 0], x[0, 4, -1, -1] = np.inf, -np.inf
    with np.errstate(invalid="ignore"):
        want = x.astype(np.float64).mean(axis=(2, 3))
    if data_format == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    with fastconv.num_threads(threads):
        got = fastconv.global_avg_pool2d(x, data_format=data_format)
    assert got.dtype == dtype and got.shape == (batch, 70)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6)
    assert np.isposinf(got[0, 1]) and np.isnan(got[0, 2]) and np.isneginf(got[-1, 3])
    assert np.isnan(got[0, 4])    # inf - inf


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("bad", [-1, 19 * 21, 2**40])
def test_max_pool2d_backward_scatter_refuses_an_index_outside_its_plane(backend, data_format,
                                                                        bad):
    """The scatter checks each index as it goes (no pass over them first): one outside its
    plane, among valid ones, is never followed and gives the range error."""
    x = np.random.default_rng(7).standard_normal((2, 5, 19, 21)).astype(np.float32)
    if data_format == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    kw = dict(kernel_size=3, stride=2, padding=1, data_format=data_format)
    out, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    idx.reshape(-1)[idx.size // 2] = bad
    fastconv.set_pooling_backend(backend)
    try:
        with pytest.raises(ValueError, match=rf"indices must lie in \[0, H\*W\) = \[0, 399\)\. "
                                             rf"Received: indices between {min(bad, 0)} and"):
            fastconv.max_pool2d_backward(out, x, idx, **kw)
        idx.reshape(-1)[idx.size // 2] = 0
        want = fastconv.max_pool2d_backward(out, x, idx, **kw)
        fastconv.set_pooling_backend("cython" if backend == "numba" else "numba")
        np.testing.assert_array_equal(fastconv.max_pool2d_backward(out, x, idx, **kw), want)
    finally:
        fastconv.set_pooling_backend("cython")


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_max_pool2d_backward_scatter_counts_bad_indices_on_every_thread(backend, data_format):
    """Each thread's count of indices outside the plane reaches the caller (an OpenMP or
    prange reduction), wherever the bad index lies: the first or the last thread's share."""
    from fastconv.functional import pooling
    geom = pool2d_geometry((4, 6, 9, 9) if data_format == "NCHW" else (4, 9, 9, 6), 3, 2, 1, 1,
                           False, data_format)
    grad_output = np.ones(geom.output_shape, np.float32)
    kernel = (fastconv._ext.pooling if backend == "cython" else pooling._numba_pooling())
    kernel = getattr(kernel, f"max_pool2d_backward_{data_format.lower()}")
    for where in (0, grad_output.size - 1):
        for threads in (1, 2, 3):
            indices = np.zeros(geom.output_shape, np.int64)
            grad_input = np.empty(geom.input_shape, np.float32)
            assert kernel(grad_output, indices, grad_input, threads)
            indices.reshape(-1)[where] = 81
            assert not kernel(grad_output, indices, grad_input, threads)
