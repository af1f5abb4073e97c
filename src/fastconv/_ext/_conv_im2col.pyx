"""im2col + GEMM convolution kernels (forward, grad_input, grad_weight; NCHW and NHWC).

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
Tiles are runs of global output rows r = n*oH + oh sized to fit the caller's workspace.
1x1 kernels with stride 1 and no padding skip im2col (GEMM directly on the arrays).

Threads: one level at a time. im2col/col2im run in an OpenMP prange (num_threads) over
independent rows/planes; the GEMM is called outside any parallel region and uses OpenBLAS's
own threads. col2im is a gather per input row / channel plane: race-free and deterministic.
"""
from cython.parallel cimport parallel, prange

from fastconv._ext._fpenv cimport flush_denormals_enter, flush_denormals_exit
from libc.limits cimport INT_MAX
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

ctypedef fused floating:
    float
    double

# Run im2col/col2im with OpenMP threads (1) or serially (0). Measured on the 2-core target:
# libgomp workers still spinning after a prange steal the cores OpenBLAS's threads need for the
# GEMM that follows (up to 10-50x slowdowns with many tiles), while serial im2col costs only
# ~10-20% next to the GEMM. So the default is serial and num_threads is not used by the kernels.
cdef int _IM2COL_OMP = 0

# Workspace wanted by default (elements), below the caller's max: columns of ~16 MB (float32)
# stay mostly in L3 between im2col and the GEMM; larger tiles measured no faster.
cdef Py_ssize_t _TILE_ELEMENTS = 4 << 20


cdef struct Geom:
    Py_ssize_t N, C, H, W, K, kh, kw, oH, oW, G, Cg, Kg, R, P
    Py_ssize_t sh, sw, pt, pl, dh, dw


cdef Geom _geom(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t K,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oH, Py_ssize_t oW,
                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t G) noexcept:
    cdef Geom g
    g.N = N; g.C = C; g.H = H; g.W = W; g.K = K; g.kh = kh; g.kw = kw; g.oH = oH; g.oW = oW
    g.sh = sh; g.sw = sw; g.pt = pt; g.pl = pl; g.dh = dh; g.dw = dw; g.G = G
    g.Cg = C // G; g.Kg = K // G; g.R = g.Cg * kh * kw; g.P = oH * oW
    return g


cdef inline bint _pointwise(const Geom *g) noexcept nogil:
    """True when the convolution is a plain matrix product (1x1, stride 1, no padding)."""
    return (g.kh == 1 and g.kw == 1 and g.sh == 1 and g.sw == 1 and g.pt == 0 and g.pl == 0
            and g.oH == g.H and g.oW == g.W)


cdef inline Py_ssize_t _min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline Py_ssize_t _max(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline void _valid_range(Py_ssize_t off, Py_ssize_t s, Py_ssize_t size, Py_ssize_t n_out,
                              Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """[lo, hi) = {o in [0, n_out) : 0 <= o*s + off < size}."""
    cdef Py_ssize_t l, h
    l = 0 if off >= 0 else (-off + s - 1) // s
    h = 0 if size - 1 - off < 0 else (size - 1 - off) // s + 1
    l = _min(l, n_out)
    h = _max(l, _min(h, n_out))
    lo[0] = l
    hi[0] = h


cdef inline void _gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                       const floating *a, Py_ssize_t lda, const floating *b, Py_ssize_t ldb,
                       floating beta, floating *c, Py_ssize_t ldc) noexcept nogil:
    """Row-major C (m, n) := op(A) @ op(B) + beta * C (BLAS called as C^T = op(B)^T op(A)^T)."""
    cdef char *ta = b"T" if trans_a else b"N"
    cdef char *tb = b"T" if trans_b else b"N"
    cdef int mi = <int>m, ni = <int>n, ki = <int>k
    cdef int la = <int>lda, lb = <int>ldb, lc = <int>ldc
    cdef floating one = 1
    if m <= 0 or n <= 0 or k <= 0:
        return
    if floating is float:
        sgemm(tb, ta, &ni, &mi, &ki, &one, <float *>b, &lb, <float *>a, &la, &beta, c, &lc)
    else:
        dgemm(tb, ta, &ni, &mi, &ki, &one, <double *>b, &lb, <double *>a, &la, &beta, c, &lc)


cdef inline bint _next_tile(const Geom *g, Py_ssize_t spp, Py_ssize_t rpt, bint cross,
                            Py_ssize_t *r0, Py_ssize_t *r1) noexcept nogil:
    """Advance [r0, r1) to the next tile of global output rows; False when done.

    spp > 0: tiles of spp whole samples; else tiles of rpt rows (inside one sample unless cross).
    """
    cdef Py_ssize_t start = r1[0], total = g.N * g.oH, end, n
    if start >= total:
        return False
    if spp > 0:
        end = _min(start + spp * g.oH, total)
    elif cross:
        end = _min(start + rpt, total)
    else:
        n = start // g.oH
        end = _min(start + rpt, (n + 1) * g.oH)
    r0[0] = start
    r1[0] = end
    return True


# ----------------------------------------------------------------------------------------------
# NHWC im2col / col2im
# ----------------------------------------------------------------------------------------------

cdef void _im2col_nhwc_row(const floating *x, floating *col, const Geom *g, Py_ssize_t c0,
                           Py_ssize_t r0, Py_ssize_t r) noexcept nogil:
    """col[(r - r0)*oW + ow, (i*kw + j)*Cg + c] = x[n, ih, iw, c0 + c] (0 in the padding)."""
    cdef Py_ssize_t n = r // g.oH, oh = r - n * g.oH
    cdef Py_ssize_t Cg = g.Cg, C = g.C, W = g.W, kw = g.kw, R = g.R, KC = g.kw * g.Cg
    cdef bint runs = g.dw == 1 and Cg == C
    cdef Py_ssize_t ow, i, j, c, ih, iw, iw0
    cdef floating *d
    cdef floating *di
    cdef floating *dj
    cdef const floating *xrow
    cdef const floating *s
    for ow in range(g.oW):
        d = col + ((r - r0) * g.oW + ow) * R
        iw0 = ow * g.sw - g.pl
        for i in range(g.kh):
            di = d + i * KC
            ih = oh * g.sh - g.pt + i * g.dh
            if ih < 0 or ih >= g.H:
                memset(di, 0, KC * sizeof(floating))
                continue
            xrow = x + ((n * g.H + ih) * W) * C + c0
            if runs and iw0 >= 0 and iw0 + kw <= W:
                memcpy(di, xrow + iw0 * C, KC * sizeof(floating))
                continue
            for j in range(kw):
                dj = di + j * Cg
                iw = iw0 + j * g.dw
                if iw < 0 or iw >= W:
                    for c in range(Cg):
                        dj[c] = 0
                else:
                    s = xrow + iw * C
                    for c in range(Cg):
                        dj[c] = s[c]


cdef void _im2col_nhwc(const floating *x, floating *col, const Geom *g, Py_ssize_t c0,
                       Py_ssize_t r0, Py_ssize_t r1, int nt) noexcept nogil:
    """col (T, R) of output rows [r0, r1) for the group whose channels start at c0."""
    cdef Py_ssize_t r
    if nt > 1 and r1 - r0 > 1:
        with parallel(num_threads=nt):
            flush_denormals_enter()
            for r in prange(r0, r1, schedule="static"):
                _im2col_nhwc_row(x, col, g, c0, r0, r)
            flush_denormals_exit()
    else:
        for r in range(r0, r1):
            _im2col_nhwc_row(x, col, g, c0, r0, r)


cdef void _col2im_nhwc_row(const floating *col, floating *gin, const Geom *g, Py_ssize_t c0,
                           Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t q) noexcept nogil:
    """gin[n, ih, iw, c0 + c] += sum of the tile's col entries that im2col read from there."""
    cdef Py_ssize_t n = q // g.H, ih = q - n * g.H
    cdef Py_ssize_t a = _max(r0 - n * g.oH, 0), b = _min(r1 - n * g.oH, g.oH)
    cdef Py_ssize_t Cg = g.Cg, C = g.C, R = g.R
    cdef Py_ssize_t i, j, t, oh, ow, off, lo, hi, c
    cdef floating *drow = gin + q * g.W * C + c0
    cdef floating *d
    cdef const floating *crow
    cdef const floating *s
    if a >= b:
        return
    for i in range(g.kh):
        t = ih + g.pt - i * g.dh
        if t < 0 or t % g.sh != 0:
            continue
        oh = t // g.sh
        if oh < a or oh >= b:
            continue
        crow = col + ((n * g.oH + oh - r0) * g.oW) * R + i * g.kw * Cg
        for j in range(g.kw):
            off = j * g.dw - g.pl
            _valid_range(off, g.sw, g.W, g.oW, &lo, &hi)
            for ow in range(lo, hi):
                d = drow + (ow * g.sw + off) * C
                s = crow + ow * R + j * Cg
                for c in range(Cg):
                    d[c] += s[c]


cdef void _col2im_nhwc(const floating *col, floating *gin, const Geom *g, Py_ssize_t c0,
                       Py_ssize_t r0, Py_ssize_t r1, int nt) noexcept nogil:
    """Accumulate col (T, R) of output rows [r0, r1) into the input rows they touch."""
    cdef Py_ssize_t nf = r0 // g.oH, nl = (r1 - 1) // g.oH
    cdef Py_ssize_t q_lo = nf * g.H + _min(g.H, _max(0, (r0 - nf * g.oH) * g.sh - g.pt))
    cdef Py_ssize_t q_hi = nl * g.H + _max(0, _min(g.H, (r1 - 1 - nl * g.oH) * g.sh - g.pt
                                                   + (g.kh - 1) * g.dh + 1))
    cdef Py_ssize_t q
    if nt > 1 and q_hi - q_lo > 1:
        with parallel(num_threads=nt):
            flush_denormals_enter()
            for q in prange(q_lo, q_hi, schedule="static"):
                _col2im_nhwc_row(col, gin, g, c0, r0, r1, q)
            flush_denormals_exit()
    else:
        for q in range(q_lo, q_hi):
            _col2im_nhwc_row(col, gin, g, c0, r0, r1, q)


# ----------------------------------------------------------------------------------------------
# NCHW im2col / col2im
# ----------------------------------------------------------------------------------------------

cdef void _im2col_nchw_row(const floating *x, floating *col, const Geom *g, Py_ssize_t c0,
                           Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t rr) noexcept nogil:
    """col[rr = (c*kh + i)*kw + j, (r - r0)*oW + ow] = x[n, c0 + c, ih, iw] (0 in the padding)."""
    cdef Py_ssize_t kk = g.kh * g.kw
    cdef Py_ssize_t c = rr // kk, ij = rr - c * kk, i = ij // g.kw, j = ij - i * g.kw
    cdef Py_ssize_t T = (r1 - r0) * g.oW, oW = g.oW, sw = g.sw
    cdef Py_ssize_t off = j * g.dw - g.pl, lo, hi, r, n, oh, ih, ow
    cdef floating *d
    cdef const floating *s
    _valid_range(off, sw, g.W, oW, &lo, &hi)
    for r in range(r0, r1):
        n = r // g.oH
        oh = r - n * g.oH
        ih = oh * g.sh - g.pt + i * g.dh
        d = col + rr * T + (r - r0) * oW
        if ih < 0 or ih >= g.H:
            memset(d, 0, oW * sizeof(floating))
            continue
        s = x + ((n * g.C + c0 + c) * g.H + ih) * g.W
        for ow in range(lo):
            d[ow] = 0
        if sw == 1:
            for ow in range(lo, hi):
                d[ow] = s[ow + off]
        else:
            for ow in range(lo, hi):
                d[ow] = s[ow * sw + off]
        for ow in range(hi, oW):
            d[ow] = 0


cdef void _im2col_nchw(const floating *x, floating *col, const Geom *g, Py_ssize_t c0,
                       Py_ssize_t r0, Py_ssize_t r1, int nt) noexcept nogil:
    """col (R, T) of output rows [r0, r1) for the group whose channels start at c0."""
    cdef Py_ssize_t rr
    if nt > 1 and g.R > 1:
        with parallel(num_threads=nt):
            flush_denormals_enter()
            for rr in prange(g.R, schedule="static"):
                _im2col_nchw_row(x, col, g, c0, r0, r1, rr)
            flush_denormals_exit()
    else:
        for rr in range(g.R):
            _im2col_nchw_row(x, col, g, c0, r0, r1, rr)


cdef void _col2im_nchw_plane(const floating *col, floating *gin, const Geom *g, Py_ssize_t c0,
                             Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n,
                             Py_ssize_t c) noexcept nogil:
    """gin[n, c0 + c] += the tile's col rows (c, i, j) scattered back to input positions."""
    cdef Py_ssize_t T = (r1 - r0) * g.oW, oW = g.oW, sw = g.sw, W = g.W
    cdef Py_ssize_t ra = _max(r0, n * g.oH), rb = _min(r1, (n + 1) * g.oH)
    cdef Py_ssize_t i, j, r, oh, ih, ow, off, lo, hi
    cdef floating *plane = gin + (n * g.C + c0 + c) * g.H * W
    cdef floating *d
    cdef const floating *s
    cdef const floating *srow
    for i in range(g.kh):
        for j in range(g.kw):
            off = j * g.dw - g.pl
            _valid_range(off, sw, W, oW, &lo, &hi)
            srow = col + ((c * g.kh + i) * g.kw + j) * T
            for r in range(ra, rb):
                oh = r - n * g.oH
                ih = oh * g.sh - g.pt + i * g.dh
                if ih < 0 or ih >= g.H:
                    continue
                s = srow + (r - r0) * oW
                d = plane + ih * W
                if sw == 1:
                    for ow in range(lo, hi):
                        d[ow + off] += s[ow]
                else:
                    for ow in range(lo, hi):
                        d[ow * sw + off] += s[ow]


cdef void _col2im_nchw(const floating *col, floating *gin, const Geom *g, Py_ssize_t c0,
                       Py_ssize_t r0, Py_ssize_t r1, int nt) noexcept nogil:
    """Accumulate col (R, T) of output rows [r0, r1) into grad_input, one channel plane per task."""
    cdef Py_ssize_t nf = r0 // g.oH, nl = (r1 - 1) // g.oH, Cg = g.Cg
    cdef Py_ssize_t q, nq = (nl - nf + 1) * Cg
    if nt > 1 and nq > 1:
        with parallel(num_threads=nt):
            flush_denormals_enter()
            for q in prange(nq, schedule="static"):
                _col2im_nchw_plane(col, gin, g, c0, r0, r1, nf + q // Cg, q % Cg)
            flush_denormals_exit()
    else:
        for q in range(nq):
            _col2im_nchw_plane(col, gin, g, c0, r0, r1, nf + q // Cg, q % Cg)


cdef void _pack_rows(const floating *src, floating *dst, const Geom *g, Py_ssize_t k0,
                     Py_ssize_t nk, Py_ssize_t r0, Py_ssize_t r1, bint to_tile) noexcept nogil:
    """Copy between an NCHW array's channels [k0, k0+nk) of rows [r0, r1) and a (nk, T) tile.

    to_tile: dst[k, t] = src[n, k0 + k, pixel];  else src is the tile and dst the array.
    """
    cdef Py_ssize_t T = (r1 - r0) * g.oW, P = g.P, chans = g.K
    cdef Py_ssize_t nf = r0 // g.oH, nl = (r1 - 1) // g.oH, n, k, ra, rb, length, toff, aoff
    for n in range(nf, nl + 1):
        ra = _max(r0, n * g.oH)
        rb = _min(r1, (n + 1) * g.oH)
        length = (rb - ra) * g.oW
        toff = (ra - r0) * g.oW
        for k in range(nk):
            aoff = (n * chans + k0 + k) * P + (ra - n * g.oH) * g.oW
            if to_tile:
                memcpy(dst + k * T + toff, src + aoff, length * sizeof(floating))
            else:
                memcpy(dst + aoff, src + k * T + toff, length * sizeof(floating))


# ----------------------------------------------------------------------------------------------
# Tile planning
# ----------------------------------------------------------------------------------------------

cdef inline Py_ssize_t _min_workspace(const Geom *g) noexcept nogil:
    """Scratch elements one tile (one output row of one group) needs; 0 for pointwise."""
    if _pointwise(g):
        return 0
    return g.oW * g.R


cdef void _plan(const Geom *g, Py_ssize_t ws_n, bint nhwc, Py_ssize_t *spp,
                Py_ssize_t *rpt) noexcept nogil:
    """Samples per tile (spp > 0, NCHW whole samples) or output rows per tile (rpt)."""
    cdef Py_ssize_t rows_int = INT_MAX // g.oW
    cdef Py_ssize_t per_sample
    spp[0] = 0
    if nhwc:
        rpt[0] = _max(1, _min(_min(ws_n // (g.oW * g.R), rows_int), g.N * g.oH))
        return
    if ws_n >= g.P * g.R and g.oH <= rows_int:
        # whole samples; several need a (Kg, T) staging buffer after the columns
        per_sample = g.P * (g.R + g.Kg)
        spp[0] = _max(1, _min(_min(ws_n // per_sample, rows_int // g.oH), g.N))
        rpt[0] = 0
    else:
        rpt[0] = _max(1, _min(_min(ws_n // (g.oW * g.R), rows_int), g.oH))


# ----------------------------------------------------------------------------------------------
# NHWC kernels
# ----------------------------------------------------------------------------------------------

cdef void _fwd_nhwc(const floating *x, const floating *w, const floating *bias, floating *out,
                    floating *ws, Py_ssize_t ws_n, const Geom *g, int nt) noexcept nogil:
    """out[n, oh, ow, k] = bias[k] + sum_{i, j, c} x[n, ih, iw, g*Cg + c] * w[i, j, c, k]."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, gi, p, p0, m, chunk, spp, rpt
    cdef Py_ssize_t r0 = 0, r1 = 0, npix = g.N * g.P
    if _pointwise(g):
        for p in range(npix):
            memcpy(out + p * K, bias, K * sizeof(floating))
        chunk = INT_MAX
        p0 = 0
        while p0 < npix:
            m = _min(chunk, npix - p0)
            for gi in range(g.G):
                _gemm(False, False, m, Kg, Cg, x + p0 * g.C + gi * Cg, g.C, w + gi * Kg, K,
                      1, out + p0 * K + gi * Kg, K)
            p0 += m
        return
    _plan(g, ws_n, True, &spp, &rpt)
    while _next_tile(g, 0, rpt, True, &r0, &r1):
        p0 = r0 * g.oW
        m = (r1 - r0) * g.oW
        for p in range(p0, p0 + m):
            memcpy(out + p * K, bias, K * sizeof(floating))
        for gi in range(g.G):
            _im2col_nhwc(x, ws, g, gi * Cg, r0, r1, nt)
            _gemm(False, False, m, Kg, R, ws, R, w + gi * Kg, K, 1, out + p0 * K + gi * Kg, K)


cdef void _gin_nhwc(const floating *gout, const floating *w, floating *gin, floating *ws,
                    Py_ssize_t ws_n, const Geom *g, int nt) noexcept nogil:
    """gin[n, ih, iw, c] = sum over (oh, ow, i, j) hitting it of gout[n, oh, ow, k] * w[i, j, c, k]."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, gi, p0, m, chunk, spp, rpt
    cdef Py_ssize_t r0 = 0, r1 = 0, npix = g.N * g.P
    if _pointwise(g):
        chunk = INT_MAX
        p0 = 0
        while p0 < npix:
            m = _min(chunk, npix - p0)
            for gi in range(g.G):
                _gemm(False, True, m, Cg, Kg, gout + p0 * K + gi * Kg, K, w + gi * Kg, K,
                      0, gin + p0 * g.C + gi * Cg, g.C)
            p0 += m
        return
    memset(gin, 0, g.N * g.H * g.W * g.C * sizeof(floating))
    _plan(g, ws_n, True, &spp, &rpt)
    while _next_tile(g, 0, rpt, True, &r0, &r1):
        p0 = r0 * g.oW
        m = (r1 - r0) * g.oW
        for gi in range(g.G):
            _gemm(False, True, m, R, Kg, gout + p0 * K + gi * Kg, K, w + gi * Kg, K, 0, ws, R)
            _col2im_nhwc(ws, gin, g, gi * Cg, r0, r1, nt)


cdef void _gw_nhwc(const floating *gout, const floating *x, floating *gw, floating *ws,
                   Py_ssize_t ws_n, const Geom *g, int nt) noexcept nogil:
    """gw[i, j, c, k] = sum_{n, oh, ow} gout[n, oh, ow, k] * x[n, ih, iw, g*Cg + c]."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, gi, p0, m, chunk, spp, rpt
    cdef Py_ssize_t r0 = 0, r1 = 0, npix = g.N * g.P
    cdef floating beta = 0
    if _pointwise(g):
        chunk = INT_MAX
        p0 = 0
        while p0 < npix:
            m = _min(chunk, npix - p0)
            for gi in range(g.G):
                _gemm(True, False, Cg, Kg, m, x + p0 * g.C + gi * Cg, g.C,
                      gout + p0 * K + gi * Kg, K, beta, gw + gi * Kg, K)
            beta = 1
            p0 += m
        return
    _plan(g, ws_n, True, &spp, &rpt)
    while _next_tile(g, 0, rpt, True, &r0, &r1):
        p0 = r0 * g.oW
        m = (r1 - r0) * g.oW
        for gi in range(g.G):
            _im2col_nhwc(x, ws, g, gi * Cg, r0, r1, nt)
            _gemm(True, False, R, Kg, m, ws, R, gout + p0 * K + gi * Kg, K, beta, gw + gi * Kg, K)
        beta = 1


# ----------------------------------------------------------------------------------------------
# NCHW kernels
# ----------------------------------------------------------------------------------------------

cdef void _fwd_nchw(const floating *x, const floating *w, const floating *bias, floating *out,
                    floating *ws, Py_ssize_t ws_n, const Geom *g, int nt) noexcept nogil:
    """out[n, k, oh, ow] = bias[k] + sum_{c, i, j} x[n, g*Cg + c, ih, iw] * w[k, c, i, j]."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, P = g.P
    cdef Py_ssize_t n, k, t, gi, spp, rpt, T, nf, nl, r0 = 0, r1 = 0
    cdef floating *o
    cdef floating *tmp
    cdef floating bk
    if _pointwise(g):
        for n in range(g.N):
            for k in range(K):
                o = out + (n * K + k) * P
                bk = bias[k]
                for t in range(P):
                    o[t] = bk
            for gi in range(g.G):
                _gemm(False, False, Kg, P, Cg, w + gi * Kg * Cg, Cg, x + (n * g.C + gi * Cg) * P, P,
                      1, out + (n * K + gi * Kg) * P, P)
        return
    _plan(g, ws_n, False, &spp, &rpt)
    while _next_tile(g, spp, rpt, False, &r0, &r1):
        T = (r1 - r0) * g.oW
        nf = r0 // g.oH
        nl = (r1 - 1) // g.oH
        tmp = ws + R * T
        for gi in range(g.G):
            _im2col_nchw(x, ws, g, gi * Cg, r0, r1, nt)
            if nf == nl:
                o = out + (nf * K + gi * Kg) * P + (r0 - nf * g.oH) * g.oW
                for k in range(Kg):
                    bk = bias[gi * Kg + k]
                    for t in range(T):
                        o[k * P + t] = bk
                _gemm(False, False, Kg, T, R, w + gi * Kg * R, R, ws, T, 1, o, P)
            else:
                for k in range(Kg):
                    bk = bias[gi * Kg + k]
                    for t in range(T):
                        tmp[k * T + t] = bk
                _gemm(False, False, Kg, T, R, w + gi * Kg * R, R, ws, T, 1, tmp, T)
                _pack_rows(tmp, out, g, gi * Kg, Kg, r0, r1, False)


cdef void _gin_nchw(const floating *gout, const floating *w, floating *gin, floating *ws,
                    Py_ssize_t ws_n, const Geom *g, int nt) noexcept nogil:
    """gin[n, c, ih, iw] = sum over (oh, ow, i, j) hitting it of gout[n, k, oh, ow] * w[k, c, i, j]."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, P = g.P
    cdef Py_ssize_t n, gi, spp, rpt, T, nf, nl, r0 = 0, r1 = 0
    cdef floating *tmp
    if _pointwise(g):
        for n in range(g.N):
            for gi in range(g.G):
                _gemm(True, False, Cg, P, Kg, w + gi * Kg * Cg, Cg, gout + (n * K + gi * Kg) * P, P,
                      0, gin + (n * g.C + gi * Cg) * P, P)
        return
    memset(gin, 0, g.N * g.C * g.H * g.W * sizeof(floating))
    _plan(g, ws_n, False, &spp, &rpt)
    while _next_tile(g, spp, rpt, False, &r0, &r1):
        T = (r1 - r0) * g.oW
        nf = r0 // g.oH
        nl = (r1 - 1) // g.oH
        tmp = ws + R * T
        for gi in range(g.G):
            if nf == nl:
                _gemm(True, False, R, T, Kg, w + gi * Kg * R, R,
                      gout + (nf * K + gi * Kg) * P + (r0 - nf * g.oH) * g.oW, P, 0, ws, T)
            else:
                _pack_rows(gout, tmp, g, gi * Kg, Kg, r0, r1, True)
                _gemm(True, False, R, T, Kg, w + gi * Kg * R, R, tmp, T, 0, ws, T)
            _col2im_nchw(ws, gin, g, gi * Cg, r0, r1, nt)


cdef void _gw_nchw(const floating *gout, const floating *x, floating *gw, floating *ws,
                   Py_ssize_t ws_n, const Geom *g, int nt) noexcept nogil:
    """gw[k, c, i, j] = sum_{n, oh, ow} gout[n, k, oh, ow] * x[n, g*Cg + c, ih, iw]."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, P = g.P
    cdef Py_ssize_t n, gi, spp, rpt, T, nf, nl, r0 = 0, r1 = 0
    cdef floating *tmp
    cdef floating beta = 0
    if _pointwise(g):
        for n in range(g.N):
            for gi in range(g.G):
                _gemm(False, True, Kg, Cg, P, gout + (n * K + gi * Kg) * P, P,
                      x + (n * g.C + gi * Cg) * P, P, beta, gw + gi * Kg * Cg, Cg)
            beta = 1
        return
    _plan(g, ws_n, False, &spp, &rpt)
    while _next_tile(g, spp, rpt, False, &r0, &r1):
        T = (r1 - r0) * g.oW
        nf = r0 // g.oH
        nl = (r1 - 1) // g.oH
        tmp = ws + R * T
        for gi in range(g.G):
            _im2col_nchw(x, ws, g, gi * Cg, r0, r1, nt)
            if nf == nl:
                _gemm(False, True, Kg, R, T,
                      gout + (nf * K + gi * Kg) * P + (r0 - nf * g.oH) * g.oW, P, ws, T,
                      beta, gw + gi * Kg * R, R)
            else:
                _pack_rows(gout, tmp, g, gi * Kg, Kg, r0, r1, True)
                _gemm(False, True, Kg, R, T, tmp, T, ws, T, beta, gw + gi * Kg * R, R)
        beta = 1


# ----------------------------------------------------------------------------------------------
# Python boundary
# ----------------------------------------------------------------------------------------------

cdef floating *_scratch(floating[::1] workspace, const Geom *g, Py_ssize_t *ws_n,
                        floating **owned) except? NULL:
    """The caller's workspace, or an owned minimum-size buffer when it is too small."""
    cdef Py_ssize_t need = _min_workspace(g)
    ws_n[0] = workspace.shape[0]
    owned[0] = NULL
    if need > 0 and ws_n[0] < need:
        owned[0] = <floating *>malloc(need * sizeof(floating))
        if owned[0] == NULL:
            raise MemoryError()
        ws_n[0] = need
        return owned[0]
    if ws_n[0] > 0:
        return &workspace[0]
    return NULL


cdef inline int _threads(int num_threads) noexcept:
    return num_threads if (_IM2COL_OMP and num_threads > 1) else 1


def forward_nchw(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                 const floating[::1] bias, floating[:, :, :, ::1] out, floating[::1] workspace,
                 Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                 Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups, int num_threads):
    """out := bias + conv2d(x, weight) for x (N, C, H, W), weight (K, C/G, kh, kw), out (N, K, oH, oW)."""
    cdef Geom g = _geom(x.shape[0], x.shape[1], x.shape[2], x.shape[3], weight.shape[0],
                        weight.shape[2], weight.shape[3], out.shape[2], out.shape[3],
                        stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t ws_n
    cdef floating *owned
    cdef floating *ws
    cdef int nt = _threads(num_threads)
    if g.N == 0:
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _fwd_nchw(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                      ws, ws_n, &g, nt)
    finally:
        free(owned)


def forward_nhwc(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                 const floating[::1] bias, floating[:, :, :, ::1] out, floating[::1] workspace,
                 Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
                 Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t groups, int num_threads):
    """out := bias + conv2d(x, weight) for x (N, H, W, C), weight (kh, kw, C/G, K), out (N, oH, oW, K)."""
    cdef Geom g = _geom(x.shape[0], x.shape[3], x.shape[1], x.shape[2], weight.shape[3],
                        weight.shape[0], weight.shape[1], out.shape[1], out.shape[2],
                        stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t ws_n
    cdef floating *owned
    cdef floating *ws
    cdef int nt = _threads(num_threads)
    if g.N == 0:
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _fwd_nhwc(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                      ws, ws_n, &g, nt)
    finally:
        free(owned)


def grad_input_nchw(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] weight,
                    floating[:, :, :, ::1] grad_input, floating[::1] workspace,
                    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                    Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                    Py_ssize_t groups, int num_threads):
    """grad_input := conv2d(x, weight)^T grad_output, NCHW (grad_input fully overwritten)."""
    cdef Geom g = _geom(grad_input.shape[0], grad_input.shape[1], grad_input.shape[2],
                        grad_input.shape[3], weight.shape[0], weight.shape[2], weight.shape[3],
                        grad_output.shape[2], grad_output.shape[3],
                        stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t ws_n
    cdef floating *owned
    cdef floating *ws
    cdef int nt = _threads(num_threads)
    if g.N == 0:
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _gin_nchw(&grad_output[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_input[0, 0, 0, 0],
                      ws, ws_n, &g, nt)
    finally:
        free(owned)


def grad_input_nhwc(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] weight,
                    floating[:, :, :, ::1] grad_input, floating[::1] workspace,
                    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                    Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                    Py_ssize_t groups, int num_threads):
    """grad_input := conv2d(x, weight)^T grad_output, NHWC (grad_input fully overwritten)."""
    cdef Geom g = _geom(grad_input.shape[0], grad_input.shape[3], grad_input.shape[1],
                        grad_input.shape[2], weight.shape[3], weight.shape[0], weight.shape[1],
                        grad_output.shape[1], grad_output.shape[2],
                        stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t ws_n
    cdef floating *owned
    cdef floating *ws
    cdef int nt = _threads(num_threads)
    if g.N == 0:
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _gin_nhwc(&grad_output[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_input[0, 0, 0, 0],
                      ws, ws_n, &g, nt)
    finally:
        free(owned)


def grad_weight_nchw(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] x,
                     floating[:, :, :, ::1] grad_weight, floating[::1] workspace,
                     Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                     Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                     Py_ssize_t groups, int num_threads):
    """grad_weight := sum_n grad_output[n] (x) im2col(x[n]), NCHW; zeros when N == 0."""
    cdef Geom g = _geom(x.shape[0], x.shape[1], x.shape[2], x.shape[3], grad_weight.shape[0],
                        grad_weight.shape[2], grad_weight.shape[3],
                        grad_output.shape[2], grad_output.shape[3],
                        stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t ws_n
    cdef floating *owned
    cdef floating *ws
    cdef int nt = _threads(num_threads)
    if g.N == 0:
        grad_weight[...] = 0
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _gw_nchw(&grad_output[0, 0, 0, 0], &x[0, 0, 0, 0], &grad_weight[0, 0, 0, 0],
                     ws, ws_n, &g, nt)
    finally:
        free(owned)


def grad_weight_nhwc(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] x,
                     floating[:, :, :, ::1] grad_weight, floating[::1] workspace,
                     Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                     Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                     Py_ssize_t groups, int num_threads):
    """grad_weight := sum_n im2col(x[n])^T grad_output[n], NHWC; zeros when N == 0."""
    cdef Geom g = _geom(x.shape[0], x.shape[3], x.shape[1], x.shape[2], grad_weight.shape[3],
                        grad_weight.shape[0], grad_weight.shape[1],
                        grad_output.shape[1], grad_output.shape[2],
                        stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t ws_n
    cdef floating *owned
    cdef floating *ws
    cdef int nt = _threads(num_threads)
    if g.N == 0:
        grad_weight[...] = 0
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _gw_nhwc(&grad_output[0, 0, 0, 0], &x[0, 0, 0, 0], &grad_weight[0, 0, 0, 0],
                     ws, ws_n, &g, nt)
    finally:
        free(owned)


def workspace_elements(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t K,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oH, Py_ssize_t oW,
                       Py_ssize_t groups, Py_ssize_t max_elements, bint nhwc):
    """Scratch elements wanted: min(max_elements, 4Mi, whole batch), but at least one output row's columns."""
    cdef Py_ssize_t R = (C // groups) * kh * kw, P = oH * oW, per_sample, minimum, want
    if N <= 0:
        return 0
    if kh == 1 and kw == 1 and oH == H and oW == W:
        return 0    # pointwise: no scratch (odd strided cases fall back to a small malloc)
    minimum = oW * R
    if nhwc or N == 1:
        per_sample = P * R
    else:
        per_sample = P * (R + K // groups)
    want = _min(max_elements, _TILE_ELEMENTS)
    if N <= want // per_sample:
        want = per_sample * N
    return _max(minimum, want)
