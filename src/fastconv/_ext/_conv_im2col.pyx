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
Tiles are runs of global output rows r = n*oH + oh (in NCHW within one sample, or several
whole samples through a staging block), sized so that each thread's columns fit in L2.
1x1 kernels with stride 1 and no padding skip im2col (GEMM directly on the arrays).

Threads: forward and grad_weight run their tiles in an OpenMP prange; each thread gathers its
own columns and calls BLAS itself, which the Python caller limits to one thread meanwhile
(fastconv._config.kernel_blas_threads). grad_weight sums per-thread accumulators under a
static schedule, so the bits do not depend on timing. grad_input's col2im scatters into
input rows shared by neighbouring tiles, so each thread takes whole samples. Where the tiles
(or samples) run in turn instead, on one thread (layers whose weights outweigh a thread's
share of the columns, a batch of one sample), each GEMM is split over the threads
(_blas.gemm_on): BLAS never runs threads of its own, which would contend with OpenMP's.
"""
from cython.parallel cimport parallel, prange, threadid

from fastconv._ext._fpenv cimport flush_denormals_enter, flush_denormals_exit
from libc.limits cimport INT_MAX
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from fastconv._ext._blas cimport floating, gemm_on as _gemm_on

# grad_input's workspace (elements, all threads), below the caller's max.
cdef Py_ssize_t _TILE_ELEMENTS = 4 << 20

# Columns per thread in the parallel forward and grad_weight: a 1 MB L2 in float32 (measured
# 128K-1M elements within noise of each other on the suite; 32K-64K better only for K <= 16).
cdef Py_ssize_t _THREAD_TILE_ELEMENTS = 256 << 10


def _set_thread_tile_elements(Py_ssize_t n):
    """Tuning hook for benchmarks: columns per thread (elements); returns the old value."""
    global _THREAD_TILE_ELEMENTS
    old = _THREAD_TILE_ELEMENTS
    _THREAD_TILE_ELEMENTS = _max(1, n)
    return old


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
                       Py_ssize_t r0, Py_ssize_t r1, int gnt) noexcept nogil:
    """col (T, R) of output rows [r0, r1) for the group whose channels start at c0, the rows
    shared among gnt threads (tiles that run in turn)."""
    cdef Py_ssize_t r
    if gnt > 1:
        for r in prange(r0, r1, num_threads=gnt, schedule="static"):
            _im2col_nhwc_row(x, col, g, c0, r0, r)
        return
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
                       Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Accumulate col (T, R) of output rows [r0, r1) into the input rows they touch."""
    cdef Py_ssize_t nf = r0 // g.oH, nl = (r1 - 1) // g.oH
    cdef Py_ssize_t q_lo = nf * g.H + _min(g.H, _max(0, (r0 - nf * g.oH) * g.sh - g.pt))
    cdef Py_ssize_t q_hi = nl * g.H + _max(0, _min(g.H, (r1 - 1 - nl * g.oH) * g.sh - g.pt
                                                   + (g.kh - 1) * g.dh + 1))
    cdef Py_ssize_t q
    for q in range(q_lo, q_hi):
        _col2im_nhwc_row(col, gin, g, c0, r0, r1, q)


# ----------------------------------------------------------------------------------------------
# NCHW im2col / col2im
# ----------------------------------------------------------------------------------------------

cdef extern from *:
    """
    #include <string.h>
    #if defined(__AVX512F__)
    #include <immintrin.h>
    #endif
    /* d[u] := s[u] (or 0 where s is NULL) for u < w: rows of output pixels are often short
       (7 at 7x7), where a copy loop's setup and scalar tail cost more than the copy.
       AVX-512 moves them in whole vectors, the last one masked. */
    static inline void fastconv_move_f(float *d, const float *s, Py_ssize_t w) {
    #if defined(__AVX512F__)
        for (; w >= 16; w -= 16, d += 16) {
            _mm512_storeu_ps(d, s ? _mm512_loadu_ps(s) : _mm512_setzero_ps());
            if (s) s += 16;
        }
        if (w > 0) {
            const __mmask16 m = (__mmask16)((1u << w) - 1);
            _mm512_mask_storeu_ps(d, m, s ? _mm512_maskz_loadu_ps(m, s) : _mm512_setzero_ps());
        }
    #else
        if (s) memcpy(d, s, w * sizeof(float)); else memset(d, 0, w * sizeof(float));
    #endif
    }
    static inline void fastconv_move_d(double *d, const double *s, Py_ssize_t w) {
    #if defined(__AVX512F__)
        for (; w >= 8; w -= 8, d += 8) {
            _mm512_storeu_pd(d, s ? _mm512_loadu_pd(s) : _mm512_setzero_pd());
            if (s) s += 8;
        }
        if (w > 0) {
            const __mmask8 m = (__mmask8)((1u << w) - 1);
            _mm512_mask_storeu_pd(d, m, s ? _mm512_maskz_loadu_pd(m, s) : _mm512_setzero_pd());
        }
    #else
        if (s) memcpy(d, s, w * sizeof(double)); else memset(d, 0, w * sizeof(double));
    #endif
    }
    """
    void fastconv_move_f(float *d, const float *s, Py_ssize_t w) noexcept nogil
    void fastconv_move_d(double *d, const double *s, Py_ssize_t w) noexcept nogil


cdef inline void _move(floating *d, const floating *s, Py_ssize_t w) noexcept nogil:
    """d[:w] := s[:w], or zeros where s is NULL (w may be 0 or negative: nothing)."""
    if w <= 0:
        return
    if floating is float:
        fastconv_move_f(d, s, w)
    else:
        fastconv_move_d(d, s, w)


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
    n = r0 // g.oH
    oh = r0 - n * g.oH
    for r in range(r0, r1):
        ih = oh * g.sh - g.pt + i * g.dh
        d = col + rr * T + (r - r0) * oW
        if ih < 0 or ih >= g.H:
            _move(d, <const floating *> NULL, oW)
        else:
            s = x + ((n * g.C + c0 + c) * g.H + ih) * g.W
            _move(d, <const floating *> NULL, lo)
            if sw == 1:
                _move(d + lo, s + lo + off, hi - lo)
            elif sw == 2:   # a constant stride: the compiler vectorises it with permutes
                for ow in range(lo, hi):
                    d[ow] = s[2 * ow + off]
            else:
                for ow in range(lo, hi):
                    d[ow] = s[ow * sw + off]
            _move(d + hi, <const floating *> NULL, oW - hi)
        oh = oh + 1
        if oh == g.oH:
            oh = 0
            n = n + 1


cdef void _im2col_nchw(const floating *x, floating *col, const Geom *g, Py_ssize_t c0,
                       Py_ssize_t r0, Py_ssize_t r1, int gnt) noexcept nogil:
    """col (R, T) of output rows [r0, r1) for the group whose channels start at c0, the rows
    of col shared among gnt threads (tiles that run in turn)."""
    cdef Py_ssize_t rr
    if gnt > 1:
        for rr in prange(g.R, num_threads=gnt, schedule="static"):
            _im2col_nchw_row(x, col, g, c0, r0, r1, rr)
        return
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
                elif sw == 2:   # a constant stride, as in _im2col_nchw_row
                    for ow in range(lo, hi):
                        d[2 * ow + off] += s[ow]
                else:
                    for ow in range(lo, hi):
                        d[ow * sw + off] += s[ow]


cdef void _col2im_nchw(const floating *col, floating *gin, const Geom *g, Py_ssize_t c0,
                       Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Accumulate col (R, T) of output rows [r0, r1) into grad_input, one channel plane per task."""
    cdef Py_ssize_t nf = r0 // g.oH, nl = (r1 - 1) // g.oH, Cg = g.Cg
    cdef Py_ssize_t q, nq = (nl - nf + 1) * Cg
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
# Forward and grad_weight: tiles in parallel
# ----------------------------------------------------------------------------------------------
# A tile is a run of output rows: of the whole batch in NHWC (rows are contiguous there), of one
# sample in NCHW. Each OpenMP thread lowers its tile into its own cache-sized columns and
# multiplies them with a single-threaded BLAS call (the Python caller limits BLAS to one thread
# for the duration), so the columns are still in cache when the GEMM reads them and both cores
# share the im2col as well as the GEMM. The bias is added to each output tile while it is hot.

cdef struct Tiles:
    Py_ssize_t rows          # output rows per tile
    Py_ssize_t per_sample    # tiles per sample (NCHW); 0 when tiles run across samples
    Py_ssize_t count         # tiles in all
    Py_ssize_t col_elements  # scratch per thread: columns, and in NCHW multi-sample tiles a
                             # (Kg, T) staging block for the output or grad_output (T = rows*oW)
    int threads


cdef inline bint _weights_outweigh_columns(const Geom *g, Py_ssize_t threads) noexcept nogil:
    """Fewer output pixels than threads x output channels per group: a thread's share of the
    columns would be smaller than the weights, which BLAS repacks on every call (512 channels
    at 7x7, batch 8). Such layers run their tiles (or samples) in turn, and each GEMM on all
    the threads (_blas.gemm_on), as fastconv.algorithms.compiled.weights_outweigh_columns."""
    return g.N * g.P < threads * g.Kg


cdef Tiles _plan_tiles(const Geom *g, Py_ssize_t ws_n, Py_ssize_t acc_elements, bint nhwc,
                       int nt) noexcept nogil:
    """Tile size and thread count that fit ws_n elements of scratch.

    Each thread needs rows * oW * R column elements, and each thread after the first
    acc_elements more (grad_weight's private accumulators).
    """
    cdef Tiles tl
    cdef bint pw = _pointwise(g)
    cdef Py_ssize_t row_cols = 0 if pw else g.oW * g.R
    cdef Py_ssize_t span = g.N * g.oH if nhwc else g.oH     # rows one tile may cover
    cdef Py_ssize_t want, rows, threads = _max(nt, 1)
    if _weights_outweigh_columns(g, threads):
        threads = 1
    # L2-sized columns, but at least two weight matrices' worth of them: BLAS repacks the weights
    # on every call, which must stay small next to the multiply.
    want = _max(_THREAD_TILE_ELEMENTS, 2 * g.Kg * g.R)
    rows = _max(1, _min(want // (g.oW * (g.R + g.Kg)), span))
    # at least two tiles per thread, for balance
    if threads > 1:
        rows = _max(1, _min(rows, (g.N * g.oH) // (2 * threads)))
    rows = _min(rows, INT_MAX // _max(g.oW, 1))
    while threads > 1 and threads * rows * row_cols + (threads - 1) * acc_elements > ws_n:
        if rows > 1:
            rows = (rows + 1) // 2
        else:
            threads -= 1
    if row_cols > 0:
        rows = _max(1, _min(rows, ws_n // row_cols))
    tl.rows = rows
    tl.col_elements = rows * row_cols
    if nhwc:
        tl.per_sample = 0
        tl.count = (g.N * g.oH + rows - 1) // rows
    elif rows == g.oH and not pw and g.N >= 2 * threads:
        # Small planes (oH*oW of a few hundred): several whole samples per tile, so that the
        # GEMM is wide; the output leaves through a staging block (samples lie K*P apart).
        # One thread (GEMMs on all cores where the weights outweigh the columns) takes the
        # whole batch if it fits: each tile's GEMM streams the weights once more.
        rows = g.oH * _max(1, _min(want // (g.P * (g.R + g.Kg)),
                                   g.N // (2 * threads) if threads > 1 else g.N))
        while rows > g.oH and (
                threads * rows * g.oW * (g.R + g.Kg) + (threads - 1) * acc_elements > ws_n):
            rows -= g.oH
        if rows > g.oH:
            tl.rows = rows
            tl.col_elements = rows * g.oW * (g.R + g.Kg)
        tl.per_sample = 0
        tl.count = (g.N * g.oH + tl.rows - 1) // tl.rows
    else:
        tl.per_sample = (g.oH + rows - 1) // rows
        tl.count = g.N * tl.per_sample
    tl.threads = <int>_min(threads, tl.count)
    return tl


cdef inline void _tile_rows(const Geom *g, const Tiles *tl, Py_ssize_t t, Py_ssize_t *r0,
                            Py_ssize_t *r1) noexcept nogil:
    """Global output rows [r0, r1) of tile t (r = n*oH + oh)."""
    cdef Py_ssize_t n, a
    if tl.per_sample == 0:
        r0[0] = t * tl.rows
        r1[0] = _min(r0[0] + tl.rows, g.N * g.oH)
    else:
        n = t // tl.per_sample
        a = (t - n * tl.per_sample) * tl.rows
        r0[0] = n * g.oH + a
        r1[0] = n * g.oH + _min(a + tl.rows, g.oH)


cdef void _fwd_tile(const floating *x, const floating *w, const floating *bias, floating *out,
                    floating *col, const Geom *g, const Tiles *tl, bint nhwc,
                    Py_ssize_t t, int gnt) noexcept nogil:
    """out of tile t := bias + (columns of the tile) @ weights, group by group; each GEMM on
    gnt threads."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, P = g.P
    cdef Py_ssize_t r0, r1, T, n, po, gi, k, p
    cdef bint pw = _pointwise(g)
    cdef floating *o
    cdef floating *stage
    cdef floating bk
    _tile_rows(g, tl, t, &r0, &r1)
    T = (r1 - r0) * g.oW
    if nhwc:
        # out rows (T, K) = col (T, R) @ W_g (R, Kg); pointwise reads x's rows in place
        o = out + r0 * g.oW * K
        for gi in range(g.G):
            if pw:
                _gemm_on(gnt, False, False, T, Kg, R, x + r0 * g.oW * g.C + gi * Cg, g.C, w + gi * Kg, K,
                      0, o + gi * Kg, K)
            else:
                _im2col_nhwc(x, col, g, gi * Cg, r0, r1, gnt)
                _gemm_on(gnt, False, False, T, Kg, R, col, R, w + gi * Kg, K, 0, o + gi * Kg, K)
        for p in range(T):
            for k in range(K):
                o[p * K + k] += bias[k]
    elif (r1 - 1) // g.oH != r0 // g.oH:
        # whole samples: (Kg, T) = W_g (Kg, R) @ col (R, T) in a staging block, then out
        stage = col + R * T
        for gi in range(g.G):
            _im2col_nchw(x, col, g, gi * Cg, r0, r1, gnt)
            _gemm_on(gnt, False, False, Kg, T, R, w + gi * Kg * R, R, col, T, 0, stage, T)
            for k in range(Kg):
                bk = bias[gi * Kg + k]
                for p in range(T):
                    stage[k * T + p] += bk
            _pack_rows(stage, out, g, gi * Kg, Kg, r0, r1, False)
    else:
        # out[n, group's channels, tile] (Kg, T) = W_g (Kg, R) @ col (R, T)
        n = r0 // g.oH
        po = (r0 - n * g.oH) * g.oW
        for gi in range(g.G):
            o = out + (n * K + gi * Kg) * P + po
            if pw:
                _gemm_on(gnt, False, False, Kg, T, R, w + gi * Kg * R, R,
                      x + (n * g.C + gi * Cg) * P + po, P, 0, o, P)
            else:
                _im2col_nchw(x, col, g, gi * Cg, r0, r1, gnt)
                _gemm_on(gnt, False, False, Kg, T, R, w + gi * Kg * R, R, col, T, 0, o, P)
            for k in range(Kg):
                bk = bias[gi * Kg + k]
                for p in range(T):
                    o[k * P + p] += bk


cdef void _gw_tile(const floating *gout, const floating *x, floating *acc, floating *col,
                   const Geom *g, const Tiles *tl, bint nhwc, Py_ssize_t t,
                   int gnt) noexcept nogil:
    """acc += the weight gradient of tile t: grad_output of the tile times its columns; each
    GEMM on gnt threads."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, P = g.P
    cdef Py_ssize_t r0, r1, T, n, po, p0, gi
    cdef bint pw = _pointwise(g)
    cdef floating *stage
    _tile_rows(g, tl, t, &r0, &r1)
    T = (r1 - r0) * g.oW
    if nhwc:
        # acc (R, K) group block (R, Kg) += col^T (R, T) @ gout (T, Kg)
        p0 = r0 * g.oW
        for gi in range(g.G):
            if pw:
                _gemm_on(gnt, True, False, R, Kg, T, x + p0 * g.C + gi * Cg, g.C,
                      gout + p0 * K + gi * Kg, K, 1, acc + gi * Kg, K)
            else:
                _im2col_nhwc(x, col, g, gi * Cg, r0, r1, gnt)
                _gemm_on(gnt, True, False, R, Kg, T, col, R, gout + p0 * K + gi * Kg, K, 1,
                      acc + gi * Kg, K)
    elif (r1 - 1) // g.oH != r0 // g.oH:
        # whole samples: grad_output gathered into a (Kg, T) staging block first
        stage = col + R * T
        for gi in range(g.G):
            _pack_rows(gout, stage, g, gi * Kg, Kg, r0, r1, True)
            _im2col_nchw(x, col, g, gi * Cg, r0, r1, gnt)
            _gemm_on(gnt, False, True, Kg, R, T, stage, T, col, T, 1, acc + gi * Kg * R, R)
    else:
        # acc (K, R) group block (Kg, R) += gout (Kg, T) @ col^T (T, R)
        n = r0 // g.oH
        po = (r0 - n * g.oH) * g.oW
        for gi in range(g.G):
            if pw:
                _gemm_on(gnt, False, True, Kg, R, T, gout + (n * K + gi * Kg) * P + po, P,
                      x + (n * g.C + gi * Cg) * P + po, P, 1, acc + gi * Kg * R, R)
            else:
                _im2col_nchw(x, col, g, gi * Cg, r0, r1, gnt)
                _gemm_on(gnt, False, True, Kg, R, T, gout + (n * K + gi * Kg) * P + po, P, col, T, 1,
                      acc + gi * Kg * R, R)


cdef void _fwd(const floating *x, const floating *w, const floating *bias, floating *out,
               floating *ws, Py_ssize_t ws_n, const Geom *g, bint nhwc, int nt) noexcept nogil:
    cdef Tiles tl = _plan_tiles(g, ws_n, 0, nhwc, nt)
    cdef Py_ssize_t t
    cdef floating *col = NULL
    cdef int tid = 0
    if tl.threads <= 1:
        flush_denormals_enter()
        for t in range(tl.count):
            _fwd_tile(x, w, bias, out, ws, g, &tl, nhwc, t, nt)
        flush_denormals_exit()
        return
    with parallel(num_threads=tl.threads):
        flush_denormals_enter()
        tid = threadid()
        col = ws + tid * tl.col_elements
        for t in prange(tl.count, schedule="dynamic"):
            _fwd_tile(x, w, bias, out, col, g, &tl, nhwc, t, 1)
        flush_denormals_exit()


cdef void _gw(const floating *gout, const floating *x, floating *gw, floating *ws,
              Py_ssize_t ws_n, const Geom *g, bint nhwc, int nt) noexcept nogil:
    """gw := sum over tiles; each thread sums its tiles into its own accumulator (the first
    thread into gw itself), then the accumulators are added. The static schedule gives every
    thread the same tiles on every call, so the result is the same bits each time."""
    cdef Py_ssize_t KR = g.K * g.R, t, i, a
    cdef Tiles tl = _plan_tiles(g, ws_n, KR, nhwc, nt)
    cdef floating *accs = NULL
    cdef floating *acc = NULL
    cdef floating *col = NULL
    cdef floating s
    cdef int tid = 0
    memset(gw, 0, KR * sizeof(floating))
    if tl.threads <= 1:
        flush_denormals_enter()
        for t in range(tl.count):
            _gw_tile(gout, x, gw, ws, g, &tl, nhwc, t, nt)
        flush_denormals_exit()
        return
    accs = ws + tl.threads * tl.col_elements
    memset(accs, 0, (tl.threads - 1) * KR * sizeof(floating))
    with parallel(num_threads=tl.threads):
        flush_denormals_enter()
        tid = threadid()
        col = ws + tid * tl.col_elements
        acc = gw if tid == 0 else accs + (tid - 1) * KR
        for t in prange(tl.count, schedule="static"):
            _gw_tile(gout, x, acc, col, g, &tl, nhwc, t, 1)
        flush_denormals_exit()
    for i in prange(KR, num_threads=tl.threads, schedule="static", nogil=True):
        s = gw[i]
        for a in range(tl.threads - 1):
            s = s + accs[a * KR + i]
        gw[i] = s


# ----------------------------------------------------------------------------------------------
# grad_input with col2im: samples in parallel
# ----------------------------------------------------------------------------------------------
# Neighbouring tiles scatter into shared input rows, so one thread takes whole samples and runs
# their tiles in order (single-threaded BLAS, like the other ops). A batch of one sample runs on
# one thread. (Stride-1 grad_input usually runs as a forward convolution instead; see
# fastconv.algorithms.compiled.)

cdef void _gin_nhwc(const floating *gout, const floating *w, floating *gin, floating *ws,
                    Py_ssize_t ws_n, const Geom *g, int gnt) noexcept nogil:
    """gin[n, ih, iw, c] = sum over (oh, ow, i, j) hitting it of gout[n, oh, ow, k] * w[i, j, c, k]."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, gi, p0, m, chunk, spp, rpt
    cdef Py_ssize_t r0 = 0, r1 = 0, npix = g.N * g.P
    if _pointwise(g):
        chunk = INT_MAX
        p0 = 0
        while p0 < npix:
            m = _min(chunk, npix - p0)
            for gi in range(g.G):
                _gemm_on(gnt, False, True, m, Cg, Kg, gout + p0 * K + gi * Kg, K, w + gi * Kg, K,
                      0, gin + p0 * g.C + gi * Cg, g.C)
            p0 += m
        return
    memset(gin, 0, g.N * g.H * g.W * g.C * sizeof(floating))
    _plan(g, ws_n, True, &spp, &rpt)
    while _next_tile(g, 0, rpt, True, &r0, &r1):
        p0 = r0 * g.oW
        m = (r1 - r0) * g.oW
        for gi in range(g.G):
            _gemm_on(gnt, False, True, m, R, Kg, gout + p0 * K + gi * Kg, K, w + gi * Kg, K, 0, ws, R)
            _col2im_nhwc(ws, gin, g, gi * Cg, r0, r1)


cdef void _gin_nchw(const floating *gout, const floating *w, floating *gin, floating *ws,
                    Py_ssize_t ws_n, const Geom *g, int gnt) noexcept nogil:
    """gin[n, c, ih, iw] = sum over (oh, ow, i, j) hitting it of gout[n, k, oh, ow] * w[k, c, i, j]."""
    cdef Py_ssize_t K = g.K, Kg = g.Kg, Cg = g.Cg, R = g.R, P = g.P
    cdef Py_ssize_t n, gi, spp, rpt, T, nf, nl, r0 = 0, r1 = 0
    cdef floating *tmp
    if _pointwise(g):
        for n in range(g.N):
            for gi in range(g.G):
                _gemm_on(gnt, True, False, Cg, P, Kg, w + gi * Kg * Cg, Cg, gout + (n * K + gi * Kg) * P, P,
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
                _gemm_on(gnt, True, False, R, T, Kg, w + gi * Kg * R, R,
                      gout + (nf * K + gi * Kg) * P + (r0 - nf * g.oH) * g.oW, P, 0, ws, T)
            else:
                _pack_rows(gout, tmp, g, gi * Kg, Kg, r0, r1, True)
                _gemm_on(gnt, True, False, R, T, Kg, w + gi * Kg * R, R, tmp, T, 0, ws, T)
            _col2im_nchw(ws, gin, g, gi * Cg, r0, r1)


cdef void _gin(const floating *gout, const floating *w, floating *gin, floating *ws,
               Py_ssize_t ws_n, const Geom *g, bint nhwc, int nt) noexcept nogil:
    cdef Geom one = g[0]
    cdef Py_ssize_t n, per_thread, need = _min_workspace(g)
    cdef Py_ssize_t out_sample = g.oH * g.oW * g.K, in_sample = g.H * g.W * g.C
    cdef int threads = <int>_min(nt, g.N), tid = 0
    if _weights_outweigh_columns(g, nt):
        threads = 1
    if need > 0:
        threads = <int>_max(1, _min(threads, ws_n // need))
    if threads <= 1:
        flush_denormals_enter()
        if nhwc:
            _gin_nhwc(gout, w, gin, ws, ws_n, g, nt)
        else:
            _gin_nchw(gout, w, gin, ws, ws_n, g, nt)
        flush_denormals_exit()
        return
    one.N = 1
    per_thread = ws_n // threads
    with parallel(num_threads=threads):
        flush_denormals_enter()
        tid = threadid()
        for n in prange(g.N, schedule="dynamic"):
            if nhwc:
                _gin_nhwc(gout + n * out_sample, w, gin + n * in_sample, ws + tid * per_thread,
                          per_thread, &one, 1)
            else:
                _gin_nchw(gout + n * out_sample, w, gin + n * in_sample, ws + tid * per_thread,
                          per_thread, &one, 1)
        flush_denormals_exit()


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
    if g.N == 0:
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _fwd(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                 ws, ws_n, &g, False, num_threads)
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
    if g.N == 0:
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _fwd(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                 ws, ws_n, &g, True, num_threads)
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
    if g.N == 0:
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _gin(&grad_output[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_input[0, 0, 0, 0],
                 ws, ws_n, &g, False, num_threads)
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
    if g.N == 0:
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _gin(&grad_output[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_input[0, 0, 0, 0],
                 ws, ws_n, &g, True, num_threads)
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
    if g.N == 0:
        grad_weight[...] = 0
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _gw(&grad_output[0, 0, 0, 0], &x[0, 0, 0, 0], &grad_weight[0, 0, 0, 0],
                ws, ws_n, &g, False, num_threads)
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
    if g.N == 0:
        grad_weight[...] = 0
        return
    ws = _scratch(workspace, &g, &ws_n, &owned)
    try:
        with nogil:
            _gw(&grad_output[0, 0, 0, 0], &x[0, 0, 0, 0], &grad_weight[0, 0, 0, 0],
                ws, ws_n, &g, True, num_threads)
    finally:
        free(owned)


def workspace_elements(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t K,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oH, Py_ssize_t oW,
                       Py_ssize_t groups, Py_ssize_t max_elements, bint nhwc, str op="forward",
                       int num_threads=1):
    """Scratch elements op ("forward", "grad_input" or "grad_weight") wants within max_elements.

    Never less than one output row's columns (the kernels need that much to make progress).
    """
    cdef Py_ssize_t R = (C // groups) * kh * kw, P = oH * oW, per_sample, minimum, want, acc
    cdef Geom g = _geom(N, C, H, W, K, kh, kw, oH, oW, 1, 1, 0, 0, 1, 1, groups)
    cdef Tiles tl
    if op not in ("forward", "grad_input", "grad_weight"):
        raise ValueError(f"op must be 'forward', 'grad_input' or 'grad_weight'. Received: op={op!r}")
    if N <= 0:
        return 0
    pointwise = kh == 1 and kw == 1 and oH == H and oW == W
    minimum = 0 if pointwise else oW * R
    if op != "grad_input":
        acc = K * R if op == "grad_weight" else 0
        tl = _plan_tiles(&g, max_elements, acc, nhwc, num_threads)
        return _max(minimum, tl.threads * tl.col_elements + (tl.threads - 1) * acc)
    if pointwise:
        return 0
    # each thread takes whole samples (tiles of one sample, so no staging block)
    threads = _max(1, _min(_min(num_threads, N), max_elements // minimum))
    want = _min(max_elements, _TILE_ELEMENTS) // threads
    return threads * _max(minimum, _min(P * R, want))
