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
Tiles are runs of global output rows r = n*oH + oh sized to fit the caller's workspace, so
memory is bounded by the workspace whatever the batch.  1x1 kernels with stride 1 and no
padding skip im2col (GEMM directly on the arrays).

The GEMM is BLAS ?gemm (scipy's, through Numba's ``numba_xxgemm`` helper, the one behind
``np.dot`` in nopython mode) called inside the compiled code with leading dimensions and beta,
so no copies are made and tiles accumulate in place.

Threads: one level at a time.  im2col/col2im run serially and the GEMM uses BLAS's own threads
(as the Cython module: worker threads of a parallel region still spinning after it ends steal
the cores the BLAS threads need).  num_threads is accepted for the common signature and passed
to ``_use_threads`` only.  Results are bitwise reproducible for a fixed BLAS thread count.
"""
import numba
import numpy as np
from numba import njit, types
from numba.extending import overload

_FASTMATH = {"reassoc", "nsz", "arcp", "contract"}
_INT_MAX = 2**31 - 1
_TILE_ELEMENTS = 4 << 20     # default tile: columns of ~16 MB (float32), as the Cython module


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


# --------------------------------------------------------------------------- helpers

_inner = njit(cache=True, fastmath=_FASTMATH)


@_inner
def _valid_range(off, s, size, n_out):
    """(lo, hi) = range of o in [0, n_out) with 0 <= o*s + off < size"""
    lo = 0 if off >= 0 else (-off + s - 1) // s
    hi = 0 if size - 1 - off < 0 else (size - 1 - off) // s + 1
    lo = min(lo, n_out)
    hi = max(lo, min(hi, n_out))
    return lo, hi


@_inner
def _pointwise(H, W, kh, kw, oH, oW, sh, sw, pt, pl):
    """True when the convolution is a plain matrix product (1x1, stride 1, no padding)."""
    return (kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
            and oH == H and oW == W)


@_inner
def _next_tile(N, oH, spp, rpt, cross, r1):
    """The next tile [r0, r1') of global output rows after r1 (r0 == r1' when done).

    spp > 0: tiles of spp whole samples; else tiles of rpt rows (inside one sample unless cross)."""
    total = N * oH
    start = r1
    if start >= total:
        return start, start
    if spp > 0:
        end = min(start + spp * oH, total)
    elif cross:
        end = min(start + rpt, total)
    else:
        n = start // oH
        end = min(start + rpt, (n + 1) * oH)
    return start, end


# --------------------------------------------------------------------------- NHWC im2col / col2im

@_inner
def _im2col_nhwc(xf, col, H, W, C, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw, c0, r0, r1):
    """col[(r - r0)*oW + ow, (i*kw + j)*Cg + c] = x[n, ih, iw, c0 + c] (0 in the padding)."""
    R = Cg * kh * kw
    KC = kw * Cg
    runs = dw == 1 and Cg == C
    for r in range(r0, r1):
        n = r // oH
        oh = r - n * oH
        for ow in range(oW):
            d = ((r - r0) * oW + ow) * R
            iw0 = ow * sw - pl
            for i in range(kh):
                di = d + i * KC
                ih = oh * sh - pt + i * dh
                if ih < 0 or ih >= H:
                    col[di:di + KC] = 0
                    continue
                xrow = ((n * H + ih) * W) * C + c0
                if runs and iw0 >= 0 and iw0 + kw <= W:
                    col[di:di + KC] = xf[xrow + iw0 * C:xrow + iw0 * C + KC]
                    continue
                for j in range(kw):
                    dj = di + j * Cg
                    iw = iw0 + j * dw
                    if iw < 0 or iw >= W:
                        col[dj:dj + Cg] = 0
                    else:
                        col[dj:dj + Cg] = xf[xrow + iw * C:xrow + iw * C + Cg]


@_inner
def _col2im_nhwc(col, gf, H, W, C, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw, c0, r0, r1):
    """gin[n, ih, iw, c0 + c] += the tile's col entries that im2col read from there (gather per row)."""
    R = Cg * kh * kw
    nf = r0 // oH
    nl = (r1 - 1) // oH
    q_lo = nf * H + min(H, max(0, (r0 - nf * oH) * sh - pt))
    q_hi = nl * H + max(0, min(H, (r1 - 1 - nl * oH) * sh - pt + (kh - 1) * dh + 1))
    for q in range(q_lo, q_hi):
        n = q // H
        ih = q - n * H
        a = max(r0 - n * oH, 0)
        b = min(r1 - n * oH, oH)
        if a >= b:
            continue
        drow = q * W * C + c0
        for i in range(kh):
            t = ih + pt - i * dh
            if t < 0 or t % sh != 0:
                continue
            oh = t // sh
            if oh < a or oh >= b:
                continue
            crow = ((n * oH + oh - r0) * oW) * R + i * kw * Cg
            for j in range(kw):
                off = j * dw - pl
                lo, hi = _valid_range(off, sw, W, oW)
                for ow in range(lo, hi):
                    d = gf[drow + (ow * sw + off) * C:drow + (ow * sw + off) * C + Cg]
                    s = col[crow + ow * R + j * Cg:crow + ow * R + j * Cg + Cg]
                    for c in range(Cg):
                        d[c] += s[c]


# --------------------------------------------------------------------------- NCHW im2col / col2im

@_inner
def _im2col_nchw(xf, col, C, H, W, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw, c0, r0, r1):
    """col[(c*kh + i)*kw + j, (r - r0)*oW + ow] = x[n, c0 + c, ih, iw] (0 in the padding)."""
    R = Cg * kh * kw
    kk = kh * kw
    T = (r1 - r0) * oW
    for rr in range(R):
        c = rr // kk
        ij = rr - c * kk
        i = ij // kw
        j = ij - i * kw
        off = j * dw - pl
        lo, hi = _valid_range(off, sw, W, oW)
        for r in range(r0, r1):
            n = r // oH
            oh = r - n * oH
            ih = oh * sh - pt + i * dh
            d = col[rr * T + (r - r0) * oW:rr * T + (r - r0 + 1) * oW]
            if ih < 0 or ih >= H:
                d[:] = 0
                continue
            s = ((n * C + c0 + c) * H + ih) * W
            d[:lo] = 0
            if hi > lo:
                if sw == 1:
                    d[lo:hi] = xf[s + lo + off:s + hi + off]
                else:
                    d[lo:hi] = xf[s + lo * sw + off:s + (hi - 1) * sw + off + 1:sw]
            d[hi:] = 0


@_inner
def _col2im_nchw(col, gf, C, H, W, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw, c0, r0, r1):
    """grad_input[n, c0 + c] += the tile's col rows (c, i, j) scattered back, one plane at a time."""
    T = (r1 - r0) * oW
    nf = r0 // oH
    nl = (r1 - 1) // oH
    for n in range(nf, nl + 1):
        ra = max(r0, n * oH)
        rb = min(r1, (n + 1) * oH)
        for c in range(Cg):
            plane = (n * C + c0 + c) * H * W
            for i in range(kh):
                for j in range(kw):
                    off = j * dw - pl
                    lo, hi = _valid_range(off, sw, W, oW)
                    if hi <= lo:
                        continue
                    srow = ((c * kh + i) * kw + j) * T
                    for r in range(ra, rb):
                        oh = r - n * oH
                        ih = oh * sh - pt + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        s = col[srow + (r - r0) * oW + lo:srow + (r - r0) * oW + hi]
                        d0 = plane + ih * W
                        if sw == 1:
                            d = gf[d0 + lo + off:d0 + hi + off]
                            for t in range(hi - lo):
                                d[t] += s[t]
                        else:
                            d2 = gf[d0 + lo * sw + off:d0 + (hi - 1) * sw + off + 1:sw]
                            for t in range(hi - lo):
                                d2[t] += s[t]


@_inner
def _pack_rows(src, dst, K, oH, oW, k0, nk, r0, r1, to_tile):
    """Copy between an NCHW array's channels [k0, k0+nk) of rows [r0, r1) and a (nk, T) tile.

    to_tile: dst[k, t] = src[n, k0 + k, pixel];  else src is the tile and dst the array."""
    T = (r1 - r0) * oW
    P = oH * oW
    nf = r0 // oH
    nl = (r1 - 1) // oH
    for n in range(nf, nl + 1):
        ra = max(r0, n * oH)
        rb = min(r1, (n + 1) * oH)
        length = (rb - ra) * oW
        toff = (ra - r0) * oW
        for k in range(nk):
            aoff = (n * K + k0 + k) * P + (ra - n * oH) * oW
            if to_tile:
                dst[k * T + toff:k * T + toff + length] = src[aoff:aoff + length]
            else:
                dst[aoff:aoff + length] = src[k * T + toff:k * T + toff + length]


# --------------------------------------------------------------------------- NHWC kernels

@_inner
def _fwd_nhwc(x, w, bias, out, ws, sh, sw, pt, pl, dh, dw, G, rpt):
    """out[n, oh, ow, k] = bias[k] + sum_{i, j, c} x[n, ih, iw, g*Cg + c] * w[i, j, c, k]"""
    N, H, W, C = x.shape
    kh, kw, Cg, K = w.shape
    oH, oW = out.shape[1], out.shape[2]
    Kg = K // G
    R = Cg * kh * kw
    xf = x.reshape(x.size)
    wf = w.reshape(w.size)
    of = out.reshape(out.size)
    o2 = out.reshape(N * oH * oW, K)
    if _pointwise(H, W, kh, kw, oH, oW, sh, sw, pt, pl):
        o2[:, :] = bias
        npix = N * oH * oW
        p0 = 0
        while p0 < npix:
            m = min(_INT_MAX, npix - p0)
            for gi in range(G):
                _gemm(False, False, m, Kg, Cg, xf[p0 * C + gi * Cg:], C, wf[gi * Kg:], K,
                      1.0, of[p0 * K + gi * Kg:], K)
            p0 += m
        return
    r0 = 0
    r1 = 0
    while True:
        r0, r1 = _next_tile(N, oH, 0, rpt, True, r1)
        if r0 == r1:
            break
        p0 = r0 * oW
        m = (r1 - r0) * oW
        o2[p0:p0 + m, :] = bias
        for gi in range(G):
            _im2col_nhwc(xf, ws, H, W, C, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw,
                         gi * Cg, r0, r1)
            _gemm(False, False, m, Kg, R, ws, R, wf[gi * Kg:], K, 1.0, of[p0 * K + gi * Kg:], K)


@_inner
def _gin_nhwc(gout, w, gin, ws, sh, sw, pt, pl, dh, dw, G, rpt):
    """gin[n, ih, iw, c] = sum over (oh, ow, i, j) hitting it of gout[n, oh, ow, k] * w[i, j, c, k]"""
    N, H, W, C = gin.shape
    kh, kw, Cg, K = w.shape
    oH, oW = gout.shape[1], gout.shape[2]
    Kg = K // G
    R = Cg * kh * kw
    gof = gout.reshape(gout.size)
    wf = w.reshape(w.size)
    gf = gin.reshape(gin.size)
    if _pointwise(H, W, kh, kw, oH, oW, sh, sw, pt, pl):
        npix = N * oH * oW
        p0 = 0
        while p0 < npix:
            m = min(_INT_MAX, npix - p0)
            for gi in range(G):
                _gemm(False, True, m, Cg, Kg, gof[p0 * K + gi * Kg:], K, wf[gi * Kg:], K,
                      0.0, gf[p0 * C + gi * Cg:], C)
            p0 += m
        return
    gf[:] = 0
    r0 = 0
    r1 = 0
    while True:
        r0, r1 = _next_tile(N, oH, 0, rpt, True, r1)
        if r0 == r1:
            break
        p0 = r0 * oW
        m = (r1 - r0) * oW
        for gi in range(G):
            _gemm(False, True, m, R, Kg, gof[p0 * K + gi * Kg:], K, wf[gi * Kg:], K, 0.0, ws, R)
            _col2im_nhwc(ws, gf, H, W, C, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw,
                         gi * Cg, r0, r1)


@_inner
def _gw_nhwc(gout, x, gw, ws, sh, sw, pt, pl, dh, dw, G, rpt):
    """gw[i, j, c, k] = sum_{n, oh, ow} gout[n, oh, ow, k] * x[n, ih, iw, g*Cg + c]"""
    N, H, W, C = x.shape
    kh, kw, Cg, K = gw.shape
    oH, oW = gout.shape[1], gout.shape[2]
    Kg = K // G
    R = Cg * kh * kw
    gof = gout.reshape(gout.size)
    xf = x.reshape(x.size)
    gwf = gw.reshape(gw.size)
    beta = 0.0
    if _pointwise(H, W, kh, kw, oH, oW, sh, sw, pt, pl):
        npix = N * oH * oW
        p0 = 0
        while p0 < npix:
            m = min(_INT_MAX, npix - p0)
            for gi in range(G):
                _gemm(True, False, Cg, Kg, m, xf[p0 * C + gi * Cg:], C, gof[p0 * K + gi * Kg:], K,
                      beta, gwf[gi * Kg:], K)
            beta = 1.0
            p0 += m
        return
    r0 = 0
    r1 = 0
    while True:
        r0, r1 = _next_tile(N, oH, 0, rpt, True, r1)
        if r0 == r1:
            break
        p0 = r0 * oW
        m = (r1 - r0) * oW
        for gi in range(G):
            _im2col_nhwc(xf, ws, H, W, C, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw,
                         gi * Cg, r0, r1)
            _gemm(True, False, R, Kg, m, ws, R, gof[p0 * K + gi * Kg:], K, beta, gwf[gi * Kg:], K)
        beta = 1.0


# --------------------------------------------------------------------------- NCHW kernels

@_inner
def _fwd_nchw(x, w, bias, out, ws, sh, sw, pt, pl, dh, dw, G, spp, rpt):
    """out[n, k, oh, ow] = bias[k] + sum_{c, i, j} x[n, g*Cg + c, ih, iw] * w[k, c, i, j]"""
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    oH, oW = out.shape[2], out.shape[3]
    Kg = K // G
    R = Cg * kh * kw
    P = oH * oW
    xf = x.reshape(x.size)
    wf = w.reshape(w.size)
    of = out.reshape(out.size)
    if _pointwise(H, W, kh, kw, oH, oW, sh, sw, pt, pl):
        for n in range(N):
            for k in range(K):
                of[(n * K + k) * P:(n * K + k + 1) * P] = bias[k]
            for gi in range(G):
                _gemm(False, False, Kg, P, Cg, wf[gi * Kg * Cg:], Cg, xf[(n * C + gi * Cg) * P:], P,
                      1.0, of[(n * K + gi * Kg) * P:], P)
        return
    r0 = 0
    r1 = 0
    while True:
        r0, r1 = _next_tile(N, oH, spp, rpt, False, r1)
        if r0 == r1:
            break
        T = (r1 - r0) * oW
        nf = r0 // oH
        nl = (r1 - 1) // oH
        tmp = ws[R * T:]
        for gi in range(G):
            _im2col_nchw(xf, ws, C, H, W, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw,
                         gi * Cg, r0, r1)
            if nf == nl:
                o = (nf * K + gi * Kg) * P + (r0 - nf * oH) * oW
                for k in range(Kg):
                    of[o + k * P:o + k * P + T] = bias[gi * Kg + k]
                _gemm(False, False, Kg, T, R, wf[gi * Kg * R:], R, ws, T, 1.0, of[o:], P)
            else:
                for k in range(Kg):
                    tmp[k * T:(k + 1) * T] = bias[gi * Kg + k]
                _gemm(False, False, Kg, T, R, wf[gi * Kg * R:], R, ws, T, 1.0, tmp, T)
                _pack_rows(tmp, of, K, oH, oW, gi * Kg, Kg, r0, r1, False)


@_inner
def _gin_nchw(gout, w, gin, ws, sh, sw, pt, pl, dh, dw, G, spp, rpt):
    """gin[n, c, ih, iw] = sum over (oh, ow, i, j) hitting it of gout[n, k, oh, ow] * w[k, c, i, j]"""
    N, C, H, W = gin.shape
    K, Cg, kh, kw = w.shape
    oH, oW = gout.shape[2], gout.shape[3]
    Kg = K // G
    R = Cg * kh * kw
    P = oH * oW
    gof = gout.reshape(gout.size)
    wf = w.reshape(w.size)
    gf = gin.reshape(gin.size)
    if _pointwise(H, W, kh, kw, oH, oW, sh, sw, pt, pl):
        for n in range(N):
            for gi in range(G):
                _gemm(True, False, Cg, P, Kg, wf[gi * Kg * Cg:], Cg, gof[(n * K + gi * Kg) * P:], P,
                      0.0, gf[(n * C + gi * Cg) * P:], P)
        return
    gf[:] = 0
    r0 = 0
    r1 = 0
    while True:
        r0, r1 = _next_tile(N, oH, spp, rpt, False, r1)
        if r0 == r1:
            break
        T = (r1 - r0) * oW
        nf = r0 // oH
        nl = (r1 - 1) // oH
        tmp = ws[R * T:]
        for gi in range(G):
            if nf == nl:
                _gemm(True, False, R, T, Kg, wf[gi * Kg * R:], R,
                      gof[(nf * K + gi * Kg) * P + (r0 - nf * oH) * oW:], P, 0.0, ws, T)
            else:
                _pack_rows(gof, tmp, K, oH, oW, gi * Kg, Kg, r0, r1, True)
                _gemm(True, False, R, T, Kg, wf[gi * Kg * R:], R, tmp, T, 0.0, ws, T)
            _col2im_nchw(ws, gf, C, H, W, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw,
                         gi * Cg, r0, r1)


@_inner
def _gw_nchw(gout, x, gw, ws, sh, sw, pt, pl, dh, dw, G, spp, rpt):
    """gw[k, c, i, j] = sum_{n, oh, ow} gout[n, k, oh, ow] * x[n, g*Cg + c, ih, iw]"""
    N, C, H, W = x.shape
    K, Cg, kh, kw = gw.shape
    oH, oW = gout.shape[2], gout.shape[3]
    Kg = K // G
    R = Cg * kh * kw
    P = oH * oW
    gof = gout.reshape(gout.size)
    xf = x.reshape(x.size)
    gwf = gw.reshape(gw.size)
    beta = 0.0
    if _pointwise(H, W, kh, kw, oH, oW, sh, sw, pt, pl):
        for n in range(N):
            for gi in range(G):
                _gemm(False, True, Kg, Cg, P, gof[(n * K + gi * Kg) * P:], P,
                      xf[(n * C + gi * Cg) * P:], P, beta, gwf[gi * Kg * Cg:], Cg)
            beta = 1.0
        return
    r0 = 0
    r1 = 0
    while True:
        r0, r1 = _next_tile(N, oH, spp, rpt, False, r1)
        if r0 == r1:
            break
        T = (r1 - r0) * oW
        nf = r0 // oH
        nl = (r1 - 1) // oH
        tmp = ws[R * T:]
        for gi in range(G):
            _im2col_nchw(xf, ws, C, H, W, Cg, kh, kw, oH, oW, sh, sw, pt, pl, dh, dw,
                         gi * Cg, r0, r1)
            if nf == nl:
                _gemm(False, True, Kg, R, T, gof[(nf * K + gi * Kg) * P + (r0 - nf * oH) * oW:], P,
                      ws, T, beta, gwf[gi * Kg * R:], R)
            else:
                _pack_rows(gof, tmp, K, oH, oW, gi * Kg, Kg, r0, r1, True)
                _gemm(False, True, Kg, R, T, tmp, T, ws, T, beta, gwf[gi * Kg * R:], R)
        beta = 1.0


# --------------------------------------------------------------------------- Python boundary

def _plan(N, oH, oW, R, Kg, ws_n, nhwc):
    """(samples per tile spp > 0 for NCHW whole samples, else 0; output rows per tile rpt)."""
    rows_int = _INT_MAX // oW
    if nhwc:
        return 0, max(1, min(ws_n // (oW * R), rows_int, N * oH))
    P = oH * oW
    if ws_n >= P * R and oH <= rows_int:
        # whole samples; several need a (Kg, T) staging buffer after the columns
        return max(1, min(ws_n // (P * (R + Kg)), rows_int // oH, N)), 0
    return 0, max(1, min(ws_n // (oW * R), rows_int, oH))


def _prepare(workspace, N, H, W, kh, kw, oH, oW, R, Kg, sh, sw, pt, pl, nhwc):
    """(workspace to use, spp, rpt): the caller's workspace, or a minimum-size one if too small."""
    pointwise = (kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0
                 and oH == H and oW == W)
    need = 0 if pointwise else oW * R
    ws = workspace
    if need > 0 and workspace.shape[0] < need:
        ws = np.empty(need, dtype=workspace.dtype)
    spp, rpt = _plan(N, oH, oW, R, Kg, max(ws.shape[0], need), nhwc)
    return ws, spp, rpt


def forward_nchw(x, weight, bias, out, workspace, stride_h, stride_w, pad_top, pad_left,
                 dilation_h, dilation_w, groups, num_threads):
    """out := bias + conv2d(x, weight) for x (N, C, H, W), weight (K, C/G, kh, kw), out (N, K, oH, oW)."""
    N, C, H, W = x.shape
    K, Cg, kh, kw = weight.shape
    oH, oW = out.shape[2], out.shape[3]
    if N == 0:
        return
    _use_threads(num_threads)
    ws, spp, rpt = _prepare(workspace, N, H, W, kh, kw, oH, oW, Cg * kh * kw, K // groups,
                            stride_h, stride_w, pad_top, pad_left, False)
    _fwd_nchw(x, weight, bias, out, ws, stride_h, stride_w, pad_top, pad_left,
              dilation_h, dilation_w, groups, spp, rpt)


def forward_nhwc(x, weight, bias, out, workspace, stride_h, stride_w, pad_top, pad_left,
                 dilation_h, dilation_w, groups, num_threads):
    """out := bias + conv2d(x, weight) for x (N, H, W, C), weight (kh, kw, C/G, K), out (N, oH, oW, K)."""
    N, H, W, C = x.shape
    kh, kw, Cg, K = weight.shape
    oH, oW = out.shape[1], out.shape[2]
    if N == 0:
        return
    _use_threads(num_threads)
    ws, spp, rpt = _prepare(workspace, N, H, W, kh, kw, oH, oW, Cg * kh * kw, K // groups,
                            stride_h, stride_w, pad_top, pad_left, True)
    _fwd_nhwc(x, weight, bias, out, ws, stride_h, stride_w, pad_top, pad_left,
              dilation_h, dilation_w, groups, rpt)


def grad_input_nchw(grad_output, weight, grad_input, workspace, stride_h, stride_w, pad_top,
                    pad_left, dilation_h, dilation_w, groups, num_threads):
    """grad_input := conv2d(x, weight)^T grad_output, NCHW (grad_input fully overwritten)."""
    N, C, H, W = grad_input.shape
    K, Cg, kh, kw = weight.shape
    oH, oW = grad_output.shape[2], grad_output.shape[3]
    if N == 0:
        return
    _use_threads(num_threads)
    ws, spp, rpt = _prepare(workspace, N, H, W, kh, kw, oH, oW, Cg * kh * kw, K // groups,
                            stride_h, stride_w, pad_top, pad_left, False)
    _gin_nchw(grad_output, weight, grad_input, ws, stride_h, stride_w, pad_top, pad_left,
              dilation_h, dilation_w, groups, spp, rpt)


def grad_input_nhwc(grad_output, weight, grad_input, workspace, stride_h, stride_w, pad_top,
                    pad_left, dilation_h, dilation_w, groups, num_threads):
    """grad_input := conv2d(x, weight)^T grad_output, NHWC (grad_input fully overwritten)."""
    N, H, W, C = grad_input.shape
    kh, kw, Cg, K = weight.shape
    oH, oW = grad_output.shape[1], grad_output.shape[2]
    if N == 0:
        return
    _use_threads(num_threads)
    ws, spp, rpt = _prepare(workspace, N, H, W, kh, kw, oH, oW, Cg * kh * kw, K // groups,
                            stride_h, stride_w, pad_top, pad_left, True)
    _gin_nhwc(grad_output, weight, grad_input, ws, stride_h, stride_w, pad_top, pad_left,
              dilation_h, dilation_w, groups, rpt)


def grad_weight_nchw(grad_output, x, grad_weight, workspace, stride_h, stride_w, pad_top,
                     pad_left, dilation_h, dilation_w, groups, num_threads):
    """grad_weight := sum_n grad_output[n] (x) im2col(x[n]), NCHW; zeros when N == 0."""
    N, C, H, W = x.shape
    K, Cg, kh, kw = grad_weight.shape
    oH, oW = grad_output.shape[2], grad_output.shape[3]
    if N == 0:
        grad_weight[...] = 0
        return
    _use_threads(num_threads)
    ws, spp, rpt = _prepare(workspace, N, H, W, kh, kw, oH, oW, Cg * kh * kw, K // groups,
                            stride_h, stride_w, pad_top, pad_left, False)
    _gw_nchw(grad_output, x, grad_weight, ws, stride_h, stride_w, pad_top, pad_left,
             dilation_h, dilation_w, groups, spp, rpt)


def grad_weight_nhwc(grad_output, x, grad_weight, workspace, stride_h, stride_w, pad_top,
                     pad_left, dilation_h, dilation_w, groups, num_threads):
    """grad_weight := sum_n im2col(x[n])^T grad_output[n], NHWC; zeros when N == 0."""
    N, H, W, C = x.shape
    kh, kw, Cg, K = grad_weight.shape
    oH, oW = grad_output.shape[1], grad_output.shape[2]
    if N == 0:
        grad_weight[...] = 0
        return
    _use_threads(num_threads)
    ws, spp, rpt = _prepare(workspace, N, H, W, kh, kw, oH, oW, Cg * kh * kw, K // groups,
                            stride_h, stride_w, pad_top, pad_left, True)
    _gw_nhwc(grad_output, x, grad_weight, ws, stride_h, stride_w, pad_top, pad_left,
             dilation_h, dilation_w, groups, rpt)


def workspace_elements(N, C, H, W, K, kh, kw, oH, oW, groups, max_elements, nhwc):
    """Scratch elements wanted: min(max_elements, 4Mi, whole batch), but at least one output row's columns."""
    R = (C // groups) * kh * kw
    P = oH * oW
    if N <= 0:
        return 0
    if kh == 1 and kw == 1 and oH == H and oW == W:
        return 0    # pointwise: no scratch (odd strided cases fall back to a small allocation)
    minimum = oW * R
    if nhwc or N == 1:
        per_sample = P * R
    else:
        per_sample = P * (R + K // groups)
    want = min(max_elements, _TILE_ELEMENTS)
    if N <= want // per_sample:
        want = per_sample * N
    return max(minimum, want)
