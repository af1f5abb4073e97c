"""im2col + GEMM convolution kernels in Numba (forward, grad_input, grad_weight; NCHW and NHWC).

Drop-in replacement for ``fastconv._ext._conv_im2col``: same function names, same positional
arguments (the workspace follows the output), same semantics, same ``workspace_elements``.

Legend
    N           batch
    C, H, W     input channels, height, width
    K, kh, kw   output channels, kernel height, width
    oH, oW      output height, width;  P = oH*oW output pixels per sample
    G           groups;  Cg = C/G, Kg = K/G;  R = Cg*kh*kw (GEMM reduction length)
    T           output pixels in one tile (a run of whole output rows, possibly spanning samples)

Every pass lowers the convolution of one tile and one group to one BLAS GEMM:
    NHWC  col (T, R) row-major, columns ordered (i, j, c):   out[tile, g] = col @ W_g (R, Kg)
    NCHW  col (R, T) row-major, rows ordered (c, i, j):      out[n, g, tile] = W_g (Kg, R) @ col
    grad_input = col2im(grad_output @ W^T);  grad_weight = sum over tiles of grad_output @ col^T.
Tiles are runs of global output rows r = n*oH + oh (in NCHW within one sample, or several
whole samples through a staging block), sized so that each thread's columns fit in L2.
1x1 kernels with stride 1 and no padding skip im2col (GEMM directly on the arrays).

The GEMM is BLAS ?gemm (scipy's, through Numba's ``numba_xxgemm`` helper, the one behind
``np.dot`` in nopython mode) called inside the compiled code with leading dimensions and beta,
so no copies are made and tiles accumulate in place.

Threads: as in the Cython module.  Forward and grad_weight split their tiles into one
contiguous block per worker of a ``prange``; each worker gathers its tiles' columns into its
own slice of the workspace and calls BLAS itself, which the Python caller limits to one thread
meanwhile (fastconv._config.kernel_blas_threads), so the columns are still in cache for the
GEMM and the cores share the im2col as well as the GEMM.  grad_weight's workers sum into
private accumulators (the first worker's is grad_weight itself), added in a fixed order at the
end.  grad_input's col2im scatters into input rows shared by neighbouring tiles, so each worker
takes whole samples.  Blocks are static (Numba's prange has no dynamic schedule, where the
Cython forward and grad_input have one), so results are bitwise reproducible for a fixed
thread count.  One thread means one worker running the tiles in turn; so does a call where
the weights outweigh the columns, for which the caller gives BLAS all the cores instead.
"""
import collections

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

_FASTMATH = {"reassoc", "nsz", "arcp", "contract"}
_INT_MAX = 2**31 - 1
_TILE_ELEMENTS = 4 << 20            # grad_input's workspace (elements, all threads), as Cython's
_THREAD_TILE_ELEMENTS = 256 << 10   # columns per thread in forward and grad_weight: a 1 MB L2

# The convolution's sizes (legend above); pointwise: a plain matrix product (1x1, stride 1,
# no padding), with no im2col.
_Geom = collections.namedtuple(
    "_Geom", "N C H W K kh kw oH oW sh sw pt pl dh dw G Cg Kg R P pointwise")

# Tiles: rows per tile (of the batch if per_sample == 0, else of one sample, per_sample tiles
# to a sample), count in all, scratch per worker (columns, and in NCHW multi-sample tiles a
# (Kg, T) staging block), workers.  grad_input's tiles are those of one worker's task.
_Tiles = collections.namedtuple("_Tiles", "rows per_sample count col_elements threads")


def _use_threads(n):
    """Set Numba's thread count for the calling thread (clamped to the pool); return it."""
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


# --------------------------------------------------------------------------- BLAS

def _gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """Row-major C (m, n) := op(A) @ op(B) + beta * C; a, b, c are 1-D views starting at the
    matrices' first elements.  Compiled code only."""
    raise NotImplementedError("_gemm is only callable from compiled code")


@overload(_gemm, jit_options={"cache": True})
def _gemm_impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    dtype = a.dtype
    if dtype not in (types.float32, types.float64):
        return None
    kind = ord("s") if dtype == types.float32 else ord("d")
    np_dtype = np.float32 if dtype == types.float32 else np.float64
    ptr = types.CPointer(dtype)
    xxgemm = types.ExternalFunction(
        "numba_xxgemm",
        types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
                   ptr, ptr, types.intp, ptr, types.intp, ptr, ptr, types.intp))

    def impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
        if m <= 0 or n <= 0 or k <= 0:
            return
        coef = np.empty(2, dtype=np_dtype)
        coef[0] = 1
        coef[1] = beta
        ta = 84 if trans_a else 78   # 'T' / 'N'
        tb = 84 if trans_b else 78
        # column-major BLAS: C^T = op(B)^T op(A)^T
        xxgemm(kind, tb, ta, n, m, k, coef.ctypes, b.ctypes, ldb, a.ctypes, lda,
               coef[1:].ctypes, c.ctypes, ldc)

    return impl


_inner = njit(cache=True, fastmath=_FASTMATH)
# A prange releases the GIL while it runs: the workers' first GEMM may take it to look BLAS up.
_parallel = njit(cache=True, fastmath=_FASTMATH, parallel=True)


# --------------------------------------------------------------------------- helpers

# Helpers called in the innermost loops are inlined: Numba does not let LLVM inline one
# compiled function into another, and a call per copied run cost 2-4 ns.
_inline = njit(cache=True, fastmath=_FASTMATH, inline="always")


@_inline
def _valid_range(off, s, size, n_out):
    """(lo, hi) = range of o in [0, n_out) with 0 <= o*s + off < size"""
    if s == 1:   # no divisions (15% of a single-channel NHWC im2col)
        lo, hi = max(-off, 0), max(size - off, 0)
    else:
        lo = 0 if off >= 0 else (-off + s - 1) // s
        hi = 0 if size - 1 - off < 0 else (size - 1 - off) // s + 1
    lo = min(lo, n_out)
    hi = max(lo, min(hi, n_out))
    return lo, hi


# The loops below index views that start where they write: an index Numba cannot prove
# non-negative costs a wraparound test per access, which also keeps LLVM from vectorising
# (a run copy 4-9x slower).

@_inline
def _zero(a, start, n):
    """a[start:start + n] = 0"""
    v = a[start:]
    for i in range(n):
        v[i] = 0


@_inline
def _move(dst, d, dst_stride, src, s, src_stride, n, add):
    """dst[d + o*dst_stride] = src[s + o*src_stride] for o < n; += where add.  (A constant
    stride 2, which GCC vectorises with permutes in the Cython module, is 3x slower here:
    LLVM gathers.)"""
    a = dst[d:]
    b = src[s:]
    if dst_stride == 1 and src_stride == 1:   # LLVM vectorises these
        if add:
            for o in range(n):
                a[o] += b[o]
        else:
            for o in range(n):
                a[o] = b[o]
    elif add:
        for o in range(n):
            a[o * dst_stride] += b[o * src_stride]
    else:
        for o in range(n):
            a[o * dst_stride] = b[o * src_stride]


# Runs of `width` contiguous elements, `runs` of them `step` apart.  Unsigned indices skip the
# wraparound test without a view per run (cifar_res20's NHWC im2col and col2im 1.3-1.6x
# faster); runs of one element (a single channel) are one strided loop.

@_inline
def _zero_runs(dst, d, step, runs, width):
    """dst[d + r*step + c] = 0 for r < runs, c < width."""
    for r in range(runs):
        _zero(dst, d + r * step, width)


@_inline
def _move_runs(dst, d, dst_step, src, s, src_step, runs, width, add):
    """dst[d + r*dst_step + c] = src[s + r*src_step + c] for r < runs, c < width; += where add."""
    if width == 1:
        _move(dst, d, dst_step, src, s, src_step, runs, add)
        return
    a = dst[d:]
    b = src[s:]
    for r in range(runs):
        i = np.uint64(r * dst_step)
        j = np.uint64(r * src_step)
        if add:
            for c in range(np.uint64(width)):
                a[i + c] += b[j + c]
        else:
            for c in range(np.uint64(width)):
                a[i + c] = b[j + c]


@_inner
def _tile_rows(g, tl, t):
    """Global output rows [r0, r1) of tile t (r = n*oH + oh)."""
    if tl.per_sample == 0:
        r0 = t * tl.rows
        return r0, min(r0 + tl.rows, g.N * g.oH)
    n = t // tl.per_sample
    a = (t - n * tl.per_sample) * tl.rows
    return n * g.oH + a, n * g.oH + min(a + tl.rows, g.oH)


@_inner
def _worker_block(count, workers, w):
    """[t0, t1): worker w's contiguous share of count tasks, the same on every call."""
    return w * count // workers, (w + 1) * count // workers


# --------------------------------------------------------------------------- NHWC im2col / col2im

@_inner
def _im2col_nhwc(x, col, g, c0, r0, r1):
    """col[(r - r0)*oW + ow, (i*kw + j)*Cg + c] = x[n, ih, iw, c0 + c] (0 in the padding)."""
    KC = g.kw * g.Cg
    runs = g.dw == 1 and g.Cg == g.C   # a kernel row's taps are one run of x
    for r in range(r0, r1):
        n = r // g.oH
        oh = r - n * g.oH
        for i in range(g.kh):
            d = (r - r0) * g.oW * g.R + i * KC
            ih = oh * g.sh - g.pt + i * g.dh
            if ih < 0 or ih >= g.H:
                _zero_runs(col, d, g.R, g.oW, KC)
                continue
            xrow = (n * g.H + ih) * g.W * g.C + c0
            lo = hi = 0
            if runs:   # output columns whose kernel row lies inside x: one run each
                lo, hi = _valid_range(-g.pl, g.sw, g.W - g.kw + 1, g.oW)
                _move_runs(col, d + lo * g.R, g.R, x, xrow + (lo * g.sw - g.pl) * g.C,
                           g.sw * g.C, hi - lo, KC, add=False)
            _im2col_nhwc_taps(x, col, g, xrow, d, lo, hi)


@_inline
def _im2col_nhwc_taps(x, col, g, xrow, d, lo, hi):
    """col[d + ow*R + j*Cg + c] = x[xrow + iw*C + c] for the output columns ow outside
    [lo, hi), tap by tap (0 in the padding): one kernel row of an output row."""
    for j in range(g.kw):
        off = j * g.dw - g.pl
        valid_lo, valid_hi = _valid_range(off, g.sw, g.W, g.oW)
        dj = d + j * g.Cg
        for part in range(2):
            a, b = (0, lo) if part == 0 else (hi, g.oW)
            c0 = min(max(valid_lo, a), b)
            c1 = min(max(valid_hi, c0), b)
            _zero_runs(col, dj + a * g.R, g.R, c0 - a, g.Cg)
            _move_runs(col, dj + c0 * g.R, g.R, x, xrow + (c0 * g.sw + off) * g.C, g.sw * g.C,
                       c1 - c0, g.Cg, add=False)
            _zero_runs(col, dj + c1 * g.R, g.R, b - c1, g.Cg)


@_inner
def _col2im_nhwc(col, gin, g, c0, r0, r1):
    """gin[n, ih, iw, c0 + c] += the tile's col entries that im2col read from there (gather per row)."""
    nf = r0 // g.oH
    nl = (r1 - 1) // g.oH
    q_lo = nf * g.H + min(g.H, max(0, (r0 - nf * g.oH) * g.sh - g.pt))
    q_hi = nl * g.H + max(0, min(g.H, (r1 - 1 - nl * g.oH) * g.sh - g.pt + (g.kh - 1) * g.dh + 1))
    for q in range(q_lo, q_hi):   # q = n*H + ih: an input row
        n = q // g.H
        ih = q - n * g.H
        a = max(r0 - n * g.oH, 0)
        b = min(r1 - n * g.oH, g.oH)
        for i in range(g.kh):
            t = ih + g.pt - i * g.dh
            if t < 0 or t % g.sh != 0 or not a <= t // g.sh < b:
                continue
            crow = ((n * g.oH + t // g.sh - r0) * g.oW) * g.R + i * g.kw * g.Cg
            for j in range(g.kw):
                off = j * g.dw - g.pl
                lo, hi = _valid_range(off, g.sw, g.W, g.oW)
                _move_runs(gin, (q * g.W + lo * g.sw + off) * g.C + c0, g.sw * g.C,
                           col, crow + lo * g.R + j * g.Cg, g.R, hi - lo, g.Cg, add=True)


# --------------------------------------------------------------------------- NCHW im2col / col2im

@_inner
def _im2col_nchw(x, col, g, c0, r0, r1):
    """col[(c*kh + i)*kw + j, (r - r0)*oW + ow] = x[n, c0 + c, ih, iw] (0 in the padding)."""
    kk = g.kh * g.kw
    T = (r1 - r0) * g.oW
    for rr in range(g.R):
        c = rr // kk
        i = (rr - c * kk) // g.kw
        j = rr - c * kk - i * g.kw
        off = j * g.dw - g.pl
        lo, hi = _valid_range(off, g.sw, g.W, g.oW)
        for r in range(r0, r1):
            n = r // g.oH
            ih = (r - n * g.oH) * g.sh - g.pt + i * g.dh
            d = rr * T + (r - r0) * g.oW
            if ih < 0 or ih >= g.H:
                _zero(col, d, g.oW)
                continue
            _zero(col, d, lo)
            _move(col, d + lo, 1, x, ((n * g.C + c0 + c) * g.H + ih) * g.W + lo * g.sw + off,
                  g.sw, hi - lo, add=False)
            _zero(col, d + hi, g.oW - hi)


@_inner
def _col2im_nchw(col, gin, g, c0, r0, r1):
    """grad_input[n, c0 + c] += the tile's col rows (c, i, j) scattered back, one plane at a time."""
    T = (r1 - r0) * g.oW
    for n in range(r0 // g.oH, (r1 - 1) // g.oH + 1):
        ra = max(r0, n * g.oH)
        rb = min(r1, (n + 1) * g.oH)
        for c in range(g.Cg):
            plane = (n * g.C + c0 + c) * g.H * g.W
            for i in range(g.kh):
                for j in range(g.kw):
                    off = j * g.dw - g.pl
                    lo, hi = _valid_range(off, g.sw, g.W, g.oW)
                    srow = ((c * g.kh + i) * g.kw + j) * T
                    for r in range(ra, rb):
                        ih = (r - n * g.oH) * g.sh - g.pt + i * g.dh
                        if 0 <= ih < g.H:
                            _move(gin, plane + ih * g.W + lo * g.sw + off, g.sw,
                                  col, srow + (r - r0) * g.oW + lo, 1, hi - lo, add=True)


@_inner
def _pack_rows(src, dst, g, k0, nk, r0, r1, to_tile):
    """Copy between an NCHW array's channels [k0, k0+nk) of rows [r0, r1) and a (nk, T) tile.

    to_tile: dst[k, t] = src[n, k0 + k, pixel];  else src is the tile and dst the array."""
    T = (r1 - r0) * g.oW
    for n in range(r0 // g.oH, (r1 - 1) // g.oH + 1):
        ra = max(r0, n * g.oH)
        rb = min(r1, (n + 1) * g.oH)
        in_tile = (ra - r0) * g.oW
        in_array = (n * g.K + k0) * g.P + (ra - n * g.oH) * g.oW
        if to_tile:
            d, d_step, s, s_step = in_tile, T, in_array, g.P
        else:
            d, d_step, s, s_step = in_array, g.P, in_tile, T
        _move_runs(dst, d, d_step, src, s, s_step, nk, (rb - ra) * g.oW, add=False)


@_inner
def _add_bias(out, o, ld, bias, k0, nk, length):
    """out[o + k*ld + p] += bias[k0 + k] for k < nk, p < length (an NCHW block of channels)."""
    for k in range(nk):
        row = out[o + k * ld:o + k * ld + length]
        bk = bias[k0 + k]
        for p in range(length):
            row[p] += bk


# --------------------------------------------------------------------------- forward tiles

@_inner
def _fwd_tile_nhwc(x, w, bias, out, col, g, r0, r1):
    """out rows (T, K) of rows [r0, r1) = col (T, R) @ W_g (R, Kg) per group, plus the bias;
    pointwise reads x's rows in place."""
    T = (r1 - r0) * g.oW
    o = r0 * g.oW * g.K
    for gi in range(g.G):
        if g.pointwise:
            _gemm(False, False, T, g.Kg, g.R, x[r0 * g.oW * g.C + gi * g.Cg:], g.C,
                  w[gi * g.Kg:], g.K, 0.0, out[o + gi * g.Kg:], g.K)
        else:
            _im2col_nhwc(x, col, g, gi * g.Cg, r0, r1)
            _gemm(False, False, T, g.Kg, g.R, col, g.R, w[gi * g.Kg:], g.K, 0.0,
                  out[o + gi * g.Kg:], g.K)
    _move_runs(out, o, g.K, bias, 0, 0, T, g.K, add=True)


@_inner
def _fwd_tile_nchw(x, w, bias, out, col, g, r0, r1):
    """out[n, group's channels, rows [r0, r1)] (Kg, T) = W_g (Kg, R) @ col (R, T), plus the bias
    (r0, r1 in sample n); pointwise reads x's rows in place."""
    T = (r1 - r0) * g.oW
    n = r0 // g.oH
    po = (r0 - n * g.oH) * g.oW
    for gi in range(g.G):
        o = (n * g.K + gi * g.Kg) * g.P + po
        if g.pointwise:
            _gemm(False, False, g.Kg, T, g.R, w[gi * g.Kg * g.R:], g.R,
                  x[(n * g.C + gi * g.Cg) * g.P + po:], g.P, 0.0, out[o:], g.P)
        else:
            _im2col_nchw(x, col, g, gi * g.Cg, r0, r1)
            _gemm(False, False, g.Kg, T, g.R, w[gi * g.Kg * g.R:], g.R, col, T, 0.0,
                  out[o:], g.P)
        _add_bias(out, o, g.P, bias, gi * g.Kg, g.Kg, T)


@_inner
def _fwd_samples_nchw(x, w, bias, out, col, g, r0, r1):
    """As _fwd_tile_nchw for whole samples: (Kg, T) in a staging block after the columns,
    then out (samples lie K*P apart)."""
    T = (r1 - r0) * g.oW
    stage = col[g.R * T:]
    for gi in range(g.G):
        _im2col_nchw(x, col, g, gi * g.Cg, r0, r1)
        _gemm(False, False, g.Kg, T, g.R, w[gi * g.Kg * g.R:], g.R, col, T, 0.0, stage, T)
        _add_bias(stage, 0, T, bias, gi * g.Kg, g.Kg, T)
        _pack_rows(stage, out, g, gi * g.Kg, g.Kg, r0, r1, False)


@_inner
def _fwd_tile(x, w, bias, out, col, g, tl, nhwc, t):
    """out of tile t := bias + (columns of the tile) @ weights, group by group."""
    r0, r1 = _tile_rows(g, tl, t)
    if nhwc:
        _fwd_tile_nhwc(x, w, bias, out, col, g, r0, r1)
    elif (r1 - 1) // g.oH != r0 // g.oH:
        _fwd_samples_nchw(x, w, bias, out, col, g, r0, r1)
    else:
        _fwd_tile_nchw(x, w, bias, out, col, g, r0, r1)


# --------------------------------------------------------------------------- grad_weight tiles

@_inner
def _gw_tile_nhwc(gout, x, acc, col, g, r0, r1):
    """acc (R, K) group block (R, Kg) += col^T (R, T) @ gout (T, Kg) of rows [r0, r1)."""
    T = (r1 - r0) * g.oW
    p0 = r0 * g.oW
    for gi in range(g.G):
        if g.pointwise:
            _gemm(True, False, g.R, g.Kg, T, x[p0 * g.C + gi * g.Cg:], g.C,
                  gout[p0 * g.K + gi * g.Kg:], g.K, 1.0, acc[gi * g.Kg:], g.K)
        else:
            _im2col_nhwc(x, col, g, gi * g.Cg, r0, r1)
            _gemm(True, False, g.R, g.Kg, T, col, g.R, gout[p0 * g.K + gi * g.Kg:], g.K, 1.0,
                  acc[gi * g.Kg:], g.K)


@_inner
def _gw_tile_nchw(gout, x, acc, col, g, r0, r1):
    """acc (K, R) group block (Kg, R) += gout (Kg, T) @ col^T (T, R) of rows [r0, r1) of one
    sample."""
    T = (r1 - r0) * g.oW
    n = r0 // g.oH
    po = (r0 - n * g.oH) * g.oW
    for gi in range(g.G):
        go = gout[(n * g.K + gi * g.Kg) * g.P + po:]
        if g.pointwise:
            _gemm(False, True, g.Kg, g.R, T, go, g.P, x[(n * g.C + gi * g.Cg) * g.P + po:], g.P,
                  1.0, acc[gi * g.Kg * g.R:], g.R)
        else:
            _im2col_nchw(x, col, g, gi * g.Cg, r0, r1)
            _gemm(False, True, g.Kg, g.R, T, go, g.P, col, T, 1.0, acc[gi * g.Kg * g.R:], g.R)


@_inner
def _gw_samples_nchw(gout, x, acc, col, g, r0, r1):
    """As _gw_tile_nchw for whole samples: grad_output gathered into a (Kg, T) staging block."""
    T = (r1 - r0) * g.oW
    stage = col[g.R * T:]
    for gi in range(g.G):
        _pack_rows(gout, stage, g, gi * g.Kg, g.Kg, r0, r1, True)
        _im2col_nchw(x, col, g, gi * g.Cg, r0, r1)
        _gemm(False, True, g.Kg, g.R, T, stage, T, col, T, 1.0, acc[gi * g.Kg * g.R:], g.R)


@_inner
def _gw_tile(gout, x, acc, col, g, tl, nhwc, t):
    """acc += the weight gradient of tile t: grad_output of the tile times its columns."""
    r0, r1 = _tile_rows(g, tl, t)
    if nhwc:
        _gw_tile_nhwc(gout, x, acc, col, g, r0, r1)
    elif (r1 - 1) // g.oH != r0 // g.oH:
        _gw_samples_nchw(gout, x, acc, col, g, r0, r1)
    else:
        _gw_tile_nchw(gout, x, acc, col, g, r0, r1)


# --------------------------------------------------------------------------- grad_input tasks

@_inner
def _gin_nhwc(gout, w, gin, ws, g, tl):
    """gin[n, ih, iw, c] = sum over (oh, ow, i, j) hitting it of gout[n, oh, ow, k] * w[i, j, c, k]"""
    if g.pointwise:
        npix = g.N * g.P
        for p0 in range(0, npix, _INT_MAX):
            m = min(_INT_MAX, npix - p0)
            for gi in range(g.G):
                _gemm(False, True, m, g.Cg, g.Kg, gout[p0 * g.K + gi * g.Kg:], g.K,
                      w[gi * g.Kg:], g.K, 0.0, gin[p0 * g.C + gi * g.Cg:], g.C)
        return
    _zero(gin, 0, gin.size)
    for t in range(tl.count):
        r0, r1 = _tile_rows(g, tl, t)
        p0 = r0 * g.oW
        m = (r1 - r0) * g.oW
        for gi in range(g.G):
            _gemm(False, True, m, g.R, g.Kg, gout[p0 * g.K + gi * g.Kg:], g.K, w[gi * g.Kg:], g.K,
                  0.0, ws, g.R)
            _col2im_nhwc(ws, gin, g, gi * g.Cg, r0, r1)


@_inner
def _gin_nchw(gout, w, gin, ws, g, tl):
    """gin[n, c, ih, iw] = sum over (oh, ow, i, j) hitting it of gout[n, k, oh, ow] * w[k, c, i, j]"""
    if g.pointwise:
        for n in range(g.N):
            for gi in range(g.G):
                _gemm(True, False, g.Cg, g.P, g.Kg, w[gi * g.Kg * g.Cg:], g.Cg,
                      gout[(n * g.K + gi * g.Kg) * g.P:], g.P, 0.0,
                      gin[(n * g.C + gi * g.Cg) * g.P:], g.P)
        return
    _zero(gin, 0, gin.size)
    for t in range(tl.count):
        r0, r1 = _tile_rows(g, tl, t)
        T = (r1 - r0) * g.oW
        nf = r0 // g.oH
        tmp = ws[g.R * T:]
        for gi in range(g.G):
            if nf == (r1 - 1) // g.oH:
                _gemm(True, False, g.R, T, g.Kg, w[gi * g.Kg * g.R:], g.R,
                      gout[(nf * g.K + gi * g.Kg) * g.P + (r0 - nf * g.oH) * g.oW:], g.P,
                      0.0, ws, T)
            else:
                _pack_rows(gout, tmp, g, gi * g.Kg, g.Kg, r0, r1, True)
                _gemm(True, False, g.R, T, g.Kg, w[gi * g.Kg * g.R:], g.R, tmp, T, 0.0, ws, T)
            _col2im_nchw(ws, gin, g, gi * g.Cg, r0, r1)


# --------------------------------------------------------------------------- parallel drivers
# Worker w takes the w-th contiguous block of the tiles (or samples) and the w-th slice of the
# workspace: the same on every call, so the bits do not depend on timing.

@_parallel
def _forward(x, w, bias, out, ws, g, tl, nhwc):
    """out := bias + conv2d(x, w) on flat arrays, in tiles tl."""
    for worker in prange(tl.threads):
        col = ws[worker * tl.col_elements:(worker + 1) * tl.col_elements]
        t0, t1 = _worker_block(tl.count, tl.threads, worker)
        for t in range(t0, t1):
            _fwd_tile(x, w, bias, out, col, g, tl, nhwc, t)


@_parallel
def _grad_input(gout, w, gin, ws, g, tl, nhwc):
    """gin := conv2d^T gout on flat arrays: tasks of geometry g (whole samples), in tiles tl."""
    out_task = g.N * g.P * g.K
    in_task = g.N * g.H * g.W * g.C
    for worker in prange(tl.threads):
        scratch = ws[worker * tl.col_elements:(worker + 1) * tl.col_elements]
        n0, n1 = _worker_block(gin.size // in_task, tl.threads, worker)
        for n in range(n0, n1):
            go = gout[n * out_task:(n + 1) * out_task]
            gi = gin[n * in_task:(n + 1) * in_task]
            if nhwc:
                _gin_nhwc(go, w, gi, scratch, g, tl)
            else:
                _gin_nchw(go, w, gi, scratch, g, tl)


@_parallel
def _grad_weight(gout, x, gw, ws, g, tl, nhwc):
    """gw := sum over tiles tl, on flat arrays: workers after the first sum into accumulators
    after the workers' columns, added to gw in a fixed order at the end."""
    accs = ws[tl.threads * tl.col_elements:]
    for worker in prange(tl.threads):
        col = ws[worker * tl.col_elements:(worker + 1) * tl.col_elements]
        acc = gw if worker == 0 else accs[(worker - 1) * gw.size:worker * gw.size]
        _zero(acc, 0, gw.size)
        t0, t1 = _worker_block(tl.count, tl.threads, worker)
        for t in range(t0, t1):
            _gw_tile(gout, x, acc, col, g, tl, nhwc, t)
    if tl.threads > 1:
        for i in prange(gw.size):
            s = gw[i]
            for k in range(tl.threads - 1):
                s += accs[k * gw.size + i]
            gw[i] = s


# --------------------------------------------------------------------------- planning

def _geometry(x_shape, w_shape, out_shape, nhwc, sh, sw, pt, pl, dh, dw, G):
    """The _Geom of input, weight and output shapes in the layout's order."""
    if nhwc:
        (N, H, W, C), (kh, kw, _, K), (oH, oW) = x_shape, w_shape, out_shape[1:3]
    else:
        (N, C, H, W), (K, _, kh, kw), (oH, oW) = x_shape, w_shape, out_shape[2:]
    sizes = [int(v) for v in (N, C, H, W, K, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw, G)]
    N, C, H, W, K, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw, G = sizes
    pointwise = (kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
                 and oH == H and oW == W)
    Cg = C // G
    return _Geom(*sizes, Cg, K // G, Cg * kh * kw, oH * oW, pointwise)


def _min_workspace(g):
    """Scratch elements one tile (one output row of one group) needs; 0 for pointwise."""
    return 0 if g.pointwise else g.oW * g.R


def _rows_and_threads(g, ws_n, acc_elements, span, nt):
    """Output rows per tile and threads, within ws_n elements of scratch (acc_elements more
    per thread after the first)."""
    row_cols = _min_workspace(g)
    threads = max(nt, 1)
    if g.N * g.P < threads * g.Kg:
        # The weights outweigh a thread's share of the columns: the tiles run in turn (the
        # adapter passes one thread there, and BLAS runs on all of them).
        threads = 1
    rows = max(1, min(_tile_elements(g) // (g.oW * (g.R + g.Kg)), span))
    if threads > 1:   # at least two tiles per thread, for balance
        rows = max(1, min(rows, g.N * g.oH // (2 * threads)))
    rows = min(rows, _INT_MAX // max(g.oW, 1))
    while threads > 1 and threads * rows * row_cols + (threads - 1) * acc_elements > ws_n:
        if rows > 1:
            rows = (rows + 1) // 2
        else:
            threads -= 1
    if row_cols > 0:
        rows = max(1, min(rows, ws_n // row_cols))
    return rows, threads


def _tile_elements(g):
    """Columns a thread's tile aims at: L2-sized, but at least two weight matrices' worth (BLAS
    repacks the weights on every call, which must stay small next to the multiply)."""
    return max(_THREAD_TILE_ELEMENTS, 2 * g.Kg * g.R)


def _plan_tiles(g, ws_n, acc_elements, nhwc, nt):
    """Forward and grad_weight's _Tiles within ws_n elements of scratch (the Cython module's
    plan): each thread needs rows*oW*R column elements, and each thread after the first
    acc_elements more (grad_weight's private accumulators)."""
    rows, threads = _rows_and_threads(g, ws_n, acc_elements, g.N * g.oH if nhwc else g.oH, nt)
    col_elements = rows * _min_workspace(g)
    per_sample = 0 if nhwc else -(-g.oH // rows)
    if not nhwc and rows == g.oH and not g.pointwise and g.N >= 2 * threads:
        # Small planes (oH*oW of a few hundred): several whole samples per tile, so that the
        # GEMM is wide; the output leaves through a staging block.
        # One thread (GEMMs on all cores) takes the whole batch if it fits.
        samples = max(1, min(_tile_elements(g) // (g.P * (g.R + g.Kg)),
                             g.N // (2 * threads) if threads > 1 else g.N))
        while samples > 1 and (
                threads * samples * g.P * (g.R + g.Kg) + (threads - 1) * acc_elements > ws_n):
            samples -= 1
        if samples > 1:
            rows = samples * g.oH
            col_elements = rows * g.oW * (g.R + g.Kg)
        per_sample = 0
    count = -(-g.N * g.oH // rows) if per_sample == 0 else g.N * per_sample
    return _Tiles(rows, per_sample, count, col_elements, min(threads, count))


def _plan_task_tiles(g, ws_n, nhwc):
    """grad_input's tiles of a task of geometry g in ws_n elements: NHWC rows across samples,
    NCHW whole samples (several through a (Kg, T) staging block) or rows of one."""
    rows_int = _INT_MAX // g.oW
    if nhwc:
        rows, per_sample = max(1, min(ws_n // (g.oW * g.R), rows_int, g.N * g.oH)), 0
    elif ws_n >= g.P * g.R and g.oH <= rows_int:
        rows = g.oH * max(1, min(ws_n // (g.P * (g.R + g.Kg)), rows_int // g.oH, g.N))
        per_sample = 0
    else:
        rows = max(1, min(ws_n // (g.oW * g.R), rows_int, g.oH))
        per_sample = -(-g.oH // rows)
    return rows, per_sample, -(-g.N * g.oH // rows) if per_sample == 0 else g.N * per_sample


def _plan_samples(g, ws_n, nhwc, nt):
    """grad_input's (task geometry, _Tiles): a sample per task on up to nt workers (as many as
    have one output row's columns each), the whole batch as one task on one."""
    need = _min_workspace(g)
    threads = max(1, min(nt, g.N, ws_n // need if need else nt))
    task = g if threads == 1 else g._replace(N=1)
    scratch = ws_n // threads
    rows, per_sample, count = _plan_task_tiles(task, scratch, nhwc) if need else (0, 0, 0)
    return task, _Tiles(rows, per_sample, count, scratch, threads)


def _scratch(workspace, g):
    """The caller's workspace, or a minimum-size one when it is too small."""
    need = _min_workspace(g)
    return workspace if workspace.shape[0] >= need else np.empty(need, dtype=workspace.dtype)


# --------------------------------------------------------------------------- Python boundary

def _flat(array):
    """A 1-D view of a C-contiguous array (as the Cython module's memoryviews require)."""
    if not array.flags.c_contiguous:
        raise ValueError("numba_im2col's kernels take C-contiguous arrays")
    return array.reshape(-1)


def _run(driver, a, b, c, out, workspace, g, nhwc, num_threads):
    """Plan the driver's tiles within the workspace; run them on up to num_threads workers."""
    if g.N == 0:
        out[...] = 0   # grad_weight of no samples (the other outputs are empty)
        return
    ws = _scratch(workspace, g)
    if driver is _grad_input:
        g, tl = _plan_samples(g, ws.shape[0], nhwc, num_threads)
    else:
        accumulator = out.size if driver is _grad_weight else 0
        tl = _plan_tiles(g, ws.shape[0], accumulator, nhwc, num_threads)
    _use_threads(tl.threads)
    arrays = [_flat(array) for array in (a, b, c, out) if array is not None]
    driver(*arrays, ws, g, tl, nhwc)


def forward_nchw(x, weight, bias, out, workspace, stride_h, stride_w, pad_top, pad_left,
                 dilation_h, dilation_w, groups, num_threads):
    """out := bias + conv2d(x, weight) for x (N, C, H, W), weight (K, C/G, kh, kw), out (N, K, oH, oW)."""
    g = _geometry(x.shape, weight.shape, out.shape, False, stride_h, stride_w, pad_top, pad_left,
                  dilation_h, dilation_w, groups)
    _run(_forward, x, weight, bias, out, workspace, g, False, num_threads)


def forward_nhwc(x, weight, bias, out, workspace, stride_h, stride_w, pad_top, pad_left,
                 dilation_h, dilation_w, groups, num_threads):
    """out := bias + conv2d(x, weight) for x (N, H, W, C), weight (kh, kw, C/G, K), out (N, oH, oW, K)."""
    g = _geometry(x.shape, weight.shape, out.shape, True, stride_h, stride_w, pad_top, pad_left,
                  dilation_h, dilation_w, groups)
    _run(_forward, x, weight, bias, out, workspace, g, True, num_threads)


def grad_input_nchw(grad_output, weight, grad_input, workspace, stride_h, stride_w, pad_top,
                    pad_left, dilation_h, dilation_w, groups, num_threads):
    """grad_input := conv2d(x, weight)^T grad_output, NCHW (grad_input fully overwritten)."""
    g = _geometry(grad_input.shape, weight.shape, grad_output.shape, False, stride_h, stride_w,
                  pad_top, pad_left, dilation_h, dilation_w, groups)
    _run(_grad_input, grad_output, weight, None, grad_input, workspace, g, False, num_threads)


def grad_input_nhwc(grad_output, weight, grad_input, workspace, stride_h, stride_w, pad_top,
                    pad_left, dilation_h, dilation_w, groups, num_threads):
    """grad_input := conv2d(x, weight)^T grad_output, NHWC (grad_input fully overwritten)."""
    g = _geometry(grad_input.shape, weight.shape, grad_output.shape, True, stride_h, stride_w,
                  pad_top, pad_left, dilation_h, dilation_w, groups)
    _run(_grad_input, grad_output, weight, None, grad_input, workspace, g, True, num_threads)


def grad_weight_nchw(grad_output, x, grad_weight, workspace, stride_h, stride_w, pad_top,
                     pad_left, dilation_h, dilation_w, groups, num_threads):
    """grad_weight := sum_n grad_output[n] (x) im2col(x[n]), NCHW; zeros when N == 0."""
    g = _geometry(x.shape, grad_weight.shape, grad_output.shape, False, stride_h, stride_w,
                  pad_top, pad_left, dilation_h, dilation_w, groups)
    _run(_grad_weight, grad_output, x, None, grad_weight, workspace, g, False, num_threads)


def grad_weight_nhwc(grad_output, x, grad_weight, workspace, stride_h, stride_w, pad_top,
                     pad_left, dilation_h, dilation_w, groups, num_threads):
    """grad_weight := sum_n im2col(x[n])^T grad_output[n], NHWC; zeros when N == 0."""
    g = _geometry(x.shape, grad_weight.shape, grad_output.shape, True, stride_h, stride_w,
                  pad_top, pad_left, dilation_h, dilation_w, groups)
    _run(_grad_weight, grad_output, x, None, grad_weight, workspace, g, True, num_threads)


def workspace_elements(N, C, H, W, K, kh, kw, oH, oW, groups, max_elements, nhwc, op="forward",
                       num_threads=1):
    """Scratch elements op ("forward", "grad_input" or "grad_weight") wants within max_elements.

    Never less than one output row's columns (the kernels need that much to make progress)."""
    if op not in ("forward", "grad_input", "grad_weight"):
        raise ValueError("op must be 'forward', 'grad_input' or 'grad_weight'. "
                         f"Received: op={op!r}")
    if N <= 0:
        return 0
    shapes = ((N, C, H, W), (K, C // groups, kh, kw), (N, K, oH, oW))
    g = _geometry(*shapes, False, 1, 1, 0, 0, 1, 1, groups)
    minimum = _min_workspace(g)
    if op == "grad_input":
        if g.pointwise:
            return 0
        # each thread takes whole samples (tiles of one sample, so no staging block)
        threads = max(1, min(num_threads, N, max_elements // minimum))
        want = min(max_elements, _TILE_ELEMENTS) // threads
        return threads * max(minimum, min(g.P * g.R, want))
    acc = g.K * g.R if op == "grad_weight" else 0
    tl = _plan_tiles(g, max_elements, acc, nhwc, num_threads)
    return max(minimum, tl.threads * tl.col_elements + (tl.threads - 1) * acc)
