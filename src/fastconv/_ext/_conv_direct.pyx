"""Direct 2-D convolution kernels: loops straight over the input, no im2col buffer.

Dimension legend:
    N       batch size
    C       input channels            H, W    input height, width
    K       output channels           oH, oW  output height, width
    kh, kw  kernel height, width      G       groups (Cg = C/G, Kg = K/G)

Layouts:
    NCHW: x (N, C, H, W), weight (K, Cg, kh, kw), out (N, K, oH, oW)
    NHWC: x (N, H, W, C), weight (kh, kw, Cg, K), out (N, oH, oW, K)

Geometry: output (oh, ow) with kernel tap (i, j) reads input
    ih = oh*stride_h - pad_top + i*dilation_h,  iw = ow*stride_w - pad_left + j*dilation_w,
zero outside [0, H) x [0, W).  Cross-correlation, as torch.nn.functional.conv2d.

Every kernel is built from a few short loops over contiguous memory ("taps"):
    dst[t] += sum_q w_q * src_q[t*s]        (_axpy*, gathered rows)
    dst[t] += sum_q a_q[t] * b_q[t]         (_mul*, NHWC depthwise input gradient, stride > 1)
    s_q = sum_t a_q[t] * b[t*s]             (_dot*, weight / input gradients)
The valid output range of each tap is computed once, so the inner loops have no branches
and vectorise; up to four taps are fused per pass to cut loads/stores of the destination.

Depthwise (C/G == 1) and first layers (G == 1, C <= 4) have their own kernels in C with
GCC vector extensions (the C block below), each tap a pointer (NHWC) or a flat offset into a
zero-padded staged plane (NCHW; strided layers stage each plane as its sh x sw polyphase
components, so the taps are unit-stride runs there too), all taps of an output vector fused
in registers:
    _taps_rows   d_k[i] = b_k + sum_q w_kq * P[sp_i + off_q]    NCHW forward, output rows in
                                                                place, a vector at a time
    _taps_flat   d_k[t] = b_k + sum_q w_kq * P[t + off_q]       the same, rows narrower than
                                                                a vector: whole planes
    _dots        r_kq  += sum_t G_k[t] * P[t + off_q]           NCHW grad_weight, whole planes,
                                                                a kernel row of taps a pass
    _dw_pixels   d[p, c] = b[c] + sum_q x_q[p, c] * w_q[c]      NHWC depthwise forward
    _dw_rows     the same for 3-wide kernel rows (interior columns,   NHWC depthwise forward,
                 dilation 1): each input vector loaded once a row     stride 1 and 2
    _dw_dots     r_q[c] += sum_p g[p, c] * x_q[p, c]            NHWC depthwise grad_weight
    _dw_grad_rows the same for 3-wide kernel rows (stride 1): the   NHWC depthwise grad_weight,
                 input vectors slide along each row                   interior columns
    _bcast_pixels d[p, k] = b[k] + sum_q x_q[p] * w_q[k]        NHWC single-group forward
    _bcast_dots  r_q[k] += sum_p x_q[p] * g[p, k]               NHWC first-layer grad_weight
    _brow_dots   r_t[k] += sum_p x[p + t] * g[p, k]             the same, whole images, a run
                                                                of taps of a kernel row

Parallelism (OpenMP, static schedules, each task owns its output region, so results are
bitwise reproducible and do not depend on the number of threads):
    forward_nchw      C/G <= 32 with staged planes that fit 64 Ki elements (depthwise, first
                      and narrow layers): (n, group, run of output channels: the group's
                      all, or blocks of 4 where that leaves too few tasks) over whole
                      staged planes.  Single group, K >= one vector, past those planes or
                      strided with C > 4: (n, block of output rows), the block's input rows
                      staged channels-last as forward_nhwc's.  Otherwise stride 1, K/G >= 4:
                      (n, block of R output rows); the input rows are staged zero padded in
                      per-thread scratch so every tap is one flat AXPY over the R rows, 4
                      output channels x 4 taps per pass.  stride > 1: (n, oh) rows, same
                      staging.  K/G < 4: (n, oh) rows read in place.
    forward_nhwc      single group: (n, block of output rows), whole images unless there
                      are too few for the threads or the staging outgrows 64 Ki elements,
                      the block's input rows staged once.  Otherwise (n, oh) output rows
    grad_input_nchw   stride 1: forward_nchw of grad_output with the flipped, transposed kernel
                      (a small copy made here).  Strided depthwise: (n, c) planes, a
                      polyphase component at a time.  Otherwise (n, ih) rows, all C per row.
    grad_input_nhwc   depthwise, stride 1: forward_nhwc with the flipped kernel.  Otherwise
                      (n, ih) input-gradient rows (gather form)
    grad_weight_nchw  C/G == 1, or C/G <= 32 with staged planes that fit: (sample chunk,
                      run of output channels: a block of 4, several when strided), the
                      chunks' partial sums added in order afterwards.  Otherwise (group,
                      block of 4 output channels, block of input channels)
    grad_weight_nhwc  depthwise: (sample chunk, channel block); first layers: sample chunks
                      (each image staged once); partial sums added in order afterwards.
                      Otherwise (i, j, block of input channels, block of groups)
Sample chunks and channel blocks depend on the shape only, never on the thread count.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from fastconv._ext._fpenv cimport flush_denormals_enter, flush_denormals_exit
from fastconv._ext._simd cimport FASTCONV_VBYTES
from fastconv._ext._transpose cimport floating, from_channels_last, to_channels_last, transpose

import numpy as np

cdef extern from *:
    """
    /* d_r[t] += sum_q w[4r+q] * src_q[t*s] for 4 destination rows and 4 source rows.
       Written in C for `restrict`: 8 pointers are too many for gcc's runtime alias checks. */
    #define FASTCONV_AXPY4X4(NAME, T)                                                       \
    static inline void NAME(T *restrict d0, T *restrict d1, T *restrict d2, T *restrict d3, \
                            const T *restrict a, const T *restrict b, const T *restrict c,  \
                            const T *restrict e, const T *restrict w, Py_ssize_t m,         \
                            Py_ssize_t s) {                                                 \
        const T w00 = w[0], w01 = w[1], w02 = w[2], w03 = w[3];                             \
        const T w10 = w[4], w11 = w[5], w12 = w[6], w13 = w[7];                             \
        const T w20 = w[8], w21 = w[9], w22 = w[10], w23 = w[11];                           \
        const T w30 = w[12], w31 = w[13], w32 = w[14], w33 = w[15];                         \
        Py_ssize_t t;                                                                       \
        if (s == 1) {                                                                       \
            for (t = 0; t < m; t++) {                                                       \
                const T va = a[t], vb = b[t], vc = c[t], ve = e[t];                         \
                d0[t] += (w00 * va + w01 * vb) + (w02 * vc + w03 * ve);                     \
                d1[t] += (w10 * va + w11 * vb) + (w12 * vc + w13 * ve);                     \
                d2[t] += (w20 * va + w21 * vb) + (w22 * vc + w23 * ve);                     \
                d3[t] += (w30 * va + w31 * vb) + (w32 * vc + w33 * ve);                     \
            }                                                                               \
        } else {                                                                            \
            for (t = 0; t < m; t++) {                                                       \
                const T va = a[t * s], vb = b[t * s], vc = c[t * s], ve = e[t * s];         \
                d0[t] += (w00 * va + w01 * vb) + (w02 * vc + w03 * ve);                     \
                d1[t] += (w10 * va + w11 * vb) + (w12 * vc + w13 * ve);                     \
                d2[t] += (w20 * va + w21 * vb) + (w22 * vc + w23 * ve);                     \
                d3[t] += (w30 * va + w31 * vb) + (w32 * vc + w33 * ve);                     \
            }                                                                               \
        }                                                                                   \
    }
    FASTCONV_AXPY4X4(fastconv_axpy4x4_f, float)
    FASTCONV_AXPY4X4(fastconv_axpy4x4_d, double)
    """
    void fastconv_axpy4x4_f(float *d0, float *d1, float *d2, float *d3, const float *a,
                            const float *b, const float *c, const float *e, const float *w,
                            Py_ssize_t m, Py_ssize_t s) noexcept nogil
    void fastconv_axpy4x4_d(double *d0, double *d1, double *d2, double *d3, const double *a,
                            const double *b, const double *c, const double *e, const double *w,
                            Py_ssize_t m, Py_ssize_t s) noexcept nogil

cdef extern from *:
    """
    /* Depthwise kernels in the vector types of _simd.pxd. Each kernel is instantiated for
       V and for the scalar T (V == T) which does the leftover elements, so one body serves
       both and no element is ever read past the caller's range. */
    /* d[k*ld + t] := b[k] + sum_q w[k*nt + q] * s[t + off[q]]  for k < KB, t in [t, m):
       flat correlations with nt taps, KB output channels sharing each load of s, NV vectors
       per step (KB*NV independent sums hide the FMA latency).  Returns where it stopped. */
    #define FASTCONV_TAPS(NAME, T, V, KB, NV)                                                \
    static inline Py_ssize_t NAME(T *restrict d, Py_ssize_t ld, const T *restrict s,        \
                                  const Py_ssize_t *restrict off, const T *restrict w,      \
                                  Py_ssize_t nt, const T *restrict b, Py_ssize_t t,         \
                                  Py_ssize_t m) {                                           \
        enum { L = sizeof(V) / sizeof(T) };                                                 \
        Py_ssize_t q;                                                                       \
        int k, v;                                                                           \
        for (; t + NV * L <= m; t += NV * L) {                                              \
            V a[KB][NV], x[NV];                                                             \
            for (k = 0; k < KB; k++)                                                        \
                for (v = 0; v < NV; v++)                                                    \
                    a[k][v] = (V){0} + b[k];                                                \
            for (q = 0; q < nt; q++) {                                                      \
                for (v = 0; v < NV; v++)                                                    \
                    x[v] = FASTCONV_LD(V, s + off[q] + t + v * L);                          \
                for (k = 0; k < KB; k++)                                                    \
                    for (v = 0; v < NV; v++)                                                \
                        a[k][v] += w[k * nt + q] * x[v];                                    \
            }                                                                               \
            for (k = 0; k < KB; k++)                                                        \
                for (v = 0; v < NV; v++)                                                    \
                    FASTCONV_ST(V, d + k * ld + t + v * L, a[k][v]);                        \
        }                                                                                   \
        return t;                                                                           \
    }
    FASTCONV_TAPS(fastconv_taps_vf14, float, fastconv_vf, 1, 4)
    FASTCONV_TAPS(fastconv_taps_vf11, float, fastconv_vf, 1, 1)
    FASTCONV_TAPS(fastconv_taps_sf11, float, float, 1, 1)
    FASTCONV_TAPS(fastconv_taps_vf44, float, fastconv_vf, 4, 4)
    FASTCONV_TAPS(fastconv_taps_vf41, float, fastconv_vf, 4, 1)
    FASTCONV_TAPS(fastconv_taps_sf41, float, float, 4, 1)
    FASTCONV_TAPS(fastconv_taps_vd14, double, fastconv_vd, 1, 4)
    FASTCONV_TAPS(fastconv_taps_vd11, double, fastconv_vd, 1, 1)
    FASTCONV_TAPS(fastconv_taps_sd11, double, double, 1, 1)
    FASTCONV_TAPS(fastconv_taps_vd44, double, fastconv_vd, 4, 4)
    FASTCONV_TAPS(fastconv_taps_vd41, double, fastconv_vd, 4, 1)
    FASTCONV_TAPS(fastconv_taps_sd41, double, double, 4, 1)

    /* d[k*ld + dp[i]] := b[k] + sum_q w[k*nt + q] * s[sp[i] + off[q]]  for k < KB and the
       vectors i < np of a position list (sp: a vector's start in the staged planes, dp: in
       the output plane), NV at a time (np a multiple of NV).  Output rows are written in
       place: a row's last vector overlaps the one before when L does not divide the width. */
    #define FASTCONV_TAPROWS(NAME, T, V, KB, NV)                                             \
    static inline void NAME(T *restrict d, Py_ssize_t ld, const T *restrict s,              \
                            const Py_ssize_t *restrict off, const T *restrict w,            \
                            Py_ssize_t nt, const T *restrict b, const Py_ssize_t *sp,       \
                            const Py_ssize_t *dp, Py_ssize_t np) {                          \
        Py_ssize_t i, q;                                                                    \
        int k, v;                                                                           \
        for (i = 0; i + NV <= np; i += NV) {                                                \
            V a[KB][NV];                                                                    \
            const T *x[NV];                                                                 \
            for (v = 0; v < NV; v++)                                                        \
                x[v] = s + sp[i + v];                                                       \
            for (k = 0; k < KB; k++)                                                        \
                for (v = 0; v < NV; v++)                                                    \
                    a[k][v] = (V){0} + b[k];                                                \
            for (q = 0; q < nt; q++) {                                                      \
                const Py_ssize_t o = off[q];                                                \
                V xv[NV];                                                                   \
                for (v = 0; v < NV; v++)                                                    \
                    xv[v] = FASTCONV_LD(V, x[v] + o);                                       \
                for (k = 0; k < KB; k++)                                                    \
                    for (v = 0; v < NV; v++)                                                \
                        a[k][v] += w[k * nt + q] * xv[v];                                   \
            }                                                                               \
            for (k = 0; k < KB; k++)                                                        \
                for (v = 0; v < NV; v++)                                                    \
                    FASTCONV_ST(V, d + k * ld + dp[i + v], a[k][v]);                        \
        }                                                                                   \
    }
    FASTCONV_TAPROWS(fastconv_taprows_f44, float, fastconv_vf, 4, 4)
    FASTCONV_TAPROWS(fastconv_taprows_f18, float, fastconv_vf, 1, 8)
    FASTCONV_TAPROWS(fastconv_taprows_d44, double, fastconv_vd, 4, 4)
    FASTCONV_TAPROWS(fastconv_taprows_d18, double, fastconv_vd, 1, 8)

    /* d[r*dp + u] := s[r*sp + u]  for r < rows, u < w (w >= L): whole vectors, the last
       one of a row overlapping the one before; the rows of nxt (laid out as s, if not NULL)
       are prefetched meanwhile.  Rows are short (often two vectors): the empty asm keeps gcc
       from turning the loop into memmove calls. */
    #define FASTCONV_COPY_ROWS(NAME, T, V)                                                   \
    static inline void NAME(T *restrict d, Py_ssize_t dp, const T *restrict s,              \
                            Py_ssize_t sp, Py_ssize_t rows, Py_ssize_t w, const T *nxt) {   \
        enum { L = sizeof(V) / sizeof(T), LINE = 64 / sizeof(T) };                          \
        Py_ssize_t r, u;                                                                    \
        for (r = 0; r < rows; r++) {                                                        \
            const T *a = s + r * sp;                                                        \
            T *b = d + r * dp;                                                              \
            for (u = 0; u + L <= w; u += L) {                                               \
                const T *a_ = a + u;                                                        \
                __asm__("" : "+r"(a_));                                                     \
                FASTCONV_ST(V, b + u, FASTCONV_LD(V, a_));                                  \
            }                                                                               \
            if (u < w)                                                                      \
                FASTCONV_ST(V, b + w - L, FASTCONV_LD(V, a + w - L));                       \
            for (u = 0; nxt != NULL && u < w; u += LINE)                                    \
                __builtin_prefetch(nxt + r * sp + u);                                       \
        }                                                                                   \
    }
    FASTCONV_COPY_ROWS(fastconv_copy_rows_f, float, fastconv_vf)
    FASTCONV_COPY_ROWS(fastconv_copy_rows_d, double, fastconv_vd)
    FASTCONV_COPY_ROWS(fastconv_copy_rows_hf, float, fastconv_hf)
    FASTCONV_COPY_ROWS(fastconv_copy_rows_hd, double, fastconv_hd)

    /* r[(NQ*k + q)*L + l] += lane l of sum_t g[k*ld + t] * s[t + off[q]]  for k < KB,
       q < nt <= NQ, t < m (the sum over l is left to the caller; leftover t < L go to lane 0):
       KB planes g against NQ taps of s, every load shared by NQ (or KB) products; U vectors
       per step give KB*NQ*U independent sums to hide the FMA latency.  NQ = 5 (3) takes a
       5x5 (3x3) kernel a row at a time, every slot used. */
    #define FASTCONV_DOTS(NAME, T, V, KB, NQ, U)                                             \
    static inline void NAME(const T *restrict g, Py_ssize_t ld, const T *restrict s,        \
                            const Py_ssize_t *restrict off, Py_ssize_t nt, Py_ssize_t m,    \
                            T *restrict r) {                                                \
        enum { L = sizeof(V) / sizeof(T) };                                                 \
        const T *sq[NQ];                                                                    \
        V a[U][KB][NQ], gv[KB], x;                                                          \
        Py_ssize_t t = 0, l;                                                                \
        int k, q, u;                                                                        \
        for (q = 0; q < NQ; q++)                                                            \
            sq[q] = s + off[q < nt ? q : 0];  /* missing taps repeat tap 0, unused */       \
        __builtin_memset(a, 0, sizeof(a));                                                  \
        for (; t + U * L <= m; t += U * L)                                                  \
            for (u = 0; u < U; u++) {                                                       \
                for (k = 0; k < KB; k++)                                                    \
                    gv[k] = FASTCONV_LD(V, g + k * ld + t + u * L);                         \
                for (q = 0; q < NQ; q++) {                                                  \
                    x = FASTCONV_LD(V, sq[q] + t + u * L);                                  \
                    for (k = 0; k < KB; k++)                                                \
                        a[u][k][q] += gv[k] * x;                                            \
                }                                                                           \
            }                                                                               \
        for (; t + L <= m; t += L)                                                          \
            for (q = 0; q < NQ; q++)                                                        \
                for (k = 0; k < KB; k++)                                                    \
                    a[0][k][q] += FASTCONV_LD(V, g + k * ld + t) * FASTCONV_LD(V, sq[q] + t); \
        for (k = 0; k < KB; k++)                                                            \
            for (q = 0; q < nt; q++) {                                                      \
                T *rq = r + (NQ * k + q) * L;                                               \
                for (u = 1; u < U; u++)                                                     \
                    a[0][k][q] += a[u][k][q];                                               \
                FASTCONV_ST(V, rq, FASTCONV_LD(V, rq) + a[0][k][q]);                        \
                for (l = t; l < m; l++)                                                     \
                    rq[0] += g[k * ld + l] * sq[q][l];                                      \
            }                                                                               \
    }
    #define FASTCONV_DOTS_ALL(SUFFIX, T, V)                                                  \
        FASTCONV_DOTS(fastconv_dots_##SUFFIX##13, T, V, 1, 3, 3)                             \
        FASTCONV_DOTS(fastconv_dots_##SUFFIX##14, T, V, 1, 4, 2)                             \
        FASTCONV_DOTS(fastconv_dots_##SUFFIX##15, T, V, 1, 5, 2)                             \
        FASTCONV_DOTS(fastconv_dots_##SUFFIX##43, T, V, 4, 3, 1)                             \
        FASTCONV_DOTS(fastconv_dots_##SUFFIX##44, T, V, 4, 4, 1)                             \
        FASTCONV_DOTS(fastconv_dots_##SUFFIX##45, T, V, 4, 5, 1)
    FASTCONV_DOTS_ALL(f, float, fastconv_vf)
    FASTCONV_DOTS_ALL(d, double, fastconv_vd)

    /* NHWC depthwise, one V of channels at c, for 8 pixels (full) or 1:
       d[p*C + c] := bias[c] + sum_q x_q[xo + p*sx + c] * w_q[c]  over the nt taps q.
       The 8 pixels share each weight load; the last tap's row (the one not read by the
       previous output row) and the output are prefetched FASTCONV_PF pixels ahead. */
    #define FASTCONV_PF 16
    #define FASTCONV_DW(NAME, T, V)                                                          \
    static inline void NAME(T *restrict d, const T **xs, const T **ws, Py_ssize_t nt,       \
                            const T *restrict bias, Py_ssize_t C, Py_ssize_t sx,            \
                            Py_ssize_t xo, int full, Py_ssize_t c) {                        \
        const V bv = FASTCONV_LD(V, bias + c);                                              \
        Py_ssize_t q;                                                                       \
        int p;                                                                              \
        if (full) {                                                                         \
            V a[8];                                                                         \
            for (p = 0; p < 8; p++) {                                                       \
                a[p] = bv;                                                                  \
                if (nt > 0)                                                                 \
                    __builtin_prefetch(xs[nt - 1] + xo + (FASTCONV_PF + p) * sx + c);       \
                __builtin_prefetch(d + (FASTCONV_PF + p) * C + c, 1);                       \
            }                                                                               \
            for (q = 0; q < nt; q++) {                                                      \
                const T *x = xs[q] + xo + c;                                                \
                const V wv = FASTCONV_LD(V, ws[q] + c);                                     \
                for (p = 0; p < 8; p++)                                                     \
                    a[p] += FASTCONV_LD(V, x + p * sx) * wv;                                \
            }                                                                               \
            for (p = 0; p < 8; p++)                                                         \
                FASTCONV_ST(V, d + p * C + c, a[p]);                                        \
        } else {                                                                            \
            V a0 = bv;                                                                      \
            for (q = 0; q < nt; q++)                                                        \
                a0 += FASTCONV_LD(V, xs[q] + xo + c) * FASTCONV_LD(V, ws[q] + c);           \
            FASTCONV_ST(V, d + c, a0);                                                      \
        }                                                                                   \
    }
    FASTCONV_DW(fastconv_dw_vf, float, fastconv_vf)
    FASTCONV_DW(fastconv_dw_sf, float, float)
    FASTCONV_DW(fastconv_dw_vd, double, fastconv_vd)
    FASTCONV_DW(fastconv_dw_sd, double, double)
    /* NHWC depthwise 3-wide kernel rows, dilation 1, column stride SW, one V of channels
       at c, over npix >= 8 output pixels whose taps are all valid:
       d[p*C + c] := bias[c] + sum_{r < NR, j < 3} xr[r][(p*SW + j)*C + c] * wr[r][j*C + c].
       A block of 8 pixels loads each input vector of a kernel row once and adds it into
       the (pixel, tap) sums it belongs to (3 at stride 1), where _dw loaded it once per
       tap; the 3*NR weights stay in registers over the run.  A channel vector's sweep
       along the rows reads one line of each pixel's channels: the kernel row new to this
       output row, and the output, are prefetched FASTCONV_PF pixels ahead.  The last
       block overlaps the one before (same values written twice). */
    #define FASTCONV_DWROW(NAME, T, V, NR, SW)                                               \
    static void NAME(T *restrict d, const T *const *xr, const T *const *wr,                 \
                     const T *restrict bias, Py_ssize_t C, Py_ssize_t npix, Py_ssize_t c) { \
        enum { P = 8, U = (P - 1) * SW + 3 };                                               \
        const V bv = FASTCONV_LD(V, bias + c);                                              \
        V wv[NR][3], a[P], xv[U];                                                           \
        Py_ssize_t p = 0;                                                                   \
        int r, u, j, k;                                                                     \
        for (r = 0; r < NR; r++)                                                            \
            for (j = 0; j < 3; j++)                                                         \
                wv[r][j] = FASTCONV_LD(V, wr[r] + j * C + c);                               \
        for (;;) {                                                                          \
            if (p + P > npix)                                                               \
                p = npix - P;                                                               \
            for (k = 0; k < P; k++) {                                                       \
                a[k] = bv;                                                                  \
                __builtin_prefetch(xr[NR - 1] + (p + FASTCONV_PF + k) * SW * C + c);        \
                __builtin_prefetch(d + (p + FASTCONV_PF + k) * C + c, 1);                   \
            }                                                                               \
            for (r = 0; r < NR; r++) {                                                      \
                const T *x = xr[r] + p * SW * C + c;                                        \
                for (u = 0; u < U; u++, x += C)                                             \
                    xv[u] = FASTCONV_LD(V, x);                                              \
                for (k = 0; k < P; k++)                                                     \
                    for (j = 0; j < 3; j++)                                                 \
                        a[k] += xv[k * SW + j] * wv[r][j];                                  \
            }                                                                               \
            for (k = 0; k < P; k++)                                                         \
                FASTCONV_ST(V, d + (p + k) * C + c, a[k]);                                  \
            if (p + P >= npix)                                                              \
                return;                                                                     \
            p += P;                                                                         \
        }                                                                                   \
    }
    /* ... for nr (1-3) kernel rows at stride sw (1, 2) */
    #define FASTCONV_DWROW_ALL(SUFFIX, T, V)                                                 \
        FASTCONV_DWROW(fastconv_dwrow_##SUFFIX##11, T, V, 1, 1)                              \
        FASTCONV_DWROW(fastconv_dwrow_##SUFFIX##21, T, V, 2, 1)                              \
        FASTCONV_DWROW(fastconv_dwrow_##SUFFIX##31, T, V, 3, 1)                              \
        FASTCONV_DWROW(fastconv_dwrow_##SUFFIX##12, T, V, 1, 2)                              \
        FASTCONV_DWROW(fastconv_dwrow_##SUFFIX##22, T, V, 2, 2)                              \
        FASTCONV_DWROW(fastconv_dwrow_##SUFFIX##32, T, V, 3, 2)                              \
    static void fastconv_dwrow_##SUFFIX(T *d, const T *const *xr, const T *const *wr,       \
                                        Py_ssize_t nr, Py_ssize_t sw, const T *bias,        \
                                        Py_ssize_t C, Py_ssize_t npix, Py_ssize_t c) {      \
        static void (*const kernels[2][3])(T *restrict, const T *const *, const T *const *, \
                                           const T *restrict, Py_ssize_t, Py_ssize_t,       \
                                           Py_ssize_t) = {                                  \
            {fastconv_dwrow_##SUFFIX##11, fastconv_dwrow_##SUFFIX##21,                       \
             fastconv_dwrow_##SUFFIX##31},                                                  \
            {fastconv_dwrow_##SUFFIX##12, fastconv_dwrow_##SUFFIX##22,                       \
             fastconv_dwrow_##SUFFIX##32}};                                                 \
        kernels[sw - 1][nr - 1](d, xr, wr, bias, C, npix, c);                               \
    }
    FASTCONV_DWROW_ALL(f, float, fastconv_vf)
    FASTCONV_DWROW_ALL(d, double, fastconv_vd)

    /* NHWC depthwise weight gradient, one V of channels at c:
       r_k[c + l] += sum_{p < npix} g[p*C + c + l] * x_k[p*sx + c + l]  for the nt <= 4 taps k
       and the lanes l in [l0, l1) (the others overlap a neighbouring vector's channels).
       The pixels are FASTCONV_PF apart in memory: prefetched ahead. */
    #define FASTCONV_DWDOT(NAME, T, V)                                                       \
    static inline void NAME(T **r, const T **xs, Py_ssize_t nt, const T *restrict g,        \
                            Py_ssize_t C, Py_ssize_t sx, Py_ssize_t npix, Py_ssize_t c,     \
                            Py_ssize_t l0, Py_ssize_t l1) {                                 \
        enum { L = sizeof(V) / sizeof(T) };                                                 \
        const T *x0 = xs[0] + c, *x1 = xs[nt > 1] + c, *x2 = xs[nt > 2 ? 2 : 0] + c;        \
        const T *x3 = xs[nt > 3 ? 3 : 0] + c;  /* missing taps repeat tap 0, unused */      \
        V a[4];                                                                             \
        T lanes[4][L];                                                                      \
        Py_ssize_t p, k, l;                                                                 \
        __builtin_memset(a, 0, sizeof(a));                                                  \
        g += c;                                                                             \
        for (p = 0; p < npix; p++) {                                                        \
            const V gv = FASTCONV_LD(V, g + p * C);                                         \
            __builtin_prefetch(g + (p + FASTCONV_PF) * C);                                  \
            __builtin_prefetch(x3 + (p + FASTCONV_PF) * sx);                                \
            a[0] += gv * FASTCONV_LD(V, x0 + p * sx);                                       \
            a[1] += gv * FASTCONV_LD(V, x1 + p * sx);                                       \
            a[2] += gv * FASTCONV_LD(V, x2 + p * sx);                                       \
            a[3] += gv * FASTCONV_LD(V, x3 + p * sx);                                       \
        }                                                                                   \
        if (l0 == 0 && l1 == L) {                                                           \
            for (k = 0; k < nt; k++)                                                        \
                FASTCONV_ST(V, r[k] + c, FASTCONV_LD(V, r[k] + c) + a[k]);                  \
            return;                                                                         \
        }                                                                                   \
        __builtin_memcpy(lanes, a, sizeof(lanes));                                          \
        for (k = 0; k < nt; k++)                                                            \
            for (l = l0; l < l1; l++)                                                       \
                r[k][c + l] += lanes[k][l];                                                 \
    }
    FASTCONV_DWDOT(fastconv_dwdot_vf, float, fastconv_vf)
    FASTCONV_DWDOT(fastconv_dwdot_sf, float, float)
    FASTCONV_DWDOT(fastconv_dwdot_vd, double, fastconv_vd)
    FASTCONV_DWDOT(fastconv_dwdot_sd, double, double)
    /* NHWC depthwise weight gradient, 3-wide kernel rows, dilation 1, stride 1, one V of
       channels at c, over npix output pixels whose taps are all valid:
       r[k][j*C + c + l] += sum_{p < npix} g[p*C + c + l] * xr[k][(p + j)*C + c + l]
       for k < NR, j < 3 and the lanes l in [l0, l1) (the others overlap a neighbouring
       vector's channels).  The 3*NR sums stay in registers over the pixels, and the input
       vectors slide along each kernel row: a pixel loads its grad_output vector and one
       new input vector a row (_dwdot: 1 + 4 a row).  (At stride 2 that was slower than
       _dwdot: 0.58 against 0.48-0.55 ms on 96 channels at 56x56.) */
    #define FASTCONV_DWGROW(NAME, T, V, NR)                                                  \
    static void NAME(T *const *r, const T *const *xr, const T *restrict g, Py_ssize_t C,    \
                     Py_ssize_t npix, Py_ssize_t c, Py_ssize_t l0, Py_ssize_t l1) {         \
        enum { L = sizeof(V) / sizeof(T) };                                                 \
        V a[NR][3], s0[NR], s1[NR];                                                         \
        T lanes[NR][3][L];                                                                  \
        Py_ssize_t p;                                                                       \
        int k, j, l;                                                                        \
        __builtin_memset(a, 0, sizeof(a));                                                  \
        for (k = 0; k < NR; k++) {   /* the columns the first pixel shares with the next */ \
            s0[k] = FASTCONV_LD(V, xr[k] + c);                                              \
            s1[k] = FASTCONV_LD(V, xr[k] + C + c);                                          \
        }                                                                                   \
        for (p = 0; p < npix; p++) {                                                        \
            const V gv = FASTCONV_LD(V, g + p * C + c);                                     \
            __builtin_prefetch(g + (p + FASTCONV_PF) * C + c);                              \
            __builtin_prefetch(xr[NR - 1] + (p + FASTCONV_PF) * C + c);                     \
            for (k = 0; k < NR; k++) {                                                      \
                const V x2 = FASTCONV_LD(V, xr[k] + (p + 2) * C + c);                       \
                a[k][0] += gv * s0[k];                                                      \
                a[k][1] += gv * s1[k];                                                      \
                a[k][2] += gv * x2;                                                         \
                s0[k] = s1[k];                                                              \
                s1[k] = x2;                                                                 \
            }                                                                               \
        }                                                                                   \
        if (l0 == 0 && l1 == L) {                                                           \
            for (k = 0; k < NR; k++)                                                        \
                for (j = 0; j < 3; j++)                                                     \
                    FASTCONV_ST(V, r[k] + j * C + c,                                        \
                                FASTCONV_LD(V, r[k] + j * C + c) + a[k][j]);                \
            return;                                                                         \
        }                                                                                   \
        __builtin_memcpy(lanes, a, sizeof(lanes));                                          \
        for (k = 0; k < NR; k++)                                                            \
            for (j = 0; j < 3; j++)                                                         \
                for (l = l0; l < l1; l++)                                                   \
                    r[k][j * C + c + l] += lanes[k][j][l];                                  \
    }
    /* ... for nr (1-3) kernel rows */
    #define FASTCONV_DWGROW_ALL(SUFFIX, T, V)                                                \
        FASTCONV_DWGROW(fastconv_dwgrow_##SUFFIX##1, T, V, 1)                                \
        FASTCONV_DWGROW(fastconv_dwgrow_##SUFFIX##2, T, V, 2)                                \
        FASTCONV_DWGROW(fastconv_dwgrow_##SUFFIX##3, T, V, 3)                                \
    static void fastconv_dwgrow_##SUFFIX(T *const *r, const T *const *xr, Py_ssize_t nr,    \
                                         const T *g, Py_ssize_t C, Py_ssize_t npix,         \
                                         Py_ssize_t c, Py_ssize_t l0, Py_ssize_t l1) {      \
        static void (*const kernels[3])(T *const *, const T *const *, const T *restrict,    \
                                        Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,     \
                                        Py_ssize_t) = {                                     \
            fastconv_dwgrow_##SUFFIX##1, fastconv_dwgrow_##SUFFIX##2,                        \
            fastconv_dwgrow_##SUFFIX##3};                                                   \
        kernels[nr - 1](r, xr, g, C, npix, c, l0, l1);                                      \
    }
    FASTCONV_DWGROW_ALL(f, float, fastconv_vf)
    FASTCONV_DWGROW_ALL(d, double, fastconv_vd)
    /* NHWC single-group forward (an implicit GEMM), output channels [k, k + NV*L):
       d[p*K + k] := bias[k] + sum_q xs[q][xo + p*sx] * ws[q][k]  for FASTCONV_BP pixels
       (full) or 1.  Each tap q is one input value per pixel, broadcast against NV vectors
       of weights; BP*NV accumulators (28 of the 32 AVX-512 registers for NV = 2) and
       pixel counts known at compile time, so the sums never leave the registers. */
    #define FASTCONV_BP 14
    #define FASTCONV_BCAST_BODY(T, V, NP, NV, SX)                                            \
        do {                                                                                \
            V a[NP][NV], wv[NV];                                                            \
            Py_ssize_t q;                                                                   \
            int p, v;                                                                       \
            for (p = 0; p < NP; p++)                                                        \
                for (v = 0; v < NV; v++)                                                    \
                    a[p][v] = FASTCONV_LD(V, bias + k + v * L);                             \
            for (q = 0; q < nt; q++) {                                                      \
                const T *x = xs[q] + xo;                                                    \
                if (NP > 1)  /* a block: its pixels at displacements from x */              \
                    FASTCONV_OPAQUE(x);                                                     \
                for (v = 0; v < NV; v++)                                                    \
                    wv[v] = FASTCONV_LD(V, ws[q] + k + v * L);                              \
                for (p = 0; p < NP; p++) {                                                  \
                    const T xp = x[p * (SX)];                                               \
                    for (v = 0; v < NV; v++)                                                \
                        a[p][v] += xp * wv[v];                                              \
                }                                                                           \
            }                                                                               \
            for (p = 0; p < NP; p++)                                                        \
                for (v = 0; v < NV; v++)                                                    \
                    FASTCONV_ST(V, d + p * K + k + v * L, a[p][v]);                         \
        } while (0)
    /* Blocks of the usual pixel strides (NHWC: C times the stride) get the pixel offsets
       as constants, and the block's base pointer is opaque: its pixels are addressed by
       displacement, where GCC had kept the 14 base + offset sums in vector registers and
       moved one out for every product (dilated 16 channels 0.69 -> 0.60 ms). */
    #define FASTCONV_BCAST_BLOCK(T, V, NP, NV)                                              \
        switch (sx) {                                                                       \
        case 1: FASTCONV_BCAST_BODY(T, V, NP, NV, 1); break;                                \
        case 3: FASTCONV_BCAST_BODY(T, V, NP, NV, 3); break;                                \
        case 6: FASTCONV_BCAST_BODY(T, V, NP, NV, 6); break;                                \
        case 8: FASTCONV_BCAST_BODY(T, V, NP, NV, 8); break;                                \
        case 16: FASTCONV_BCAST_BODY(T, V, NP, NV, 16); break;                              \
        case 32: FASTCONV_BCAST_BODY(T, V, NP, NV, 32); break;                              \
        default: FASTCONV_BCAST_BODY(T, V, NP, NV, sx);                                     \
        }
    /* NP pixels: FASTCONV_BP, FASTCONV_BP / 2 (rows of 7-13 pixels) or 1.  The full
       blocks are inlined into their caller's loop (a call each: 10% slower). */
    #define FASTCONV_BCAST(NAME, T, V, NV, NP, ATTR)                                         \
    static inline ATTR void NAME(T *restrict d, const T **xs, const T **ws, Py_ssize_t nt,  \
                            const T *restrict bias, Py_ssize_t K, Py_ssize_t sx,            \
                            Py_ssize_t xo, Py_ssize_t k) {                                  \
        enum { L = sizeof(V) / sizeof(T) };                                                 \
        if (NP == 1)                                                                        \
            FASTCONV_BCAST_BODY(T, V, 1, NV, sx);                                           \
        else                                                                                \
            FASTCONV_BCAST_BLOCK(T, V, NP, NV)                                              \
    }
    #define FASTCONV_BCAST_ALL(SUFFIX, T, V, NV)                                             \
        FASTCONV_BCAST(fastconv_bcast_##SUFFIX, T, V, NV, FASTCONV_BP,                       \
                       __attribute__((always_inline)))                                      \
        FASTCONV_BCAST(fastconv_bcast_##SUFFIX##h, T, V, NV, FASTCONV_BP / 2, )              \
        FASTCONV_BCAST(fastconv_bcast_##SUFFIX##p, T, V, NV, 1, )
    FASTCONV_BCAST_ALL(vf2, float, fastconv_vf, 2)
    FASTCONV_BCAST_ALL(vf1, float, fastconv_vf, 1)
    /* One AVX-512 vector of output channels over 16 pixels (17 registers): rows of 32, 48,
       64 ... pixels in whole blocks, where blocks of FASTCONV_BP computed 42 for 32. */
    FASTCONV_BCAST(fastconv_bcast_vf1x, float, fastconv_vf, 1, 16, __attribute__((always_inline)))
    /* Two vectors over 8 pixels: rows of 16, 24, 32 ... pixels with 32 or more channels,
       where 16 x 1 needs a load per product (17 a tap) and BCAST's pipes run short. */
    FASTCONV_BCAST(fastconv_bcast_vf2e, float, fastconv_vf, 2, 8, __attribute__((always_inline)))
    FASTCONV_BCAST_ALL(sf1, float, float, 1)
    FASTCONV_BCAST_ALL(vd2, double, fastconv_vd, 2)
    FASTCONV_BCAST_ALL(vd1, double, fastconv_vd, 1)
    FASTCONV_BCAST_ALL(sd1, double, double, 1)
    /* NHWC weight gradient with few input channels, output channels [k, k + NV*L):
       r_q[k] += sum_{p < npix} xs[q][p*sx] * g[p*K + k]  for the nt <= 4 taps q;
       each grad_output vector load serves the 4 taps (broadcast input values). */
    #define FASTCONV_BDOT(NAME, T, V, NV)                                                    \
    static inline void NAME(T **r, const T **xs, Py_ssize_t nt, const T *restrict g,        \
                            Py_ssize_t K, Py_ssize_t sx, Py_ssize_t npix, Py_ssize_t k) {   \
        enum { L = sizeof(V) / sizeof(T) };                                                 \
        const T *x[4] = {xs[0], xs[nt > 1], xs[nt > 2 ? 2 : 0], xs[nt > 3 ? 3 : 0]};        \
        V a[4][NV], gv[NV];                                                                 \
        Py_ssize_t p;                                                                       \
        int q, v;                                                                           \
        __builtin_memset(a, 0, sizeof(a));                                                  \
        for (p = 0; p < npix; p++) {                                                        \
            for (v = 0; v < NV; v++)                                                        \
                gv[v] = FASTCONV_LD(V, g + p * K + k + v * L);                              \
            for (q = 0; q < 4; q++)                                                         \
                for (v = 0; v < NV; v++)                                                    \
                    a[q][v] += x[q][p * sx] * gv[v];                                        \
        }                                                                                   \
        for (q = 0; q < nt; q++)                                                            \
            for (v = 0; v < NV; v++)                                                        \
                FASTCONV_ST(V, r[q] + k + v * L, FASTCONV_LD(V, r[q] + k + v * L) + a[q][v]); \
    }
    FASTCONV_BDOT(fastconv_bdot_vf2, float, fastconv_vf, 2)
    FASTCONV_BDOT(fastconv_bdot_vf1, float, fastconv_vf, 1)
    FASTCONV_BDOT(fastconv_bdot_sf1, float, float, 1)
    FASTCONV_BDOT(fastconv_bdot_vd2, double, fastconv_vd, 2)
    FASTCONV_BDOT(fastconv_bdot_vd1, double, fastconv_vd, 1)
    FASTCONV_BDOT(fastconv_bdot_sd1, double, double, 1)
    /* NHWC weight gradient with few input channels, whole images, channels [k, k + NV*L):
       r[t*K + k] += sum_{y < rows, p < npix} x[y*xr + p*sx + t] * g[(y*npix + p)*K + k]
       for the NJ taps t: NJ consecutive taps (j, c) of a kernel row, which lie at consecutive
       offsets of a staged input row when the width dilation is 1.  The sums stay in
       registers over the image, each grad_output load serves the NJ taps (broadcast input
       values), and the tap offsets are constants. */
    #define FASTCONV_BROW(NAME, T, V, NV, NJ)                                                \
    static inline void NAME(T *restrict r, const T *restrict x, const T *restrict g,        \
                            Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xr, Py_ssize_t npix,    \
                            Py_ssize_t rows, Py_ssize_t k) {                                \
        enum { L = sizeof(V) / sizeof(T) };                                                 \
        V a[NJ][NV], gv[NV];                                                                \
        Py_ssize_t y, p;                                                                    \
        int t, v;                                                                           \
        __builtin_memset(a, 0, sizeof(a));                                                  \
        g += k;                                                                             \
        for (y = 0; y < rows; y++)                                                          \
            for (p = 0; p < npix; p++) {                                                    \
                const T *xp = x + y * xr + p * sx;                                          \
                for (v = 0; v < NV; v++)                                                    \
                    gv[v] = FASTCONV_LD(V, g + (y * npix + p) * K + v * L);                 \
                for (t = 0; t < NJ; t++) {                                                  \
                    const T b = xp[t];                                                      \
                    for (v = 0; v < NV; v++)                                                \
                        a[t][v] += b * gv[v];                                               \
                }                                                                           \
            }                                                                               \
        for (t = 0; t < NJ; t++)                                                            \
            for (v = 0; v < NV; v++)                                                        \
                FASTCONV_ST(V, r + t * K + k + v * L,                                       \
                            FASTCONV_LD(V, r + t * K + k + v * L) + a[t][v]);               \
    }
    /* the same for nj in [3, 12] taps */
    #define FASTCONV_BROW_ANY(NAME, T, V, NV)                                                \
        FASTCONV_BROW(NAME##_3, T, V, NV, 3)                                                 \
        FASTCONV_BROW(NAME##_4, T, V, NV, 4)                                                 \
        FASTCONV_BROW(NAME##_5, T, V, NV, 5)                                                 \
        FASTCONV_BROW(NAME##_6, T, V, NV, 6)                                                 \
        FASTCONV_BROW(NAME##_7, T, V, NV, 7)                                                 \
        FASTCONV_BROW(NAME##_8, T, V, NV, 8)                                                 \
        FASTCONV_BROW(NAME##_9, T, V, NV, 9)                                                 \
        FASTCONV_BROW(NAME##_10, T, V, NV, 10)                                               \
        FASTCONV_BROW(NAME##_11, T, V, NV, 11)                                               \
        FASTCONV_BROW(NAME##_12, T, V, NV, 12)                                               \
        static inline void NAME(int nj, T *r, const T *x, const T *g, Py_ssize_t K,          \
                                Py_ssize_t sx, Py_ssize_t xr, Py_ssize_t npix,              \
                                Py_ssize_t rows, Py_ssize_t k) {                            \
            switch (nj) {                                                                   \
            case 3: NAME##_3(r, x, g, K, sx, xr, npix, rows, k); break;                     \
            case 4: NAME##_4(r, x, g, K, sx, xr, npix, rows, k); break;                     \
            case 5: NAME##_5(r, x, g, K, sx, xr, npix, rows, k); break;                     \
            case 6: NAME##_6(r, x, g, K, sx, xr, npix, rows, k); break;                     \
            case 7: NAME##_7(r, x, g, K, sx, xr, npix, rows, k); break;                     \
            case 8: NAME##_8(r, x, g, K, sx, xr, npix, rows, k); break;                     \
            case 9: NAME##_9(r, x, g, K, sx, xr, npix, rows, k); break;                     \
            case 10: NAME##_10(r, x, g, K, sx, xr, npix, rows, k); break;                   \
            case 11: NAME##_11(r, x, g, K, sx, xr, npix, rows, k); break;                   \
            default: NAME##_12(r, x, g, K, sx, xr, npix, rows, k); break;                   \
            }                                                                               \
        }
    FASTCONV_BROW_ANY(fastconv_brow_vf2, float, fastconv_vf, 2)
    FASTCONV_BROW_ANY(fastconv_brow_vf1, float, fastconv_vf, 1)
    FASTCONV_BROW_ANY(fastconv_brow_sf1, float, float, 1)
    FASTCONV_BROW_ANY(fastconv_brow_vd2, double, fastconv_vd, 2)
    FASTCONV_BROW_ANY(fastconv_brow_vd1, double, fastconv_vd, 1)
    FASTCONV_BROW_ANY(fastconv_brow_sd1, double, double, 1)
    """
    void fastconv_brow_vf2(int nj, float *r, const float *x, const float *g, Py_ssize_t K,
                           Py_ssize_t sx, Py_ssize_t xr, Py_ssize_t npix, Py_ssize_t rows,
                           Py_ssize_t k) noexcept nogil
    void fastconv_brow_vf1(int nj, float *r, const float *x, const float *g, Py_ssize_t K,
                           Py_ssize_t sx, Py_ssize_t xr, Py_ssize_t npix, Py_ssize_t rows,
                           Py_ssize_t k) noexcept nogil
    void fastconv_brow_sf1(int nj, float *r, const float *x, const float *g, Py_ssize_t K,
                           Py_ssize_t sx, Py_ssize_t xr, Py_ssize_t npix, Py_ssize_t rows,
                           Py_ssize_t k) noexcept nogil
    void fastconv_brow_vd2(int nj, double *r, const double *x, const double *g, Py_ssize_t K,
                           Py_ssize_t sx, Py_ssize_t xr, Py_ssize_t npix, Py_ssize_t rows,
                           Py_ssize_t k) noexcept nogil
    void fastconv_brow_vd1(int nj, double *r, const double *x, const double *g, Py_ssize_t K,
                           Py_ssize_t sx, Py_ssize_t xr, Py_ssize_t npix, Py_ssize_t rows,
                           Py_ssize_t k) noexcept nogil
    void fastconv_brow_sd1(int nj, double *r, const double *x, const double *g, Py_ssize_t K,
                           Py_ssize_t sx, Py_ssize_t xr, Py_ssize_t npix, Py_ssize_t rows,
                           Py_ssize_t k) noexcept nogil
    enum: FASTCONV_BP  # pixels per block of the NHWC first-layer forward
    void __builtin_prefetch(const void *p) noexcept nogil
    Py_ssize_t fastconv_taps_vf14(float *d, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                                   const float *w, Py_ssize_t nt, const float *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_vf11(float *d, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                                   const float *w, Py_ssize_t nt, const float *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_sf11(float *d, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                                   const float *w, Py_ssize_t nt, const float *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_vf44(float *d, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                                   const float *w, Py_ssize_t nt, const float *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_vf41(float *d, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                                   const float *w, Py_ssize_t nt, const float *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_sf41(float *d, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                                   const float *w, Py_ssize_t nt, const float *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_vd14(double *d, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                                   const double *w, Py_ssize_t nt, const double *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_vd11(double *d, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                                   const double *w, Py_ssize_t nt, const double *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_sd11(double *d, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                                   const double *w, Py_ssize_t nt, const double *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_vd44(double *d, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                                   const double *w, Py_ssize_t nt, const double *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_vd41(double *d, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                                   const double *w, Py_ssize_t nt, const double *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    Py_ssize_t fastconv_taps_sd41(double *d, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                                   const double *w, Py_ssize_t nt, const double *b, Py_ssize_t t,
                                   Py_ssize_t m) noexcept nogil
    void fastconv_copy_rows_f(float *d, Py_ssize_t dp, const float *s, Py_ssize_t sp,
                              Py_ssize_t rows, Py_ssize_t w, const float *nxt) noexcept nogil
    void fastconv_copy_rows_d(double *d, Py_ssize_t dp, const double *s, Py_ssize_t sp,
                              Py_ssize_t rows, Py_ssize_t w, const double *nxt) noexcept nogil
    void fastconv_copy_rows_hf(float *d, Py_ssize_t dp, const float *s, Py_ssize_t sp,
                               Py_ssize_t rows, Py_ssize_t w, const float *nxt) noexcept nogil
    void fastconv_copy_rows_hd(double *d, Py_ssize_t dp, const double *s, Py_ssize_t sp,
                               Py_ssize_t rows, Py_ssize_t w, const double *nxt) noexcept nogil
    void fastconv_taprows_f44(float *d, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                              const float *w, Py_ssize_t nt, const float *b,
                              const Py_ssize_t *sp, const Py_ssize_t *dp,
                              Py_ssize_t npos) noexcept nogil
    void fastconv_taprows_f18(float *d, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                              const float *w, Py_ssize_t nt, const float *b,
                              const Py_ssize_t *sp, const Py_ssize_t *dp,
                              Py_ssize_t npos) noexcept nogil
    void fastconv_taprows_d44(double *d, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                              const double *w, Py_ssize_t nt, const double *b,
                              const Py_ssize_t *sp, const Py_ssize_t *dp,
                              Py_ssize_t npos) noexcept nogil
    void fastconv_taprows_d18(double *d, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                              const double *w, Py_ssize_t nt, const double *b,
                              const Py_ssize_t *sp, const Py_ssize_t *dp,
                              Py_ssize_t npos) noexcept nogil
    void fastconv_dots_f13(const float *g, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, float *r) noexcept nogil
    void fastconv_dots_f14(const float *g, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, float *r) noexcept nogil
    void fastconv_dots_f15(const float *g, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, float *r) noexcept nogil
    void fastconv_dots_f43(const float *g, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, float *r) noexcept nogil
    void fastconv_dots_f44(const float *g, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, float *r) noexcept nogil
    void fastconv_dots_f45(const float *g, Py_ssize_t ld, const float *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, float *r) noexcept nogil
    void fastconv_dots_d13(const double *g, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, double *r) noexcept nogil
    void fastconv_dots_d14(const double *g, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, double *r) noexcept nogil
    void fastconv_dots_d15(const double *g, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, double *r) noexcept nogil
    void fastconv_dots_d43(const double *g, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, double *r) noexcept nogil
    void fastconv_dots_d44(const double *g, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, double *r) noexcept nogil
    void fastconv_dots_d45(const double *g, Py_ssize_t ld, const double *s, const Py_ssize_t *off,
                           Py_ssize_t nt, Py_ssize_t m, double *r) noexcept nogil
    void fastconv_dw_vf(float *d, const float **xs, const float **ws, Py_ssize_t nt,
                              const float *bias, Py_ssize_t C, Py_ssize_t sx, Py_ssize_t xo,
                              int full, Py_ssize_t c) noexcept nogil
    void fastconv_dw_sf(float *d, const float **xs, const float **ws, Py_ssize_t nt,
                              const float *bias, Py_ssize_t C, Py_ssize_t sx, Py_ssize_t xo,
                              int full, Py_ssize_t c) noexcept nogil
    void fastconv_dw_vd(double *d, const double **xs, const double **ws, Py_ssize_t nt,
                              const double *bias, Py_ssize_t C, Py_ssize_t sx, Py_ssize_t xo,
                              int full, Py_ssize_t c) noexcept nogil
    void fastconv_dw_sd(double *d, const double **xs, const double **ws, Py_ssize_t nt,
                              const double *bias, Py_ssize_t C, Py_ssize_t sx, Py_ssize_t xo,
                              int full, Py_ssize_t c) noexcept nogil
    void fastconv_dwrow_f(float *d, const float *const *xr, const float *const *wr, Py_ssize_t nr,
        Py_ssize_t sw, const float *bias, Py_ssize_t C, Py_ssize_t npix, Py_ssize_t c) noexcept nogil
    void fastconv_dwrow_d(double *d, const double *const *xr, const double *const *wr, Py_ssize_t nr,
        Py_ssize_t sw, const double *bias, Py_ssize_t C, Py_ssize_t npix, Py_ssize_t c) noexcept nogil
    void fastconv_dwgrow_f(float *const *r, const float *const *xr, Py_ssize_t nr, const float *g,
        Py_ssize_t C, Py_ssize_t npix, Py_ssize_t c, Py_ssize_t l0, Py_ssize_t l1) noexcept nogil
    void fastconv_dwgrow_d(double *const *r, const double *const *xr, Py_ssize_t nr, const double *g,
        Py_ssize_t C, Py_ssize_t npix, Py_ssize_t c, Py_ssize_t l0, Py_ssize_t l1) noexcept nogil
    void fastconv_dwdot_vf(float **r, const float **xs, Py_ssize_t nt, const float *g,
                           Py_ssize_t C, Py_ssize_t sx, Py_ssize_t npix, Py_ssize_t c,
                           Py_ssize_t l0, Py_ssize_t l1) noexcept nogil
    void fastconv_dwdot_sf(float **r, const float **xs, Py_ssize_t nt, const float *g,
                           Py_ssize_t C, Py_ssize_t sx, Py_ssize_t npix, Py_ssize_t c,
                           Py_ssize_t l0, Py_ssize_t l1) noexcept nogil
    void fastconv_dwdot_vd(double **r, const double **xs, Py_ssize_t nt, const double *g,
                           Py_ssize_t C, Py_ssize_t sx, Py_ssize_t npix, Py_ssize_t c,
                           Py_ssize_t l0, Py_ssize_t l1) noexcept nogil
    void fastconv_dwdot_sd(double **r, const double **xs, Py_ssize_t nt, const double *g,
                           Py_ssize_t C, Py_ssize_t sx, Py_ssize_t npix, Py_ssize_t c,
                           Py_ssize_t l0, Py_ssize_t l1) noexcept nogil
    void fastconv_bcast_vf2(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vf2h(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vf2p(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vf1(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vf1h(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vf1p(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vf1x(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vf2e(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_sf1(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_sf1h(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_sf1p(float *d, const float **xs, const float **ws, Py_ssize_t nt,
        const float *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vd2(double *d, const double **xs, const double **ws, Py_ssize_t nt,
        const double *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vd2h(double *d, const double **xs, const double **ws, Py_ssize_t nt,
        const double *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vd2p(double *d, const double **xs, const double **ws, Py_ssize_t nt,
        const double *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vd1(double *d, const double **xs, const double **ws, Py_ssize_t nt,
        const double *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vd1h(double *d, const double **xs, const double **ws, Py_ssize_t nt,
        const double *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_vd1p(double *d, const double **xs, const double **ws, Py_ssize_t nt,
        const double *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_sd1(double *d, const double **xs, const double **ws, Py_ssize_t nt,
        const double *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_sd1h(double *d, const double **xs, const double **ws, Py_ssize_t nt,
        const double *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bcast_sd1p(double *d, const double **xs, const double **ws, Py_ssize_t nt,
        const double *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo, Py_ssize_t k) noexcept nogil
    void fastconv_bdot_vf2(float **r, const float **xs, Py_ssize_t nt, const float *g,
                           Py_ssize_t K, Py_ssize_t sx, Py_ssize_t npix,
                           Py_ssize_t k) noexcept nogil
    void fastconv_bdot_vf1(float **r, const float **xs, Py_ssize_t nt, const float *g,
                           Py_ssize_t K, Py_ssize_t sx, Py_ssize_t npix,
                           Py_ssize_t k) noexcept nogil
    void fastconv_bdot_sf1(float **r, const float **xs, Py_ssize_t nt, const float *g,
                           Py_ssize_t K, Py_ssize_t sx, Py_ssize_t npix,
                           Py_ssize_t k) noexcept nogil
    void fastconv_bdot_vd2(double **r, const double **xs, Py_ssize_t nt, const double *g,
                           Py_ssize_t K, Py_ssize_t sx, Py_ssize_t npix,
                           Py_ssize_t k) noexcept nogil
    void fastconv_bdot_vd1(double **r, const double **xs, Py_ssize_t nt, const double *g,
                           Py_ssize_t K, Py_ssize_t sx, Py_ssize_t npix,
                           Py_ssize_t k) noexcept nogil
    void fastconv_bdot_sd1(double **r, const double **xs, Py_ssize_t nt, const double *g,
                           Py_ssize_t K, Py_ssize_t sx, Py_ssize_t npix,
                           Py_ssize_t k) noexcept nogil


ctypedef struct Geom:
    Py_ssize_t sh, sw, pt, pl, dh, dw, G


# --------------------------------------------------------------------------- helpers

cdef inline void _valid_range(Py_ssize_t n_out, Py_ssize_t n_in, Py_ssize_t stride,
                              Py_ssize_t offset, Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """[lo, hi) := {o in [0, n_out) : 0 <= o*stride + offset < n_in}"""
    cdef Py_ssize_t a = 0, b, t
    if offset < 0:
        a = (-offset + stride - 1) // stride
    t = n_in - 1 - offset
    if t < 0:
        b = 0
    else:
        b = t // stride + 1
    if b > n_out:
        b = n_out
    if a > b:
        a = b
    lo[0] = a
    hi[0] = b


cdef inline void _axpy1(floating *d, const floating *a, floating wa,
                        Py_ssize_t m, Py_ssize_t s) noexcept nogil:
    """d[t] += wa*a[t*s]"""
    cdef Py_ssize_t t
    if s == 1:
        for t in range(m):
            d[t] += wa * a[t]
    else:
        for t in range(m):
            d[t] += wa * a[t * s]


cdef inline void _axpy2(floating *d, const floating *a, const floating *b,
                        floating wa, floating wb, Py_ssize_t m, Py_ssize_t s) noexcept nogil:
    """d[t] += wa*a[t*s] + wb*b[t*s]"""
    cdef Py_ssize_t t
    if s == 1:
        for t in range(m):
            d[t] += wa * a[t] + wb * b[t]
    else:
        for t in range(m):
            d[t] += wa * a[t * s] + wb * b[t * s]


cdef inline void _axpy4(floating *d, const floating *a, const floating *b, const floating *c,
                        const floating *e, floating wa, floating wb, floating wc, floating we,
                        Py_ssize_t m, Py_ssize_t s) noexcept nogil:
    """d[t] += wa*a[t*s] + wb*b[t*s] + wc*c[t*s] + we*e[t*s]"""
    cdef Py_ssize_t t
    if s == 1:
        for t in range(m):
            d[t] += (wa * a[t] + wb * b[t]) + (wc * c[t] + we * e[t])
    else:
        for t in range(m):
            d[t] += (wa * a[t * s] + wb * b[t * s]) + (wc * c[t * s] + we * e[t * s])


cdef inline void _scatter1(floating *d, const floating *a, floating wa,
                           Py_ssize_t m, Py_ssize_t s) noexcept nogil:
    """d[t*s] += wa*a[t]"""
    cdef Py_ssize_t t
    for t in range(m):
        d[t * s] += wa * a[t]


cdef inline void _scatter4(floating *d, const floating *a, const floating *b, const floating *c,
                           const floating *e, floating wa, floating wb, floating wc, floating we,
                           Py_ssize_t m, Py_ssize_t s) noexcept nogil:
    """d[t*s] += wa*a[t] + wb*b[t] + wc*c[t] + we*e[t]"""
    cdef Py_ssize_t t
    for t in range(m):
        d[t * s] += (wa * a[t] + wb * b[t]) + (wc * c[t] + we * e[t])


cdef inline void _mul1(floating *d, const floating *a0, const floating *b0,
                       Py_ssize_t m) noexcept nogil:
    """d[t] += a0[t]*b0[t]"""
    cdef Py_ssize_t t
    for t in range(m):
        d[t] += a0[t] * b0[t]


cdef inline void _mul4(floating *d, const floating *a0, const floating *b0,
                       const floating *a1, const floating *b1, const floating *a2,
                       const floating *b2, const floating *a3, const floating *b3,
                       Py_ssize_t m) noexcept nogil:
    """d[t] += a0[t]*b0[t] + a1[t]*b1[t] + a2[t]*b2[t] + a3[t]*b3[t]"""
    cdef Py_ssize_t t
    for t in range(m):
        d[t] += (a0[t] * b0[t] + a1[t] * b1[t]) + (a2[t] * b2[t] + a3[t] * b3[t])


cdef inline floating _dot1(const floating *a, const floating *b, Py_ssize_t m,
                           Py_ssize_t s) noexcept nogil:
    """sum_t a[t]*b[t*s]"""
    cdef Py_ssize_t t
    cdef floating acc = 0
    if s == 1:
        for t in range(m):
            acc += a[t] * b[t]
    else:
        for t in range(m):
            acc += a[t] * b[t * s]
    return acc


cdef inline void _dot4(const floating *a0, const floating *a1, const floating *a2,
                       const floating *a3, const floating *b, Py_ssize_t m, Py_ssize_t s,
                       floating *out) noexcept nogil:
    """out[q] := sum_t a_q[t]*b[t*s]  for q < 4"""
    cdef Py_ssize_t t
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0, v
    if s == 1:
        for t in range(m):
            v = b[t]
            s0 += a0[t] * v
            s1 += a1[t] * v
            s2 += a2[t] * v
            s3 += a3[t] * v
    else:
        for t in range(m):
            v = b[t * s]
            s0 += a0[t] * v
            s1 += a1[t] * v
            s2 += a2[t] * v
            s3 += a3[t] * v
    out[0] = s0
    out[1] = s1
    out[2] = s2
    out[3] = s3


cdef inline void _flush_taps(floating *dst, const floating **src, const floating *w,
                             const Py_ssize_t *lo, const Py_ssize_t *hi, Py_ssize_t cnt,
                             Py_ssize_t s) noexcept nogil:
    """dst[lo_q:hi_q] += w_q * src_q[::s] for the cnt (<= 4) taps q; src_q is at index lo_q."""
    cdef Py_ssize_t q, L, R
    if cnt == 4:
        L = lo[0]
        R = hi[0]
        for q in range(1, 4):
            if lo[q] > L:
                L = lo[q]
            if hi[q] < R:
                R = hi[q]
        if R > L:
            for q in range(4):
                if lo[q] < L:
                    _axpy1(dst + lo[q], src[q], w[q], L - lo[q], s)
                if hi[q] > R:
                    _axpy1(dst + R, src[q] + (R - lo[q]) * s, w[q], hi[q] - R, s)
            _axpy4(dst + L, src[0] + (L - lo[0]) * s, src[1] + (L - lo[1]) * s,
                   src[2] + (L - lo[2]) * s, src[3] + (L - lo[3]) * s,
                   w[0], w[1], w[2], w[3], R - L, s)
            return
    for q in range(cnt):
        _axpy1(dst + lo[q], src[q], w[q], hi[q] - lo[q], s)


# Input channels per group up to which a layer runs on the tap-list kernels of first layers
# (NCHW's staged planes, the weight gradients' broadcast input values): 2-4x the row kernels
# on 6-32 channels (LeNet's 6 -> 16, 16 -> 16 3x3 dilated or strided).  NHWC single-group
# forwards take those kernels at any channel count (_sum_staged_rows).
cdef Py_ssize_t _NARROW = 32

# Taps per run of the NHWC first-layer weight gradient's whole-image sums (_brow_dots): 12
# against 6 keeps more sums in flight (12 chains for one vector of channels, where 6 waited
# on the FMA latency) and loads each grad_output vector for more of them: 16 channels
# dilated 0.53 -> 0.45 ms, 32 -> 64 at stride 2 1.03 -> 0.79, LeNet's 6 -> 16 0.23 -> 0.20.
cdef Py_ssize_t _BROW_MAX = 12

# Single-group forwards on _sum_staged_rows: output rows run in blocks whose zero-padded
# input rows are staged once, up to this many elements a thread (256 KB in float32, leaving
# L2 to the weights): NHWC 3x3 stride-2 64 -> 128 at 112x112 8.5 ms against 8.9 for whole
# images.
cdef Py_ssize_t _ROW_STAGE = 65536


cdef int _fill_ranges(Py_ssize_t *lo, Py_ssize_t *hi, Py_ssize_t ksize, Py_ssize_t n_out,
                      Py_ssize_t n_in, Py_ssize_t stride, Py_ssize_t pad,
                      Py_ssize_t dilation) except -1 nogil:
    """lo[j], hi[j] := valid output range of kernel column j (offset j*dilation - pad)."""
    cdef Py_ssize_t j
    for j in range(ksize):
        _valid_range(n_out, n_in, stride, j * dilation - pad, &lo[j], &hi[j])
    return 0


cdef inline Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline Py_ssize_t _chunk_size(Py_ssize_t N, Py_ssize_t chunks) noexcept nogil:
    """Samples per chunk to split N samples into at most `chunks` equal chunks (the caller
    takes ceil(N / size) chunks).  Depends on the shape only, so partial sums added in chunk
    order are bitwise the same for any thread count."""
    return _ceil_div(N, max(1, min(N, chunks)))


# --------------------------------------------------------------------------- depthwise helpers

cdef inline void _taps_flat(floating *d, Py_ssize_t ld, const floating *s, const Py_ssize_t *off,
                            const floating *w, Py_ssize_t nt, const floating *b, Py_ssize_t nk,
                            Py_ssize_t m) noexcept nogil:
    """d[k*ld + t] := b[k] + sum_q w[k*nt + q] * s[t + off[q]]  for k < nk, t < m"""
    cdef Py_ssize_t k = 0, t
    if floating is float:
        if nk == 4:
            t = fastconv_taps_vf44(d, ld, s, off, w, nt, b, 0, m)
            t = fastconv_taps_vf41(d, ld, s, off, w, nt, b, t, m)
            fastconv_taps_sf41(d, ld, s, off, w, nt, b, t, m)
            return
        for k in range(nk):
            t = fastconv_taps_vf14(d + k * ld, ld, s, off, w + k * nt, nt, b + k, 0, m)
            t = fastconv_taps_vf11(d + k * ld, ld, s, off, w + k * nt, nt, b + k, t, m)
            fastconv_taps_sf11(d + k * ld, ld, s, off, w + k * nt, nt, b + k, t, m)
    else:
        if nk == 4:
            t = fastconv_taps_vd44(d, ld, s, off, w, nt, b, 0, m)
            t = fastconv_taps_vd41(d, ld, s, off, w, nt, b, t, m)
            fastconv_taps_sd41(d, ld, s, off, w, nt, b, t, m)
            return
        for k in range(nk):
            t = fastconv_taps_vd14(d + k * ld, ld, s, off, w + k * nt, nt, b + k, 0, m)
            t = fastconv_taps_vd11(d + k * ld, ld, s, off, w + k * nt, nt, b + k, t, m)
            fastconv_taps_sd11(d + k * ld, ld, s, off, w + k * nt, nt, b + k, t, m)


cdef inline void _taps_rows(floating *d, Py_ssize_t ld, const floating *s, const Py_ssize_t *off,
                            const floating *w, Py_ssize_t nt, const floating *b, Py_ssize_t nk,
                            const Py_ssize_t *sp, const Py_ssize_t *dp,
                            Py_ssize_t npos) noexcept nogil:
    """d[k*ld + dp[i] + l] := b[k] + sum_q w[k*nt + q] * s[sp[i] + off[q] + l]  for k < nk,
    i < npos (a multiple of 8), l < VL: output rows in place, from a _row_positions list"""
    cdef Py_ssize_t k
    if floating is float:
        if nk == 4:
            fastconv_taprows_f44(d, ld, s, off, w, nt, b, sp, dp, npos)
            return
        for k in range(nk):
            fastconv_taprows_f18(d + k * ld, ld, s, off, w + k * nt, nt, b + k, sp, dp, npos)
    else:
        if nk == 4:
            fastconv_taprows_d44(d, ld, s, off, w, nt, b, sp, dp, npos)
            return
        for k in range(nk):
            fastconv_taprows_d18(d + k * ld, ld, s, off, w + k * nt, nt, b + k, sp, dp, npos)


cdef inline Py_ssize_t _dot_taps(Py_ssize_t T) noexcept nogil:
    """Taps per _dots call for T taps in all: a 5x5 or 3x3 kernel a row at a time, else 4."""
    return 5 if T % 5 == 0 else (3 if T % 3 == 0 else 4)


cdef inline void _dots(const floating *g, Py_ssize_t ld, const floating *s, const Py_ssize_t *off,
                       Py_ssize_t nt, Py_ssize_t nk, Py_ssize_t nq, Py_ssize_t m,
                       floating *r) noexcept nogil:
    """sum_l r[(nq*k + q)*VL + l] += sum_t g[k*ld + t] * s[t + off[q]]  for k < nk (1 or 4),
    q < nt <= nq (3, 4 or 5), t < m: lanes of vector sums, VL to a vector"""
    if floating is float:
        if nk == 4:
            if nq == 5:
                fastconv_dots_f45(g, ld, s, off, nt, m, r)
            elif nq == 3:
                fastconv_dots_f43(g, ld, s, off, nt, m, r)
            else:
                fastconv_dots_f44(g, ld, s, off, nt, m, r)
        elif nq == 5:
            fastconv_dots_f15(g, ld, s, off, nt, m, r)
        elif nq == 3:
            fastconv_dots_f13(g, ld, s, off, nt, m, r)
        else:
            fastconv_dots_f14(g, ld, s, off, nt, m, r)
    else:
        if nk == 4:
            if nq == 5:
                fastconv_dots_d45(g, ld, s, off, nt, m, r)
            elif nq == 3:
                fastconv_dots_d43(g, ld, s, off, nt, m, r)
            else:
                fastconv_dots_d44(g, ld, s, off, nt, m, r)
        elif nq == 5:
            fastconv_dots_d15(g, ld, s, off, nt, m, r)
        elif nq == 3:
            fastconv_dots_d13(g, ld, s, off, nt, m, r)
        else:
            fastconv_dots_d14(g, ld, s, off, nt, m, r)


# Vectors of channels from which NHWC depthwise kernels start their channel vectors vector
# aligned: the head vector that adds costs less than loads straddling cache lines from 4
# vectors on (144 channels 25% faster), but more below (32 channels on 16-byte aligned
# NumPy arrays took 3 vectors for 2).
cdef Py_ssize_t _ALIGNED_START = 4


cdef inline Py_ssize_t _align_skip(const void *ptr, Py_ssize_t itemsize) noexcept nogil:
    """Elements from ptr to the next vector-aligned address (0 if aligned or not element-aligned)"""
    cdef Py_ssize_t mis = <Py_ssize_t> ptr % FASTCONV_VBYTES()
    if mis % itemsize:
        return 0
    return ((FASTCONV_VBYTES() - mis) % FASTCONV_VBYTES()) // itemsize


cdef inline void _dw_vec(floating *d, const floating **xs, const floating **ws, Py_ssize_t nt,
                         const floating *bias, Py_ssize_t C, Py_ssize_t sx, Py_ssize_t xo,
                         int full, Py_ssize_t c, bint vec) noexcept nogil:
    if floating is float:
        if vec:
            fastconv_dw_vf(d, xs, ws, nt, bias, C, sx, xo, full, c)
        else:
            fastconv_dw_sf(d, xs, ws, nt, bias, C, sx, xo, full, c)
    else:
        if vec:
            fastconv_dw_vd(d, xs, ws, nt, bias, C, sx, xo, full, c)
        else:
            fastconv_dw_sd(d, xs, ws, nt, bias, C, sx, xo, full, c)


cdef inline void _dw_pixels(floating *d, const floating **xs, const floating **ws, Py_ssize_t nt,
                            const floating *bias, Py_ssize_t C, Py_ssize_t sx,
                            Py_ssize_t npix) noexcept nogil:
    """d[p*C + c] := bias[c] + sum_q xs[q][p*sx + c] * ws[q][c]  for p < npix, c < C

    Pixel blocks outermost: the channels of a pixel are contiguous, so memory is streamed.
    The input is often not vector aligned (NumPy aligns to 16 bytes), so the channels run
    from an aligned start; the first and last vectors overlap their neighbours instead of
    taking a scalar loop (overlapping lanes are computed twice, identically)."""
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating)
    cdef Py_ssize_t p = 0, c, c0
    cdef int full
    if C < VL:
        while p < npix:
            full = npix - p >= 8
            for c in range(C):
                _dw_vec(d + p * C, xs, ws, nt, bias, C, sx, p * sx, full, c, False)
            p = p + (8 if full else 1)
        return
    c0 = _align_skip(xs[0], sizeof(floating)) if nt and C >= _ALIGNED_START * VL else 0
    while p < npix:
        full = npix >= 8
        if full and p + 8 > npix:
            p = npix - 8  # the last block overlaps the one before (same values written twice)
        if c0:
            _dw_vec(d + p * C, xs, ws, nt, bias, C, sx, p * sx, full, 0, True)
        c = c0
        while c + VL <= C:
            _dw_vec(d + p * C, xs, ws, nt, bias, C, sx, p * sx, full, c, True)
            c = c + VL
        if c < C:
            _dw_vec(d + p * C, xs, ws, nt, bias, C, sx, p * sx, full, C - VL, True)
        p = p + (8 if full else 1)


cdef inline void _dw_row_vec(floating *d, const floating **xr, const floating **wr, Py_ssize_t nr,
                             Py_ssize_t sw, const floating *bias, Py_ssize_t C, Py_ssize_t npix,
                             Py_ssize_t c) noexcept nogil:
    if floating is float:
        fastconv_dwrow_f(d, xr, wr, nr, sw, bias, C, npix, c)
    else:
        fastconv_dwrow_d(d, xr, wr, nr, sw, bias, C, npix, c)


cdef inline void _dw_rows(floating *d, const floating **xr, const floating **wr, Py_ssize_t nr,
                          Py_ssize_t sw, const floating *bias, Py_ssize_t C,
                          Py_ssize_t npix) noexcept nogil:
    """d[p*C + c] := bias[c] + sum_{r < nr, j < 3} xr[r][(p*sw + j)*C + c] * wr[r][j*C + c]
    for p < npix (>= 8), c < C (>= one vector): 3-wide kernel rows at dilation 1, stride 1
    or 2, nr <= 3 of them.  In chunks of pixels whose rows fill about 32 KB (the L1 cache),
    a channel vector at a time over the chunk, its weights in registers; channels from an
    aligned start as in _dw_pixels."""
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating)
    cdef Py_ssize_t c0 = _align_skip(xr[0], sizeof(floating)) if C >= _ALIGNED_START * VL else 0
    cdef Py_ssize_t chunk = max(8, 32768 // ((nr * sw + 1) * C * sizeof(floating)) // 8 * 8)
    cdef Py_ssize_t p = 0, m, c, r
    cdef const floating *xc[3]
    while p < npix:
        m = min(chunk, npix - p)
        if m < 8:
            p = npix - 8  # overlaps the chunk before (same values written twice)
            m = 8
        for r in range(nr):
            xc[r] = xr[r] + p * sw * C
        if c0:
            _dw_row_vec(d + p * C, xc, wr, nr, sw, bias, C, m, 0)
        c = c0
        while c + VL <= C:
            _dw_row_vec(d + p * C, xc, wr, nr, sw, bias, C, m, c)
            c = c + VL
        if c < C:
            _dw_row_vec(d + p * C, xc, wr, nr, sw, bias, C, m, C - VL)
        p = p + m


cdef inline void _bcast_vec(floating *d, const floating **xs, const floating **ws, Py_ssize_t nt,
                            const floating *bias, Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xo,
                            int block, Py_ssize_t k, int nv) noexcept nogil:
    """nv = 2, 1: that many vectors of output channels at k; nv = 0: the one channel k;
    block: 2, 1, 0 for FASTCONV_BP, FASTCONV_BP / 2 and 1 pixels"""
    if floating is float:
        if nv == 2:
            if block == 2:
                fastconv_bcast_vf2(d, xs, ws, nt, bias, K, sx, xo, k)
            elif block == 1:
                fastconv_bcast_vf2h(d, xs, ws, nt, bias, K, sx, xo, k)
            else:
                fastconv_bcast_vf2p(d, xs, ws, nt, bias, K, sx, xo, k)
        elif nv == 1:
            if block == 2:
                fastconv_bcast_vf1(d, xs, ws, nt, bias, K, sx, xo, k)
            elif block == 1:
                fastconv_bcast_vf1h(d, xs, ws, nt, bias, K, sx, xo, k)
            else:
                fastconv_bcast_vf1p(d, xs, ws, nt, bias, K, sx, xo, k)
        elif block == 2:
            fastconv_bcast_sf1(d, xs, ws, nt, bias, K, sx, xo, k)
        elif block == 1:
            fastconv_bcast_sf1h(d, xs, ws, nt, bias, K, sx, xo, k)
        else:
            fastconv_bcast_sf1p(d, xs, ws, nt, bias, K, sx, xo, k)
    else:
        if nv == 2:
            if block == 2:
                fastconv_bcast_vd2(d, xs, ws, nt, bias, K, sx, xo, k)
            elif block == 1:
                fastconv_bcast_vd2h(d, xs, ws, nt, bias, K, sx, xo, k)
            else:
                fastconv_bcast_vd2p(d, xs, ws, nt, bias, K, sx, xo, k)
        elif nv == 1:
            if block == 2:
                fastconv_bcast_vd1(d, xs, ws, nt, bias, K, sx, xo, k)
            elif block == 1:
                fastconv_bcast_vd1h(d, xs, ws, nt, bias, K, sx, xo, k)
            else:
                fastconv_bcast_vd1p(d, xs, ws, nt, bias, K, sx, xo, k)
        elif block == 2:
            fastconv_bcast_sd1(d, xs, ws, nt, bias, K, sx, xo, k)
        elif block == 1:
            fastconv_bcast_sd1h(d, xs, ws, nt, bias, K, sx, xo, k)
        else:
            fastconv_bcast_sd1p(d, xs, ws, nt, bias, K, sx, xo, k)


cdef inline void _bcast_pixels(floating *d, const floating **xs, const floating **ws,
                               Py_ssize_t nt, const floating *bias, Py_ssize_t K, Py_ssize_t sx,
                               Py_ssize_t xo, Py_ssize_t npix) noexcept nogil:
    """d[p*K + k] := bias[k] + sum_q xs[q][xo + p*sx] * ws[q][k]  for p < npix, k < K

    FASTCONV_BP pixels (rows of fewer: half as many) x two vectors of output channels per
    pass (one broadcast input value feeds both); the last pixel block and the last vector
    overlap their neighbours when npix and K are not multiples of the block sizes, the last
    pixel block a half one where that covers the tail.  float32 rows of a multiple of 8
    pixels but not of FASTCONV_BP (CIFAR's 16 and 32) take blocks that fit them: 8 pixels x
    two AVX-512 vectors for 32 or more channels, 16 pixels x one vector for 16-31 (rows of a
    multiple of 16)."""
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating)
    cdef Py_ssize_t p = 0, k
    cdef int block = 2 if npix >= FASTCONV_BP else (1 if npix >= FASTCONV_BP // 2 else 0)
    if floating is float:
        if VL == 16 and K >= 2 * VL and npix % FASTCONV_BP != 0 and npix % 8 == 0:
            while p < npix:
                k = 0
                while k < K:
                    fastconv_bcast_vf2e(d + p * K, xs, ws, nt, bias, K, sx, xo + p * sx,
                                        min(k, K - 2 * VL))
                    k = k + 2 * VL
                p = p + 8
            return
        if VL == 16 and VL <= K < 2 * VL and npix % FASTCONV_BP != 0 and npix % 16 == 0:
            while p < npix:
                fastconv_bcast_vf1x(d + p * K, xs, ws, nt, bias, K, sx, xo + p * sx, 0)
                if K > VL:
                    fastconv_bcast_vf1x(d + p * K, xs, ws, nt, bias, K, sx, xo + p * sx, K - VL)
                p = p + 16
            return
    cdef Py_ssize_t width = FASTCONV_BP if block == 2 else (FASTCONV_BP // 2 if block else 1)
    while p < npix:
        if p + width > npix:
            if block == 2 and npix - p <= FASTCONV_BP // 2:
                block = 1  # a short tail: a half block (17 pixels: 14 + 7, not 14 + 14)
                width = FASTCONV_BP // 2
            p = npix - width  # the last block overlaps the one before (same values)
        k = 0
        while k + 2 * VL <= K:
            _bcast_vec(d + p * K, xs, ws, nt, bias, K, sx, xo + p * sx, block, k, 2)
            k = k + 2 * VL
        if k + VL <= K:
            _bcast_vec(d + p * K, xs, ws, nt, bias, K, sx, xo + p * sx, block, k, 1)
            k = k + VL
        if k < K and K >= VL:
            _bcast_vec(d + p * K, xs, ws, nt, bias, K, sx, xo + p * sx, block, K - VL, 1)
        elif k < K:
            for k in range(k, K):
                _bcast_vec(d + p * K, xs, ws, nt, bias, K, sx, xo + p * sx, block, k, 0)
        p = p + width


cdef inline void _bcast_dots(floating **r, const floating **xs, Py_ssize_t nt,
                             const floating *g, Py_ssize_t K, Py_ssize_t sx,
                             Py_ssize_t npix) noexcept nogil:
    """r[q][k] += sum_{p < npix} xs[q][p*sx] * g[p*K + k]  for q < nt <= 4, k < K"""
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating)
    cdef Py_ssize_t k = 0
    if floating is float:
        while k + 2 * VL <= K:
            fastconv_bdot_vf2(r, xs, nt, g, K, sx, npix, k)
            k = k + 2 * VL
        if k + VL <= K:
            fastconv_bdot_vf1(r, xs, nt, g, K, sx, npix, k)
            k = k + VL
        for k in range(k, K):
            fastconv_bdot_sf1(r, xs, nt, g, K, sx, npix, k)
    else:
        while k + 2 * VL <= K:
            fastconv_bdot_vd2(r, xs, nt, g, K, sx, npix, k)
            k = k + 2 * VL
        if k + VL <= K:
            fastconv_bdot_vd1(r, xs, nt, g, K, sx, npix, k)
            k = k + VL
        for k in range(k, K):
            fastconv_bdot_sd1(r, xs, nt, g, K, sx, npix, k)


cdef inline void _brow_dots(floating *r, const floating *x, int nj, const floating *g,
                            Py_ssize_t K, Py_ssize_t sx, Py_ssize_t xr, Py_ssize_t npix,
                            Py_ssize_t rows) noexcept nogil:
    """r[t*K + k] += sum_{y < rows, p < npix} x[y*xr + p*sx + t] * g[(y*npix + p)*K + k]
    for t < nj (3 to 12), k < K"""
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating)
    cdef Py_ssize_t k = 0
    if floating is float:
        while k + 2 * VL <= K:
            fastconv_brow_vf2(nj, r, x, g, K, sx, xr, npix, rows, k)
            k = k + 2 * VL
        if k + VL <= K:
            fastconv_brow_vf1(nj, r, x, g, K, sx, xr, npix, rows, k)
            k = k + VL
        for k in range(k, K):
            fastconv_brow_sf1(nj, r, x, g, K, sx, xr, npix, rows, k)
    else:
        while k + 2 * VL <= K:
            fastconv_brow_vd2(nj, r, x, g, K, sx, xr, npix, rows, k)
            k = k + 2 * VL
        if k + VL <= K:
            fastconv_brow_vd1(nj, r, x, g, K, sx, xr, npix, rows, k)
            k = k + VL
        for k in range(k, K):
            fastconv_brow_sd1(nj, r, x, g, K, sx, xr, npix, rows, k)


cdef inline void _dw_dot_vec(floating **r, const floating **xs, Py_ssize_t nt,
                             const floating *g, Py_ssize_t C, Py_ssize_t sx, Py_ssize_t npix,
                             Py_ssize_t c, Py_ssize_t l0, Py_ssize_t l1, bint vec) noexcept nogil:
    if floating is float:
        if vec:
            fastconv_dwdot_vf(r, xs, nt, g, C, sx, npix, c, l0, l1)
        else:
            fastconv_dwdot_sf(r, xs, nt, g, C, sx, npix, c, 0, 1)
    else:
        if vec:
            fastconv_dwdot_vd(r, xs, nt, g, C, sx, npix, c, l0, l1)
        else:
            fastconv_dwdot_sd(r, xs, nt, g, C, sx, npix, c, 0, 1)


cdef inline void _dw_dots(floating **r, const floating **xs, Py_ssize_t nt, const floating *g,
                          Py_ssize_t C, Py_ssize_t sx, Py_ssize_t npix, Py_ssize_t c0,
                          Py_ssize_t c1) noexcept nogil:
    """r[k][c] += sum_{p < npix} g[p*C + c] * xs[k][p*sx + c]  for k < nt <= 4, c0 <= c < c1

    Blocks of 8 pixels outermost, so memory is read in short runs, not one line per pixel
    across the row.  Vectors start vector aligned in the input, as in _dw_pixels; a vector
    overlapping its neighbour adds only its own lanes."""
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating)
    cdef Py_ssize_t c, skip, p0, m, k
    cdef const floating *xb[4]
    skip = _align_skip(xs[0] + c0, sizeof(floating)) if c1 - c0 >= _ALIGNED_START * VL else 0
    for p0 in range(0, npix, 8):
        m = min(8, npix - p0)
        for k in range(nt):
            xb[k] = xs[k] + p0 * sx
        if c1 - c0 < VL:
            for c in range(c0, c1):
                _dw_dot_vec(r, xb, nt, g + p0 * C, C, sx, m, c, 0, 1, False)
            continue
        if skip:
            _dw_dot_vec(r, xb, nt, g + p0 * C, C, sx, m, c0, 0, skip, True)
        c = c0 + skip
        while c + VL <= c1:
            _dw_dot_vec(r, xb, nt, g + p0 * C, C, sx, m, c, 0, VL, True)
            c = c + VL
        if c < c1:
            _dw_dot_vec(r, xb, nt, g + p0 * C, C, sx, m, c1 - VL, VL - (c1 - c), VL, True)


cdef inline void _dw_grow_vec(floating **r, const floating **xr, Py_ssize_t nr, const floating *g,
                              Py_ssize_t C, Py_ssize_t npix, Py_ssize_t c, Py_ssize_t l0,
                              Py_ssize_t l1) noexcept nogil:
    if floating is float:
        fastconv_dwgrow_f(r, xr, nr, g, C, npix, c, l0, l1)
    else:
        fastconv_dwgrow_d(r, xr, nr, g, C, npix, c, l0, l1)


cdef inline void _dw_grad_rows(floating **r, const floating **xr, Py_ssize_t nr,
                               const floating *g, Py_ssize_t C, Py_ssize_t npix, Py_ssize_t c0,
                               Py_ssize_t c1) noexcept nogil:
    """r[k][j*C + c] += sum_{p < npix} g[p*C + c] * xr[k][(p + j)*C + c]  for k < nr <= 3,
    j < 3, c0 <= c < c1 (at least a vector): the weight gradient of 3-wide kernel rows at
    dilation 1, stride 1.  In chunks of pixels whose rows fill about 32 KB (the L1
    cache), a channel vector at a time over the chunk; vectors start aligned in the input,
    as in _dw_dots, and one overlapping its neighbour adds only its own lanes."""
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating)
    cdef Py_ssize_t skip = (_align_skip(xr[0] + c0, sizeof(floating))
                            if c1 - c0 >= _ALIGNED_START * VL else 0)
    cdef Py_ssize_t chunk = max(8, 32768 // ((nr + 1) * (c1 - c0) * sizeof(floating)))
    cdef Py_ssize_t p = 0, m, c, k
    cdef const floating *xc[3]
    while p < npix:
        m = min(chunk, npix - p)
        for k in range(nr):
            xc[k] = xr[k] + p * C
        if skip:
            _dw_grow_vec(r, xc, nr, g + p * C, C, m, c0, 0, skip)
        c = c0 + skip
        while c + VL <= c1:
            _dw_grow_vec(r, xc, nr, g + p * C, C, m, c, 0, VL)
            c = c + VL
        if c < c1:
            _dw_grow_vec(r, xc, nr, g + p * C, C, m, c1 - VL, VL - (c1 - c), VL)
        p = p + m


cdef inline bint _copy_rows(floating *d, Py_ssize_t dp, const floating *s, Py_ssize_t sp,
                            Py_ssize_t rows, Py_ssize_t w, const floating *nxt) noexcept nogil:
    """d[r*dp + u] := s[r*sp + u]  for r < rows, u < w, in whole (or half) vectors, the last
    of a row overlapping the one before; False (nothing done) for rows narrower than half a
    vector."""
    if w * sizeof(floating) >= FASTCONV_VBYTES():
        if floating is float:
            fastconv_copy_rows_f(d, dp, s, sp, rows, w, nxt)
        else:
            fastconv_copy_rows_d(d, dp, s, sp, rows, w, nxt)
    elif 2 * w * sizeof(floating) >= FASTCONV_VBYTES():
        if floating is float:
            fastconv_copy_rows_hf(d, dp, s, sp, rows, w, nxt)
        else:
            fastconv_copy_rows_hd(d, dp, s, sp, rows, w, nxt)
    else:
        return False
    return True


cdef inline void _stage_plane(floating *P, const floating *src, Py_ssize_t H, Py_ssize_t W,
                              Py_ssize_t Hp, Py_ssize_t Wp, Py_ssize_t top, Py_ssize_t left,
                              const floating *nxt, bint clean) noexcept nogil:
    """P[r, u] := src[r - top, u - left] inside the H x W plane, else 0  (Hp rows of Wp)

    The plane at nxt (the caller's next one, if not NULL) is prefetched meanwhile: planes are
    short streams the hardware prefetcher has barely locked on to when they end.  clean: P is
    zero, or holds a plane staged with the same geometry, so when the H x W plane lies inside
    and a row holds half a vector, only its rows are copied, in whole (or half) vectors (row
    by row element loops cost as much as the taps of a 28x28 first layer)."""
    cdef Py_ssize_t r, u, step = 64 // sizeof(floating)
    if (clean and 0 <= top and top + H <= Hp and 0 <= left and left + W <= Wp
            and _copy_rows(P + top * Wp + left, Wp, src, W, H, W, nxt)):
        return
    for r in range(Hp):
        if 0 <= r - top < H:
            _fill_padded_row(P + r * Wp, src + (r - top) * W, Wp, left, W)
            u = 0
            while nxt != NULL and u < W:
                __builtin_prefetch(nxt + (r - top) * W + u)
                u = u + step
        else:
            for u in range(Wp):
                P[r * Wp + u] = 0


cdef void _stage_phases(floating *P, const floating *src, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t Hq, Py_ssize_t Wq, Geom p, Py_ssize_t kh,
                        Py_ssize_t kw) noexcept nogil:
    """P[(a*sw + b)*Hq*Wq + r*Wq + u] := src[r*sh + a - top, u*sw + b - left] inside the
    H x W plane, else 0: the sh x sw polyphase components of the zero-padded plane.  Output
    (oh, ow) reads tap (i, j) in component ((i*dh) % sh, (j*dw) % sw) at row oh + i*dh // sh,
    column ow + j*dw // sw, so a strided layer's taps are unit-stride runs as in stride 1.
    Components no tap reads (a 1x1 kernel's) are left as they are."""
    cdef Py_ssize_t sh = p.sh, sw = p.sw, a, b, r, u, ih, lo, hi, lead
    cdef floating *row
    cdef const floating *s
    for a in range(sh):
        if not _phase_used(a, kh, p.dh, sh):
            continue
        for b in range(sw):
            if not _phase_used(b, kw, p.dw, sw):
                continue
            # source column u*sw + lead lies in [0, W) for lo <= u < hi
            lead = b - p.pl
            lo = min(Wq, max(0, _ceil_div(-lead, sw)))
            hi = max(lo, min(Wq, _ceil_div(W - lead, sw)))
            for r in range(Hq):
                row = P + ((a * sw + b) * Hq + r) * Wq
                ih = r * sh + a - p.pt
                if ih < 0 or ih >= H:
                    for u in range(Wq):
                        row[u] = 0
                    continue
                s = src + ih * W
                for u in range(lo):
                    row[u] = 0
                if sw == 2:   # a constant stride: GCC deinterleaves whole vectors
                    for u in range(lo, hi):
                        row[u] = s[2 * u + lead]
                else:
                    for u in range(lo, hi):
                        row[u] = s[u * sw + lead]
                for u in range(hi, Wq):
                    row[u] = 0


cdef inline bint _phase_used(Py_ssize_t a, Py_ssize_t k, Py_ssize_t d, Py_ssize_t s) noexcept nogil:
    """Whether some tap i < k has (i*d) % s == a."""
    cdef Py_ssize_t i
    for i in range(min(k, s)):
        if (i * d) % s == a:
            return True
    return False


cdef void _stage_planes(floating *P, const floating[:, :, :, ::1] x, Py_ssize_t n,
                        Py_ssize_t c0, Py_ssize_t nc, Py_ssize_t Hq, Py_ssize_t Wq, Geom p,
                        Py_ssize_t kh, Py_ssize_t kw) noexcept nogil:
    """Channels c0 <= c < c0 + nc of sample n into P, sh*sw*Hq*Wq elements each: the
    zero-padded plane at stride 1 (the next plane prefetched meanwhile), else its polyphase
    components (_stage_phases)."""
    cdef Py_ssize_t c, H = x.shape[2], W = x.shape[3], cs = p.sh * p.sw * Hq * Wq
    for c in range(nc):
        if p.sh == 1 and p.sw == 1:
            _stage_plane(P + c * cs, &x[n, c0 + c, 0, 0], H, W, Hq, Wq, p.pt, p.pl,
                         &x[n, c0 + c + 1, 0, 0] if c0 + c + 1 < x.shape[1] else NULL, True)
        else:
            _stage_phases(P + c * cs, &x[n, c0 + c, 0, 0], H, W, Hq, Wq, p, kh, kw)


# --------------------------------------------------------------------------- NCHW forward

cdef inline void _axpy4x4(floating *d0, floating *d1, floating *d2, floating *d3,
                          const floating *a, const floating *b, const floating *c,
                          const floating *e, const floating *w, Py_ssize_t m,
                          Py_ssize_t s) noexcept nogil:
    """d_r[t] += sum_q w[4r + q] * src_q[t*s]  (4 destination rows, 4 source rows)"""
    if floating is float:
        fastconv_axpy4x4_f(d0, d1, d2, d3, a, b, c, e, w, m, s)
    else:
        fastconv_axpy4x4_d(d0, d1, d2, d3, a, b, c, e, w, m, s)


cdef inline void _fill_padded_row(floating *row, const floating *src, Py_ssize_t width,
                                  Py_ssize_t lead, Py_ssize_t n_src) noexcept nogil:
    """row[u] := src[u - lead] where 0 <= u - lead < n_src, else 0, for u < width"""
    cdef Py_ssize_t u, a = max(0, min(lead, width)), b = min(lead + n_src, width)
    for u in range(a):
        row[u] = 0
    for u in range(a, b):
        row[u] = src[u - lead]
    for u in range(max(a, b), width):
        row[u] = 0


cdef void _forward_nchw_row(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                            const floating[::1] bias, floating[:, :, :, ::1] out,
                            Py_ssize_t n, Py_ssize_t oh, Geom p,
                            floating *buf, Py_ssize_t Wp) noexcept nogil:
    """out[n, :, oh, :] := bias + sum_{c, i, j} w[:, c, i, j] * x[n, c, ih, ow*sw + j*dw - pl]

    The input rows of the window are first copied, zero padded, into buf (Cg*kh rows of Wp):
    every tap then covers the whole output row and is a plain pointer offset."""
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = out.shape[1], oW = out.shape[3]
    cdef Py_ssize_t Cg = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t Kg = K // p.G, S = Cg * kh * kw
    cdef Py_ssize_t ih0 = oh * p.sh - p.pt
    cdef Py_ssize_t i_lo, i_hi, k, kk, nk, g, c, i, j, ih, ow, cnt, q, r
    cdef floating *dst[4]
    cdef floating b
    cdef const floating *src[4]
    cdef const floating *wk
    cdef Py_ssize_t wi[4]
    cdef floating w16[16]
    _valid_range(kh, H, p.dh, ih0, &i_lo, &i_hi)
    for g in range(p.G):
        for c in range(Cg):
            for i in range(i_lo, i_hi):
                _fill_padded_row(buf + (c * kh + i) * Wp, &x[n, g * Cg + c, ih0 + i * p.dh, 0],
                                 Wp, p.pl, W)
        k = g * Kg
        while k < (g + 1) * Kg:
            nk = min(4, (g + 1) * Kg - k)
            for kk in range(nk):
                dst[kk] = &out[n, k + kk, oh, 0]
                b = bias[k + kk]
                for ow in range(oW):
                    dst[kk][ow] = b
            wk = &weight[k, 0, 0, 0]
            cnt = 0
            for c in range(Cg):
                for i in range(i_lo, i_hi):
                    for j in range(kw):
                        src[cnt] = buf + (c * kh + i) * Wp + j * p.dw
                        wi[cnt] = (c * kh + i) * kw + j
                        cnt = cnt + 1
                        if cnt < 4:
                            continue
                        cnt = 0
                        if nk == 4:
                            for r in range(4):
                                for q in range(4):
                                    w16[4 * r + q] = wk[r * S + wi[q]]
                            _axpy4x4(dst[0], dst[1], dst[2], dst[3],
                                     src[0], src[1], src[2], src[3], w16, oW, p.sw)
                        else:
                            for r in range(nk):
                                _axpy4(dst[r], src[0], src[1], src[2], src[3],
                                       wk[r * S + wi[0]], wk[r * S + wi[1]],
                                       wk[r * S + wi[2]], wk[r * S + wi[3]], oW, p.sw)
            for r in range(nk):
                for q in range(cnt):
                    _axpy1(dst[r], src[q], wk[r * S + wi[q]], oW, p.sw)
            k = k + nk


cdef void _forward_nchw_taps_row(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                                 const floating[::1] bias, floating[:, :, :, ::1] out,
                                 Py_ssize_t n, Py_ssize_t oh, Geom p,
                                 const Py_ssize_t *jlo, const Py_ssize_t *jhi) noexcept nogil:
    """out[n, :, oh, :] := bias + sum_{c, i, j} w[:, c, i, j] * x[n, c, ih, ow*sw + j*dw - pl]

    One output channel at a time, reading the input in place (for K/G < 4, e.g. depthwise)."""
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = out.shape[1], oW = out.shape[3]
    cdef Py_ssize_t Cg = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t Kg = K // p.G
    cdef Py_ssize_t ih0 = oh * p.sh - p.pt
    cdef Py_ssize_t i_lo, i_hi, k, g, c, i, j, ih, ow, off, cnt
    cdef floating *dst
    cdef floating b
    cdef const floating *src[4]
    cdef const floating *endp
    cdef floating ws[4]
    cdef Py_ssize_t los[4]
    cdef Py_ssize_t his[4]
    _valid_range(kh, H, p.dh, ih0, &i_lo, &i_hi)
    for k in range(K):
        g = k // Kg
        dst = &out[n, k, oh, 0]
        b = bias[k]
        for ow in range(oW):
            dst[ow] = b
        cnt = 0
        for c in range(Cg):
            for i in range(i_lo, i_hi):
                ih = ih0 + i * p.dh
                for j in range(kw):
                    if jlo[j] >= jhi[j]:
                        continue
                    off = j * p.dw - p.pl
                    src[cnt] = &x[n, g * Cg + c, ih, jlo[j] * p.sw + off]
                    endp = &x[n, g * Cg + c, ih, (jhi[j] - 1) * p.sw + off]  # checked in debug
                    ws[cnt] = weight[k, c, i, j]
                    los[cnt] = jlo[j]
                    his[cnt] = jhi[j]
                    cnt = cnt + 1
                    if cnt == 4:
                        _flush_taps(dst, src, ws, los, his, 4, p.sw)
                        cnt = 0
        if cnt:
            _flush_taps(dst, src, ws, los, his, cnt, p.sw)


cdef void _forward_nchw_flat(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                            const floating[::1] bias, floating[:, :, :, ::1] out,
                            Py_ssize_t n, Py_ssize_t oh0, Py_ssize_t R, Geom p,
                            floating *inbuf, floating *outbuf, Py_ssize_t Wp) noexcept nogil:
    """out[n, :, oh0:oh0+R, :] := bias + conv  (stride 1)

    The R + (kh-1)*dh input rows are staged zero padded to width Wp, so that a tap (i, j) is
    one flat AXPY of length (R-1)*Wp + oW over the rows (columns >= oW are scratch)."""
    cdef Py_ssize_t H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = out.shape[1], oW = out.shape[3]
    cdef Py_ssize_t Cg = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t Kg = K // p.G, S = Cg * kh * kw
    cdef Py_ssize_t Hr = R + (kh - 1) * p.dh
    cdef Py_ssize_t L = (R - 1) * Wp + oW
    cdef Py_ssize_t k, kk, nk, g, c, i, j, r, ih, u, cnt, q
    cdef floating *dst[4]
    cdef floating *row
    cdef floating b
    cdef const floating *src[4]
    cdef const floating *wk
    cdef Py_ssize_t wi[4]
    cdef floating w16[16]
    for g in range(p.G):
        for c in range(Cg):
            for r in range(Hr):
                ih = oh0 - p.pt + r
                row = inbuf + (c * Hr + r) * Wp
                if 0 <= ih < H:
                    _fill_padded_row(row, &x[n, g * Cg + c, ih, 0], Wp, p.pl, W)
                else:
                    for u in range(Wp):
                        row[u] = 0
        k = g * Kg
        while k < (g + 1) * Kg:
            nk = min(4, (g + 1) * Kg - k)
            for kk in range(nk):
                dst[kk] = outbuf + kk * L
                b = bias[k + kk]
                for u in range(L):
                    dst[kk][u] = b
            wk = &weight[k, 0, 0, 0]
            cnt = 0
            for c in range(Cg):
                for i in range(kh):
                    for j in range(kw):
                        src[cnt] = inbuf + (c * Hr + i * p.dh) * Wp + j * p.dw
                        wi[cnt] = (c * kh + i) * kw + j
                        cnt = cnt + 1
                        if cnt < 4:
                            continue
                        cnt = 0
                        if nk == 4:
                            for r in range(4):
                                for q in range(4):
                                    w16[4 * r + q] = wk[r * S + wi[q]]
                            _axpy4x4(dst[0], dst[1], dst[2], dst[3],
                                     src[0], src[1], src[2], src[3], w16, L, 1)
                        else:
                            for r in range(nk):
                                _axpy4(dst[r], src[0], src[1], src[2], src[3],
                                       wk[r * S + wi[0]], wk[r * S + wi[1]],
                                       wk[r * S + wi[2]], wk[r * S + wi[3]], L, 1)
            for r in range(nk):
                for q in range(cnt):
                    _axpy1(dst[r], src[q], wk[r * S + wi[q]], L, 1)
            for kk in range(nk):
                for r in range(R):
                    row = &out[n, k + kk, oh0 + r, 0]
                    for u in range(oW):
                        row[u] = dst[kk][r * Wp + u]
            k = k + nk


cdef void _forward_nchw_plane(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                              const floating[::1] bias, floating[:, :, :, ::1] out,
                              Py_ssize_t n, Py_ssize_t k0, Py_ssize_t nk, Py_ssize_t oh0,
                              Py_ssize_t R, Geom p, const Py_ssize_t *off, floating *P,
                              floating *D, Py_ssize_t Hq, Py_ssize_t Wq, const Py_ssize_t *pos,
                              Py_ssize_t npos) noexcept nogil:
    """out[n, k, oh0:oh0+R] := bias[k] + sum_{c, i, j} w[k, c, i, j] * x[n, g*Cg + c, ih, iw]

    For the nk output channels k0 <= k < k0 + nk of one group g; few C/G; the output rows
    oh0 <= oh < oh0 + R (all of them, or a band).  The group's input planes (the band's
    rows of them) are staged zero padded in P (_stage_planes: Hq rows of Wq each, in sh*sw
    polyphase components when strided), so that output (oh, ow) at flat index
    t = (oh - oh0)*Wq + ow reads tap (c, i, j) at P[t + off[(c*kh + i)*kw + j]]
    (_plane_offsets): every tap is one flat run over the plane, shared by blocks of 4
    channels.  With a _row_positions list of R rows (pos, npos) the output rows are written
    in place, a vector at a time; otherwise (whole planes only) D gets a block's rows at
    pitch Wq (columns >= oW are scratch), in whole vectors (reading up to a vector past the
    planes, into D: a scalar tail took as long as the vectors on 10x10 outputs), then
    compacted."""
    cdef Py_ssize_t K = out.shape[1], oH = out.shape[2], oW = out.shape[3]
    cdef Py_ssize_t Cg = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating), T = Cg * kh * kw
    cdef Py_ssize_t L = _ceil_div((oH - 1) * Wq + oW, VL) * VL
    cdef Py_ssize_t k, kb, nb, oh, ow
    cdef floating *row
    cdef Geom band = p
    band.pt = p.pt - oh0 * p.sh    # the band's first staged row is its own row 0
    _stage_planes(P, x, n, k0 // (K // p.G) * Cg, Cg, Hq, Wq, band, kh, kw)
    for kb in range(k0, k0 + nk, 4):
        nb = min(4, k0 + nk - kb)
        if pos != NULL:
            _taps_rows(&out[n, kb, oh0, 0], oH * oW, P, off, &weight[kb, 0, 0, 0], T,
                       &bias[kb], nb, pos, pos + npos, npos)
            continue
        _taps_flat(D, L, P, off, &weight[kb, 0, 0, 0], T, &bias[kb], nb, L)
        for k in range(nb):
            if _copy_rows(&out[n, kb + k, 0, 0], oW, D + k * L, Wq, oH, oW, NULL):
                continue
            for oh in range(oH):
                row = &out[n, kb + k, oh, 0]
                for ow in range(oW):
                    row[ow] = D[k * L + oh * Wq + ow]


cdef Py_ssize_t *_plane_offsets(Py_ssize_t Cg, Py_ssize_t kh, Py_ssize_t kw, Geom p,
                                Py_ssize_t Hq, Py_ssize_t Wq) except NULL:
    """off[(c*kh + i)*kw + j]: where tap (c, i, j) of output 0 lies in Cg channels staged by
    _stage_planes (sh*sw components of Hq rows of pitch Wq each): in component
    ((i*dh) % sh, (j*dw) % sw), at row i*dh // sh and column j*dw // sw.  At stride 1 that is
    c*Hq*Wq + i*dh*Wq + j*dw."""
    cdef Py_ssize_t c, i, j, cs = p.sh * p.sw * Hq * Wq
    cdef Py_ssize_t *off = <Py_ssize_t *> malloc(Cg * kh * kw * sizeof(Py_ssize_t) + 1)
    if off == NULL:
        raise MemoryError()
    for c in range(Cg):
        for i in range(kh):
            for j in range(kw):
                off[(c * kh + i) * kw + j] = (
                    c * cs + ((i * p.dh % p.sh) * p.sw + j * p.dw % p.sw) * Hq * Wq
                    + i * p.dh // p.sh * Wq + j * p.dw // p.sw)
    return off


cdef Py_ssize_t *_row_positions(Py_ssize_t oH, Py_ssize_t oW, Py_ssize_t Wp, Py_ssize_t VL,
                                Py_ssize_t *npos) except NULL:
    """Vectors of VL outputs covering the oH rows of width oW >= VL: starting at ow = 0, VL,
    2*VL, ... and, when VL does not divide oW, oW - VL (overlapping the one before).
    sp[i] = oh*Wp + ow (in the staged planes), dp[i] = oh*oW + ow (in the output plane),
    dp = sp + npos; npos is rounded up to a multiple of 8 by repeating the last vector."""
    cdef Py_ssize_t per_row = _ceil_div(oW, VL), n = oH * per_row, m = _ceil_div(n, 8) * 8
    cdef Py_ssize_t oh, v, ow, i = 0
    cdef Py_ssize_t *sp = <Py_ssize_t *> malloc(2 * m * sizeof(Py_ssize_t))
    if sp == NULL:
        raise MemoryError()
    for oh in range(oH):
        for v in range(per_row):
            ow = min(v * VL, oW - VL)
            sp[i] = oh * Wp + ow
            sp[m + i] = oh * oW + ow
            i = i + 1
    for i in range(n, m):
        sp[i] = sp[n - 1]
        sp[m + i] = sp[m + n - 1]
    npos[0] = m
    return sp


cdef extern from *:
    """
    /* NHWC 1x1 layers: a GEMM of pixel rows by the weights, d[p*K + k] := b[k] +
       sum_c s[p*lds + c] * w[c*K + k], for P pixels (lds = C, the pixels' pitch).
       A block of PB pixels x NV vectors of output channels keeps its PB*NV sums in
       registers over all C (8 x 2: 16 sums, two weight loads and 8 broadcasts per input
       channel), then stores them once. The pixel rows of a run stay in L1 while the output
       channels are swept a block at a time. */
    #define FASTCONV_PIXEL_BLOCK(NAME, T, V)                                                  \
    static inline __attribute__((always_inline)) void                                      \
    NAME(T *restrict d, Py_ssize_t K, const T *restrict s, Py_ssize_t lds, Py_ssize_t C,   \
         const T *restrict w, const T *restrict b, const int PB, const int NV) {           \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        V acc[8][2];                                                                       \
        for (int v = 0; v < NV; v++)                                                       \
            for (int i = 0; i < PB; i++)                                                   \
                acc[i][v] = FASTCONV_LD(V, b + v * L);                                     \
        for (Py_ssize_t c = 0; c < C; c++) {                                               \
            V wv[2];                                                                       \
            for (int v = 0; v < NV; v++)                                                   \
                wv[v] = FASTCONV_LD(V, w + c * K + v * L);                                 \
            for (int i = 0; i < PB; i++) {                                                 \
                T xs = s[i * lds + c];                                                     \
                for (int v = 0; v < NV; v++)                                               \
                    acc[i][v] += xs * wv[v];                                               \
            }                                                                              \
        }                                                                                  \
        for (int i = 0; i < PB; i++)                                                       \
            for (int v = 0; v < NV; v++)                                                   \
                FASTCONV_ST(V, d + i * K + v * L, acc[i][v]);                              \
    }
    /* the pixels p < P of one block of output channels k: 8 at a time, then one by one */
    #define FASTCONV_PIXEL_BLOCKS(BLOCK, NV)                                                  \
        for (p = 0; p + 8 <= P; p += 8)                                                    \
            BLOCK(d + p * K + k, K, s + p * lds, lds, C, w + k, b + k, 8, NV);             \
        for (; p < P; p++)                                                                 \
            BLOCK(d + p * K + k, K, s + p * lds, lds, C, w + k, b + k, 1, NV);
    #define FASTCONV_POINTWISE_NHWC(NAME, T, V, HV)                                           \
    FASTCONV_PIXEL_BLOCK(NAME##_v, T, V)                                                   \
    FASTCONV_PIXEL_BLOCK(NAME##_h, T, HV)                                                  \
    FASTCONV_PIXEL_BLOCK(NAME##_s, T, T)                                                   \
    static void NAME(T *restrict d, const T *restrict s, Py_ssize_t lds, const T *restrict w, \
                     const T *restrict b, Py_ssize_t C, Py_ssize_t K, Py_ssize_t P) {      \
        enum { L = sizeof(V) / sizeof(T) };                                                \
        Py_ssize_t k = 0, p;                                                               \
        for (; k + 2 * L <= K; k += 2 * L) {                                               \
            FASTCONV_PIXEL_BLOCKS(NAME##_v, 2)                                             \
        }                                                                                  \
        for (; k + L <= K; k += L) {                                                       \
            FASTCONV_PIXEL_BLOCKS(NAME##_v, 1)                                             \
        }                                                                                  \
        for (; k + L / 2 <= K; k += L / 2) {  /* 24 channels: 16 + 8, not 16 + 8 x 1 */     \
            FASTCONV_PIXEL_BLOCKS(NAME##_h, 1)                                             \
        }                                                                                  \
        for (; k < K; k++) {                                                               \
            FASTCONV_PIXEL_BLOCKS(NAME##_s, 1)                                             \
        }                                                                                  \
    }
    FASTCONV_POINTWISE_NHWC(fastconv_pointwise_nhwc_f, float, fastconv_vf, fastconv_hf)
    FASTCONV_POINTWISE_NHWC(fastconv_pointwise_nhwc_d, double, fastconv_vd, fastconv_hd)
    """
    void fastconv_pointwise_nhwc_f(float *d, const float *s, Py_ssize_t lds, const float *w,
                                   const float *b, Py_ssize_t C, Py_ssize_t K, Py_ssize_t P) noexcept nogil
    void fastconv_pointwise_nhwc_d(double *d, const double *s, Py_ssize_t lds, const double *w,
                                   const double *b, Py_ssize_t C, Py_ssize_t K, Py_ssize_t P) noexcept nogil


cdef int _pointwise_nhwc(const floating *x, const floating *w, const floating *b, floating *out,
                         Py_ssize_t pixels, Py_ssize_t C, Py_ssize_t K,
                         Py_ssize_t nthreads) except -1:
    """out[p, k] := b[k] + sum_c x[p, c] * w[c, k]: an NHWC 1x1, stride-1, unpadded,
    single-group layer (its forward; its input gradient with w transposed). Tasks are runs
    of the flat pixels whose C inputs fill about 32 KB. See fastconv_pointwise_nhwc.
    (Strided 1x1 layers run on the staged-row kernels, whose 14-pixel blocks suit short
    output rows: 256 -> 512 at stride 2, 28x28, 3.5 ms against 7.4 in blocks of 8 and 1.)"""
    cdef Py_ssize_t run = max(8, 32768 // (C * sizeof(floating)) // 8 * 8)
    cdef Py_ssize_t t, p0
    with nogil, parallel(num_threads=nthreads):
        flush_denormals_enter()
        for t in prange(_ceil_div(pixels, run), schedule="static"):
            p0 = t * run
            if floating is float:
                fastconv_pointwise_nhwc_f(out + p0 * K, x + p0 * C, C, w, b, C, K, min(run, pixels - p0))
            else:
                fastconv_pointwise_nhwc_d(out + p0 * K, x + p0 * C, C, w, b, C, K, min(run, pixels - p0))
        flush_denormals_exit()
    return 0


cdef int _forward_nchw_pointwise(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                                 const floating[::1] bias, floating[:, :, :, ::1] out,
                                 Py_ssize_t nthreads, Py_ssize_t run) except -1:
    """out[n, k, t] := bias[k] + sum_c w[k, c] * x[n, c, t]: a 1x1, stride-1, unpadded, single-group
    layer, whose every input plane is already a flat run of the output's pixels.

    Tasks are (sample, run of pixels). Each block of 4 output channels sums over the run's C input
    rows, which stay in cache for all K/4 blocks, and writes the output once: a GEMM through BLAS
    first clears its output and then adds to it, three passes over an output that, with an inner
    dimension of C = 64, outweighs everything else the layer reads. The weights are read once per
    run: auto takes this path only while they fit in L2 (_pointwise_nchw in auto.py)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], K = out.shape[1]
    cdef Py_ssize_t HW = x.shape[2] * x.shape[3]
    cdef Py_ssize_t nruns = _ceil_div(HW, run), t, n, t0, kb, c
    cdef Py_ssize_t *off = <Py_ssize_t *> malloc(C * sizeof(Py_ssize_t))
    if off == NULL:
        raise MemoryError()
    for c in range(C):
        off[c] = c * HW
    try:
        with nogil, parallel(num_threads=nthreads):
            flush_denormals_enter()
            for t in prange(N * nruns, schedule="static"):
                n = t // nruns
                t0 = (t % nruns) * run
                for kb in range(0, K, 4):
                    _taps_flat(&out[n, kb, 0, 0] + t0, HW, &x[n, 0, 0, 0] + t0, off, &weight[kb, 0, 0, 0], C,
                               &bias[kb], min(4, K - kb), min(run, HW - t0))
            flush_denormals_exit()
    finally:
        free(off)
    return 0


# First layers whose input planes do not fit take the plane kernel in bands of rows (up to
# this many input channels per group).
cdef Py_ssize_t _BANDED = 4


cdef Py_ssize_t _plane_band_rows(Py_ssize_t Cg, Py_ssize_t oH, Py_ssize_t oW, Py_ssize_t halo,
                                 Py_ssize_t Wq, Py_ssize_t phases) noexcept nogil:
    """Output rows per band of the plane kernel: oH when the staged input planes (phases
    components of Cg channels, oH + halo rows of Wq each) and 4 output planes at pitch Wq
    fit 64 Ki elements (256 KB of float32, a quarter of L2), else the most rows that do."""
    cdef Py_ssize_t per_row = Cg * phases * Wq + 4 * Wq
    cdef Py_ssize_t fixed = Cg * phases * halo * Wq + 4 * (oW - Wq)
    return max(1, min(oH, (65536 - fixed) // per_row))


cdef void _stage_nchw_rows(floating *stage, const floating[:, :, :, ::1] x, Py_ssize_t n,
                           Py_ssize_t ih0, Py_ssize_t rows, Py_ssize_t Wp,
                           Py_ssize_t left) noexcept nogil:
    """stage[r, u, c] := x[n, c, ih0 + r, u - left] inside the image, else 0  (rows of Wp
    pixels, channels-last), by blocked transposes.  stage must be zero or hold rows staged
    with the same Wp and left: the padding columns are never written."""
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3], r, ih
    cdef Py_ssize_t width = min(W, Wp - left)   # columns past Wp are not read
    for r in range(rows):
        ih = ih0 + r
        if 0 <= ih < H and width > 0:
            to_channels_last(&x[n, 0, ih, 0], H * W, C, width, stage + (r * Wp + left) * C)
        elif not 0 <= ih < H:
            memset(stage + r * Wp * C, 0, Wp * C * sizeof(floating))


cdef void _forward_nchw_staged_block(const floating[:, :, :, ::1] x, const floating *w_t,
                                     Py_ssize_t kh, Py_ssize_t kw, const floating[::1] bias,
                                     floating[:, :, :, ::1] out, Py_ssize_t n, Py_ssize_t oh0,
                                     Py_ssize_t R, Geom p, const floating **xs,
                                     const floating **ws, floating *stage,
                                     floating *sums) noexcept nogil:
    """out[n, :, oh0:oh0+R, :] := bias + conv  for G == 1, as forward_nhwc's blocks: the
    input rows staged channels-last, _sum_staged_rows into channels-last sums, those
    transposed into the R rows of the output planes.  w_t: the weights as (C, kh, kw, K)."""
    cdef Py_ssize_t C = x.shape[1], K = out.shape[1], oH = out.shape[2], oW = out.shape[3]
    cdef Py_ssize_t Wp = (oW - 1) * p.sw + (kw - 1) * p.dw + 1
    _stage_nchw_rows(stage, x, n, oh0 * p.sh - p.pt, (R - 1) * p.sh + (kh - 1) * p.dh + 1, Wp,
                     p.pl)
    _sum_staged_rows(sums, stage, Wp, C, w_t, kw * K, K, kh * kw * K, &bias[0], K, kh, kw, oW,
                     R, p, xs, ws)
    from_channels_last(sums, oH * oW, K, R * oW, &out[n, 0, oh0, 0])


cdef int _forward_nchw_staged(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                              const floating[::1] bias, floating[:, :, :, ::1] out, Geom p,
                              Py_ssize_t nthreads) except -1:
    """forward_nchw of a single-group layer off the plane kernels: tasks (n, block of output
    rows) on _forward_nchw_staged_block, the weights transposed to (C, kh, kw, K) once."""
    cdef Py_ssize_t N = out.shape[0], K = out.shape[1], oH = out.shape[2], oW = out.shape[3]
    cdef Py_ssize_t C = x.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t taps = C * kh * kw, R, nrb, t, stage_size, per_thread
    stage_size = _staged_blocks(N, oH, C * ((oW - 1) * p.sw + (kw - 1) * p.dw + 1), kh, p,
                                nthreads, &R)
    nrb = _ceil_div(oH, R)
    per_thread = stage_size + R * oW * K
    cdef floating *w_t = <floating *> malloc(taps * K * sizeof(floating))
    cdef floating *buf = <floating *> calloc(nthreads * per_thread, sizeof(floating))  # staged clean
    cdef const floating **ptrs = <const floating **> malloc(nthreads * 2 * taps * sizeof(floating *))
    if w_t == NULL or buf == NULL or ptrs == NULL:
        free(w_t)
        free(buf)
        free(ptrs)
        raise MemoryError()
    try:
        with nogil:
            transpose(w_t, K, &weight[0, 0, 0, 0], taps, K, taps)
        with nogil, parallel(num_threads=nthreads):
            flush_denormals_enter()
            for t in prange(N * nrb, schedule="static"):
                _forward_nchw_staged_block(x, w_t, kh, kw, bias, out, t // nrb, (t % nrb) * R,
                                           min(R, oH - (t % nrb) * R), p,
                                           ptrs + threadid() * 2 * taps,
                                           ptrs + threadid() * 2 * taps + taps,
                                           buf + threadid() * per_thread,
                                           buf + threadid() * per_thread + stage_size)
            flush_denormals_exit()
    finally:
        free(ptrs)
        free(buf)
        free(w_t)
    return 0


def forward_nchw(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                 const floating[::1] bias, floating[:, :, :, ::1] out,
                 Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                 Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                 Py_ssize_t groups, int num_threads):
    """out := conv2d(x, weight) + bias  (NCHW)"""
    cdef Geom p = Geom(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t N = out.shape[0], oH = out.shape[2], oW = out.shape[3]
    cdef Py_ssize_t Cg = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t nthreads = max(num_threads, 1)
    cdef Py_ssize_t Wp = (oW - 1) * stride_w + (kw - 1) * dilation_w + 1
    cdef Py_ssize_t per_thread = Cg * kh * Wp
    cdef Py_ssize_t Kg = out.shape[1] // groups
    cdef Py_ssize_t t, R, nrb, L, Hq, Hb, Wq, nkb, kpt, k0, oh0, npos, nlast, VL
    cdef bint rows_staged
    cdef floating *buf
    cdef Py_ssize_t *jr
    cdef Py_ssize_t *pos
    cdef Py_ssize_t *last
    if N == 0:
        return
    if (kh == 1 and kw == 1 and stride_h == 1 and stride_w == 1 and groups == 1
            and oH == x.shape[2] and oW == x.shape[3]):
        # runs of pixels whose C input rows fill about 32 KB (in L1 at C = 64), whole steps of
        # 4 vectors of the tap kernel
        VL = FASTCONV_VBYTES() // sizeof(floating)
        R = max(4 * VL, 32768 // (Cg * sizeof(floating)) // (4 * VL) * (4 * VL))
        _forward_nchw_pointwise(x, weight, bias, out, nthreads, R)
        return
    # planes staged for the plane kernel: sh*sw components of Hq rows of Wq, for bands of R
    # output rows: all oH where they fit
    Hq = oH + (kh - 1) * dilation_h // stride_h
    Wq = oW + (kw - 1) * dilation_w // stride_w
    VL = FASTCONV_VBYTES() // sizeof(floating)
    R = _plane_band_rows(Cg, oH, oW, Hq - oH, Wq, stride_h * stride_w)
    # Strided single-group layers past the first ones run on the staged rows, not the
    # polyphase planes: 32 -> 64 at stride 2 to 16x16 0.93 ms against 1.14, 16 -> 32 0.52
    # against 0.70; first layers (3 channels) keep the planes (the 7x7 stem 5.2 against 7.1).
    rows_staged = (groups == 1 and Kg >= VL and Cg > _BANDED
                   and (stride_h > 1 or stride_w > 1))
    if (Cg <= _NARROW and not rows_staged and (
            Cg == 1 and Kg < 4 or R == oH
            or groups == 1 and Cg <= _BANDED and R >= 8 and oW >= VL)):
        # Depthwise, first and other narrow layers: tasks (n, group, run of output channels)
        # over whole planes, every tap one flat run over the staged input planes.  A task
        # takes all the group's channels (the planes staged once, not once per 4 channels:
        # an RGB stride-2 layer's 32 channels staged as often as they were multiplied) but
        # where that leaves fewer than 4 tasks per thread; else blocks of 4.  First layers
        # on planes too large (ImageNet's 224 x 224) take bands of R rows of them.
        if Cg == 1 and Kg < 4:
            R = oH
        nrb = _ceil_div(oH, R)
        Hb = R + Hq - oH    # staged rows of a band's planes
        kpt = Kg if N * groups * nrb >= 4 * nthreads else 4
        nkb = _ceil_div(Kg, kpt)
        # staged planes, then the output rows at pitch Wq (_taps_flat's, in whole vectors)
        L = _ceil_div((R - 1) * Wq + oW, VL) * VL
        per_thread = Cg * stride_h * stride_w * Hb * Wq + min(Kg, 4) * L
        buf = <floating *> calloc(nthreads * per_thread, sizeof(floating))  # staged clean
        if buf == NULL:
            raise MemoryError()
        jr = NULL
        pos = NULL
        npos = 0
        last = NULL
        nlast = 0
        try:
            jr = _plane_offsets(Cg, kh, kw, p, Hb, Wq)
            if oW * sizeof(floating) >= FASTCONV_VBYTES():
                pos = _row_positions(R, oW, Wq, VL, &npos)
                last = pos
                nlast = npos
                if oH % R:
                    last = _row_positions(oH % R, oW, Wq, VL, &nlast)
            with nogil, parallel(num_threads=nthreads):
                flush_denormals_enter()
                for t in prange(N * groups * nrb * nkb, schedule="static"):
                    # t = ((n * groups + g) * nrb + band) * nkb + k block
                    k0 = t // (nrb * nkb) % groups * Kg + (t % nkb) * kpt
                    oh0 = t // nkb % nrb * R
                    _forward_nchw_plane(x, weight, bias, out, t // (groups * nrb * nkb), k0,
                                        min(kpt, Kg - (t % nkb) * kpt), oh0,
                                        min(R, oH - oh0), p, jr,
                                        buf + threadid() * per_thread,
                                        buf + (threadid() + 1) * per_thread - min(Kg, 4) * L,
                                        Hb, Wq, pos if oh0 + R <= oH else last,
                                        npos if oh0 + R <= oH else nlast)
                flush_denormals_exit()
        finally:
            if last != pos:
                free(last)
            free(pos)
            free(jr)
            free(buf)
        return
    if groups == 1 and Kg >= VL:
        _forward_nchw_staged(x, weight, bias, out, p, nthreads)
        return
    if out.shape[1] // groups < 4:
        # Few output channels per group (depthwise): no reuse to win by staging input rows.
        jr = <Py_ssize_t *> malloc(2 * kw * sizeof(Py_ssize_t))
        if jr == NULL:
            raise MemoryError()
        try:
            _fill_ranges(jr, jr + kw, kw, oW, x.shape[3], stride_w, pad_left, dilation_w)
            with nogil, parallel(num_threads=nthreads):
                flush_denormals_enter()
                for t in prange(N * oH, schedule="static"):
                    _forward_nchw_taps_row(x, weight, bias, out, t // oH, t % oH, p, jr, jr + kw)
                flush_denormals_exit()
        finally:
            free(jr)
        return
    if stride_h == 1 and stride_w == 1:
        # Flat blocks of R output rows, about 1024 outputs each, enough blocks for the threads.
        R = max(1, min(oH, 1024 // Wp))
        while R > 1 and N * _ceil_div(oH, R) < 4 * nthreads:
            R = _ceil_div(R, 2)
        nrb = _ceil_div(oH, R)
        L = (R - 1) * Wp + oW
        per_thread = Cg * (R + (kh - 1) * dilation_h) * Wp + 4 * L
        buf = <floating *> malloc(nthreads * per_thread * sizeof(floating))
        if buf == NULL:
            raise MemoryError()
        try:
            with nogil, parallel(num_threads=nthreads):
                flush_denormals_enter()
                for t in prange(N * nrb, schedule="static"):
                    _forward_nchw_flat(x, weight, bias, out, t // nrb, (t % nrb) * R,
                                       min(R, oH - (t % nrb) * R), p,
                                       buf + threadid() * per_thread,
                                       buf + threadid() * per_thread + per_thread - 4 * L, Wp)
                flush_denormals_exit()
        finally:
            free(buf)
        return
    buf = <floating *> malloc(nthreads * per_thread * sizeof(floating))
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil, parallel(num_threads=nthreads):
            flush_denormals_enter()
            for t in prange(N * oH, schedule="static"):
                _forward_nchw_row(x, weight, bias, out, t // oH, t % oH, p,
                                  buf + threadid() * per_thread, Wp)
            flush_denormals_exit()
    finally:
        free(buf)


# --------------------------------------------------------------------------- NCHW grad_input

cdef void _grad_input_nchw_row(const floating[:, :, :, ::1] grad_output,
                               const floating[:, :, :, ::1] weight,
                               floating[:, :, :, ::1] grad_input,
                               Py_ssize_t n, Py_ssize_t ih, Geom p,
                               const Py_ssize_t *jlo, const Py_ssize_t *jhi) noexcept nogil:
    """grad_input[n, :, ih, :] := sum_{k, i, j} w[k, c, i, j] * grad_output[n, k, oh, ow] (adjoint)"""
    cdef Py_ssize_t C = grad_input.shape[1], W = grad_input.shape[3]
    cdef Py_ssize_t oH = grad_output.shape[2], oW = grad_output.shape[3]
    cdef Py_ssize_t Cg = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t Kg = grad_output.shape[1] // p.G
    cdef Py_ssize_t c, g, cc, k, k0, i, j, num, oh, off, iw, cnt, q
    cdef floating *dst
    cdef const floating *src[4]
    cdef const floating *endp
    cdef floating ws[4]
    cdef Py_ssize_t los[4]
    cdef Py_ssize_t his[4]
    for c in range(C):
        g = c // Cg
        cc = c - g * Cg
        dst = &grad_input[n, c, ih, 0]
        for iw in range(W):
            dst[iw] = 0
        cnt = 0
        for i in range(kh):
            num = ih + p.pt - i * p.dh
            if num < 0:
                break
            if p.sh != 1:
                if num % p.sh != 0:
                    continue
                oh = num // p.sh
            else:
                oh = num
            if oh >= oH:
                continue
            if p.sw == 1:
                # gather in input-column space: dst[iw] += w * go[iw - off]
                for k in range(g * Kg, (g + 1) * Kg):
                    for j in range(kw):
                        if jlo[j] >= jhi[j]:
                            continue
                        off = j * p.dw - p.pl
                        src[cnt] = &grad_output[n, k, oh, jlo[j]]
                        endp = &grad_output[n, k, oh, jhi[j] - 1]
                        endp = &grad_input[n, c, ih, jhi[j] - 1 + off]
                        ws[cnt] = weight[k, cc, i, j]
                        los[cnt] = jlo[j] + off
                        his[cnt] = jhi[j] + off
                        cnt = cnt + 1
                        if cnt == 4:
                            _flush_taps(dst, src, ws, los, his, 4, 1)
                            cnt = 0
            else:
                # scatter in output-column space: dst[ow*sw + off] += w * go[ow]
                for j in range(kw):
                    if jlo[j] >= jhi[j]:
                        continue
                    off = j * p.dw - p.pl
                    endp = &grad_input[n, c, ih, (jhi[j] - 1) * p.sw + off]
                    k = g * Kg
                    while k + 4 <= (g + 1) * Kg:
                        _scatter4(&grad_input[n, c, ih, jlo[j] * p.sw + off],
                                  &grad_output[n, k, oh, jlo[j]],
                                  &grad_output[n, k + 1, oh, jlo[j]],
                                  &grad_output[n, k + 2, oh, jlo[j]],
                                  &grad_output[n, k + 3, oh, jlo[j]],
                                  weight[k, cc, i, j], weight[k + 1, cc, i, j],
                                  weight[k + 2, cc, i, j], weight[k + 3, cc, i, j],
                                  jhi[j] - jlo[j], p.sw)
                        k = k + 4
                    while k < (g + 1) * Kg:
                        _scatter1(&grad_input[n, c, ih, jlo[j] * p.sw + off],
                                  &grad_output[n, k, oh, jlo[j]], weight[k, cc, i, j],
                                  jhi[j] - jlo[j], p.sw)
                        k = k + 1
        if cnt:
            _flush_taps(dst, src, ws, los, his, cnt, 1)


cdef void _grad_input_nchw_phases(const floating[:, :, :, ::1] grad_output,
                                  const floating[:, :, :, ::1] weight,
                                  floating[:, :, :, ::1] grad_input, Py_ssize_t n, Py_ssize_t c,
                                  Geom p, const Py_ssize_t *tap, const Py_ssize_t *off,
                                  const Py_ssize_t *first, Py_ssize_t Hq, Py_ssize_t Wq,
                                  Py_ssize_t Mi, Py_ssize_t Mj, floating *Gp, floating *D,
                                  floating *wq) noexcept nogil:
    """grad_input[n, c] := the adjoint of a strided depthwise layer, phase by phase

    Padded input pixel (r, u) = (ih + pt, iw + pl) lies in polyphase component (a, b) =
    (r % sh, u % sw) at (r', u') = (r // sh, u // sw), and only the taps (i, j) with
    ((i*dh) % sh, (j*dw) % sw) == (a, b) reach it, from output (r' - i*dh // sh,
    u' - j*dw // sw).  So each component is a stride-1 correlation of the grad_output plane
    with its own few taps: staged with Mi rows and Mj columns of zeros before (Gp, pitch
    Wg = Wq + Mj), component (a, b) at t = r'*Wg + u' is sum_q w_q * Gp[t + off[q]] for the
    taps tap[first[ph]:first[ph + 1]] of ph = a*sw + b, every tap a flat run (_taps_flat
    into D).  The components are then interleaved into the input-gradient rows."""
    cdef Py_ssize_t H = grad_input.shape[2], W = grad_input.shape[3], kw = weight.shape[3]
    cdef Py_ssize_t oH = grad_output.shape[2], oW = grad_output.shape[3]
    cdef Py_ssize_t sh = p.sh, sw = p.sw, Wg = Wq + Mj, VL = FASTCONV_VBYTES() // sizeof(floating)
    # flat runs in whole vectors, overrunning into the next component (computed after) or
    # the caller's VL elements of slack after the last
    cdef Py_ssize_t L = _ceil_div((Hq - 1) * Wg + Wq, VL) * VL
    cdef Py_ssize_t ph, q, nt, ih, r, a, b, rq, lo, hi, end, u, v, e0
    cdef floating zero = 0
    cdef floating *row
    cdef const floating *d0
    cdef const floating *d1
    _stage_plane(Gp, &grad_output[n, c, 0, 0], oH, oW, Hq + Mi, Wg, Mi, Mj,
                 &grad_output[n, c + 1, 0, 0] if c + 1 < grad_output.shape[1] else NULL, True)
    for ph in range(sh * sw):
        nt = first[ph + 1] - first[ph]
        for q in range(nt):
            wq[q] = weight[c, 0, tap[first[ph] + q] // kw, tap[first[ph] + q] % kw]
        if nt > 0:
            _taps_flat(D + ph * Hq * Wg, 0, Gp, off + first[ph], wq, nt, &zero, 1, L)
    for ih in range(H):
        row = &grad_input[n, c, ih, 0]
        r = ih + p.pt
        a = r % sh
        rq = r // sh
        if rq >= Hq:
            for u in range(W):
                row[u] = 0
            continue
        if sw == 2 and first[a * 2 + 1] > first[a * 2] and first[a * 2 + 2] > first[a * 2 + 1]:
            # row[2v + e] = component (e + pl) % 2 at column v + (e + pl) // 2, as one
            # interleaving loop (GCC vectorises the pair of stores)
            e0 = p.pl % 2
            d0 = D + (a * 2 + e0) * Hq * Wg + rq * Wg + p.pl // 2
            d1 = D + (a * 2 + 1 - e0) * Hq * Wg + rq * Wg + (p.pl + 1) // 2
            hi = max(0, min(W // 2, Wq - (p.pl + 1) // 2))
            for v in range(hi):
                row[2 * v] = d0[v]
                row[2 * v + 1] = d1[v]
            lo = 2 * hi
        else:
            lo = 0
        for b in range(sw):
            # columns iw = u'*sw + b - pl in [lo, W): u' from ceil((lo + pl - b) / sw)
            u = max(0, _ceil_div(lo + p.pl - b, sw))
            end = max(u, _ceil_div(W + p.pl - b, sw))
            hi = max(u, min(end, Wq))
            if first[a * sw + b + 1] == first[a * sw + b]:
                hi = u
            d0 = D + (a * sw + b) * Hq * Wg + rq * Wg
            for v in range(u, hi):
                row[v * sw + b - p.pl] = d0[v]
            for v in range(hi, end):
                row[v * sw + b - p.pl] = 0


cdef Py_ssize_t *_phase_taps(Py_ssize_t kh, Py_ssize_t kw, Geom p, Py_ssize_t Mi, Py_ssize_t Mj,
                             Py_ssize_t Wg) except NULL:
    """For _grad_input_nchw_phases: first[ph] (sh*sw + 1 entries), then the taps i*kw + j of
    each component ph = ((i*dh) % sh)*sw + (j*dw) % sw in turn, then their offsets
    (Mi - i*dh // sh)*Wg + Mj - j*dw // sw into the staged grad_output plane."""
    cdef Py_ssize_t S = p.sh * p.sw, T = kh * kw, ph, i, j, q = 0
    cdef Py_ssize_t *first = <Py_ssize_t *> malloc((S + 1 + 2 * T) * sizeof(Py_ssize_t))
    if first == NULL:
        raise MemoryError()
    for ph in range(S):
        first[ph] = q
        for i in range(kh):
            for j in range(kw):
                if (i * p.dh % p.sh) * p.sw + j * p.dw % p.sw == ph:
                    first[S + 1 + q] = i * kw + j
                    first[S + 1 + T + q] = (Mi - i * p.dh // p.sh) * Wg + Mj - j * p.dw // p.sw
                    q = q + 1
    first[S] = q
    return first


def grad_input_nchw(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] weight,
                    floating[:, :, :, ::1] grad_input,
                    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                    Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                    Py_ssize_t groups, int num_threads):
    """grad_input := conv2d_input adjoint of grad_output  (NCHW)"""
    cdef Geom p = Geom(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t N = grad_input.shape[0], H = grad_input.shape[2], kw = weight.shape[3]
    cdef Py_ssize_t K = weight.shape[0], Cg = weight.shape[1], kh = weight.shape[2]
    cdef Py_ssize_t t
    cdef Py_ssize_t *jr
    if N == 0:
        return
    if stride_h == 1 and stride_w == 1:
        # Stride 1: the adjoint is a forward correlation of grad_output with the flipped,
        # group-transposed kernel w'[c, k, i, j] = w[k, c, kh-1-i, kw-1-j] and padding
        # (k-1)*d - pad (may be negative: forward_nchw handles that).
        w_t = np.ascontiguousarray(
            np.asarray(weight).reshape(groups, K // groups, Cg, kh, kw)
            .transpose(0, 2, 1, 3, 4)[:, :, :, ::-1, ::-1]
        ).reshape(groups * Cg, K // groups, kh, kw)
        forward_nchw(grad_output, w_t, np.zeros(groups * Cg, dtype=w_t.dtype), grad_input,
                     1, 1, (kh - 1) * dilation_h - pad_top, (kw - 1) * dilation_w - pad_left,
                     dilation_h, dilation_w, groups, num_threads)
        return
    if Cg == 1 and K == groups:
        _grad_input_nchw_depthwise_strided(grad_output, weight, grad_input, p, num_threads)
        return
    jr = <Py_ssize_t *> malloc(2 * kw * sizeof(Py_ssize_t))
    if jr == NULL:
        raise MemoryError()
    try:
        _fill_ranges(jr, jr + kw, kw, grad_output.shape[3], grad_input.shape[3], stride_w,
                     pad_left, dilation_w)
        with nogil, parallel(num_threads=max(num_threads, 1)):
            flush_denormals_enter()
            for t in prange(N * H, schedule="static"):
                _grad_input_nchw_row(grad_output, weight, grad_input, t // H, t % H, p, jr, jr + kw)
            flush_denormals_exit()
    finally:
        free(jr)


cdef _grad_input_nchw_depthwise_strided(const floating[:, :, :, ::1] grad_output,
                                        const floating[:, :, :, ::1] weight,
                                        floating[:, :, :, ::1] grad_input, Geom p,
                                        int num_threads):
    """grad_input of a strided depthwise layer: tasks (n, c) over whole planes, each by its
    polyphase components (_grad_input_nchw_phases)."""
    cdef Py_ssize_t N = grad_input.shape[0], C = grad_input.shape[1]
    cdef Py_ssize_t kh = weight.shape[2], kw = weight.shape[3], oH = grad_output.shape[2]
    cdef Py_ssize_t Hq = oH + (kh - 1) * p.dh // p.sh
    cdef Py_ssize_t Wq = grad_output.shape[3] + (kw - 1) * p.dw // p.sw
    cdef Py_ssize_t Mi = (kh - 1) * p.dh // p.sh, Mj = (kw - 1) * p.dw // p.sw, Wg = Wq + Mj
    cdef Py_ssize_t S = p.sh * p.sw, T = kh * kw, VL = FASTCONV_VBYTES() // sizeof(floating)
    # staged grad_output plane (Mj + VL zeros after: flat runs overshoot), components (VL
    # elements of slack after), taps
    cdef Py_ssize_t per_thread = (Hq + Mi) * Wg + Mj + VL + S * Hq * Wg + VL + T
    cdef Py_ssize_t t, nthreads = max(num_threads, 1)
    cdef Py_ssize_t *first = NULL
    cdef floating *buf = <floating *> calloc(nthreads * per_thread, sizeof(floating))  # clean
    if buf == NULL:
        raise MemoryError()
    try:
        first = _phase_taps(kh, kw, p, Mi, Mj, Wg)
        with nogil, parallel(num_threads=nthreads):
            flush_denormals_enter()
            for t in prange(N * C, schedule="static"):
                _grad_input_nchw_phases(grad_output, weight, grad_input, t // C, t % C, p,
                                        first + S + 1, first + S + 1 + T, first, Hq, Wq, Mi,
                                        Mj, buf + threadid() * per_thread,
                                        buf + threadid() * per_thread + (Hq + Mi) * Wg + Mj + VL,
                                        buf + (threadid() + 1) * per_thread - T)
            flush_denormals_exit()
    finally:
        free(first)
        free(buf)


# --------------------------------------------------------------------------- NCHW grad_weight

cdef void _grad_weight_nchw_block(const floating[:, :, :, ::1] grad_output,
                                  const floating[:, :, :, ::1] x,
                                  floating[:, :, :, ::1] grad_weight,
                                  Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t c0, Py_ssize_t c1,
                                  Geom p, const Py_ssize_t *jlo,
                                  const Py_ssize_t *jhi) noexcept nogil:
    """grad_weight[k0:k1, c0:c1] := sum_{n, oh, ow} grad_output[n, k, oh, ow] * x[n, c, ih, iw]"""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[2]
    cdef Py_ssize_t oH = grad_output.shape[2]
    cdef Py_ssize_t Cg = grad_weight.shape[1], kh = grad_weight.shape[2], kw = grad_weight.shape[3]
    cdef Py_ssize_t Kg = grad_output.shape[1] // p.G
    cdef Py_ssize_t g = k0 // Kg
    cdef Py_ssize_t n, c, k, oh, i, j, ih, ih0, i_lo, i_hi, off, m
    cdef const floating *xr
    cdef const floating *endp
    cdef floating s[4]
    for k in range(k0, k1):
        for c in range(c0, c1):
            for i in range(kh):
                for j in range(kw):
                    grad_weight[k, c, i, j] = 0
    for n in range(N):
        for c in range(c0, c1):
            for oh in range(oH):
                ih0 = oh * p.sh - p.pt
                _valid_range(kh, H, p.dh, ih0, &i_lo, &i_hi)
                for i in range(i_lo, i_hi):
                    ih = ih0 + i * p.dh
                    for j in range(kw):
                        m = jhi[j] - jlo[j]
                        if m <= 0:
                            continue
                        off = j * p.dw - p.pl
                        xr = &x[n, g * Cg + c, ih, jlo[j] * p.sw + off]
                        endp = &x[n, g * Cg + c, ih, (jhi[j] - 1) * p.sw + off]
                        endp = &grad_output[n, k0, oh, jhi[j] - 1]
                        if k1 - k0 == 4:
                            _dot4(&grad_output[n, k0, oh, jlo[j]],
                                  &grad_output[n, k0 + 1, oh, jlo[j]],
                                  &grad_output[n, k0 + 2, oh, jlo[j]],
                                  &grad_output[n, k0 + 3, oh, jlo[j]], xr, m, p.sw, s)
                            grad_weight[k0, c, i, j] += s[0]
                            grad_weight[k0 + 1, c, i, j] += s[1]
                            grad_weight[k0 + 2, c, i, j] += s[2]
                            grad_weight[k0 + 3, c, i, j] += s[3]
                        else:
                            for k in range(k0, k1):
                                grad_weight[k, c, i, j] += _dot1(
                                    &grad_output[n, k, oh, jlo[j]], xr, m, p.sw)


cdef void _grad_weight_nchw_plane(const floating[:, :, :, ::1] grad_output,
                                  const floating[:, :, :, ::1] x, floating *part, Py_ssize_t k0,
                                  Py_ssize_t nk, Py_ssize_t n0, Py_ssize_t n1, Geom p,
                                  Py_ssize_t Cg, Py_ssize_t kh, Py_ssize_t kw,
                                  const Py_ssize_t *off, floating *P, floating *G, floating *acc,
                                  Py_ssize_t Hq, Py_ssize_t Wq) noexcept nogil:
    """part[((k - k0)*Cg + c)*kh*kw + i*kw + j] := sum_{n0 <= n < n1, oh, ow}
    go[n, k, oh, ow] * x[n, g*Cg + c, ih, iw]

    For the nk output channels k0 <= k < k0 + nk of one group g, few C/G.  The group's input
    planes are staged as in _forward_nchw_plane, once per sample, and the grad_output planes
    of each block of 4 channels at the same pitch Wq, zero beyond oW, so every tap is one
    flat dot product over the plane (G and its planes vector aligned: the grad_output loads
    never straddle cache lines); nq taps (a kernel row of 5x5 or 3x3) share each grad_output
    load, and a block's 4 channels each input load (a last block of fewer goes channel by
    channel).  The staged planes are followed by VL zeros, so the dots run in whole vectors;
    they add vectors into acc (4*nq entries of VL lanes per (dots call, input channel, tap
    chunk)), summed once at the end.  The columns beyond oW multiply zeros of G by input
    values: an infinity there makes a NaN, which the caller detects."""
    cdef Py_ssize_t oH = grad_output.shape[2], oW = grad_output.shape[3]
    cdef Py_ssize_t Kg = grad_output.shape[1] // p.G
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating), cs = p.sh * p.sw * Hq * Wq
    cdef Py_ssize_t Gs = _ceil_div(oH * Wq + VL, VL) * VL
    cdef Py_ssize_t T = kh * kw, nq = _dot_taps(T), nch = _ceil_div(T, nq), slot = 4 * nq * VL
    cdef Py_ssize_t m = _ceil_div((oH - 1) * Wq + oW, VL) * VL
    # dots calls: one per full block of 4 channels, then one per channel left over
    cdef Py_ssize_t nfull = nk // 4, ncalls = nfull + nk % 4
    cdef Py_ssize_t n, q, q0, q1, h, k, kb, b, b0, b1, c, l, first, width
    cdef floating s
    cdef floating *a
    for q in range(ncalls * Cg * nch * slot):
        acc[q] = 0
    for l in range(VL):
        P[Cg * cs + l] = 0
    for k in range(4):
        for l in range(VL):
            G[k * Gs + oH * Wq + l] = 0
    for n in range(n0, n1):
        _stage_planes(P, x, n, k0 // Kg * Cg, Cg, Hq, Wq, p, kh, kw)
        for kb in range(0, nk, 4):
            for k in range(min(4, nk - kb)):
                _stage_plane(G + k * Gs, &grad_output[n, k0 + kb + k, 0, 0], oH, oW, oH, Wq,
                             0, 0, &grad_output[n + 1, k0 + kb + k, 0, 0] if n + 1 < n1 else NULL,
                             True)
            b0, b1 = (kb // 4, kb // 4 + 1) if kb < 4 * nfull else (nfull, ncalls)
            for b in range(b0, b1):
                first = 0 if b < nfull else b - nfull   # its first staged plane
                for c in range(Cg):
                    for h in range(nch):  # nch chunks of <= nq taps, as equal as possible
                        q0 = T * h // nch
                        q1 = T * (h + 1) // nch
                        _dots(G + first * Gs, Gs, P + c * cs, off + q0, q1 - q0,
                              4 if b < nfull else 1, nq, m, acc + ((b * Cg + c) * nch + h) * slot)
    for b in range(ncalls):
        width = 4 if b < nfull else 1
        first = 4 * b if b < nfull else 4 * nfull + b - nfull   # its first channel
        for c in range(Cg):
            for h in range(nch):
                q0 = T * h // nch
                q1 = T * (h + 1) // nch
                for k in range(width):
                    for q in range(q0, q1):
                        a = acc + ((b * Cg + c) * nch + h) * slot + (nq * k + q - q0) * VL
                        s = 0
                        for l in range(VL):
                            s = s + a[l]
                        part[((first + k) * Cg + c) * T + q] = s


def grad_weight_nchw(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] x,
                     floating[:, :, :, ::1] grad_weight,
                     Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                     Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                     Py_ssize_t groups, int num_threads):
    """grad_weight := sum_n correlation of x with grad_output  (NCHW)"""
    cdef Geom p = Geom(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t K = grad_weight.shape[0], Cg = grad_weight.shape[1], kw = grad_weight.shape[3]
    cdef Py_ssize_t Kg = K // groups
    cdef Py_ssize_t nkb = _ceil_div(Kg, 4)
    cdef Py_ssize_t nthreads = max(num_threads, 1)
    cdef Py_ssize_t ncb = 1, cbs, ntasks, t, g, kb, cb, k0, k1, c0, c1
    cdef Py_ssize_t N = x.shape[0], oH = grad_output.shape[2], oW = grad_output.shape[3]
    cdef Py_ssize_t kh = grad_weight.shape[2], Hq, Wq, cs, per_thread, nbs, nsb, VL, nacc, kpt
    cdef Py_ssize_t *jr
    cdef floating *buf
    cdef Py_ssize_t gof
    cdef void *raw
    cdef floating[:, ::1] pq
    Hq = oH + (kh - 1) * dilation_h // stride_h
    Wq = oW + (kw - 1) * dilation_w // stride_w
    cs = stride_h * stride_w * Hq * Wq
    if N > 0 and (Cg == 1 or Cg <= _NARROW and Cg * cs <= 65536):
        # Depthwise, first and other narrow layers: tasks (sample chunk, run of output
        # channels of a group) fixed by the shape, summed in order after the parallel
        # region (bitwise thread independent).  A run is a block of 4 channels at stride 1;
        # strided, as many blocks as keep the vector sums within 64 Ki elements, so that
        # the polyphase components are staged once a run (an RGB stride-2 layer's 32
        # channels staged them 8 times: 0.43 -> 0.30 ms).  At stride 1 staging is a copy,
        # and more blocks lose more to sums leaving the L1 cache than they save
        # (fmnist_conv1 0.65 -> 0.69 ms).
        VL = FASTCONV_VBYTES() // sizeof(floating)
        nacc = Cg * _ceil_div(kh * kw, _dot_taps(kh * kw)) * 4 * _dot_taps(kh * kw) * VL
        kpt = min(Kg, 4 if stride_h == stride_w == 1 else max(4, 65536 // nacc // 4 * 4))
        nkb = _ceil_div(Kg, kpt)
        nbs = _chunk_size(N, _ceil_div(64, groups * nkb))
        nsb = _ceil_div(N, nbs)
        # input planes (VL zeros after), 4 grad_output planes (each with VL zeros after),
        # vector sums (per dots call: a block of 4 channels, or one of the 3 left over); each
        # part vector aligned
        nacc = nacc * (kpt // 4 + 3)
        gof = _ceil_div(Cg * cs + VL, VL) * VL
        per_thread = gof + 4 * _ceil_div(oH * Wq + VL, VL) * VL + nacc
        part = np.empty((nsb, K * Cg * kh * kw), dtype=np.asarray(x).dtype)
        pq = part
        raw = calloc(nthreads * per_thread + VL, sizeof(floating))  # staged clean
        if raw == NULL:
            raise MemoryError()
        buf = <floating *> raw + _align_skip(raw, sizeof(floating))
        jr = NULL
        try:
            jr = _plane_offsets(1, kh, kw, p, Hq, Wq)
            with nogil, parallel(num_threads=nthreads):
                flush_denormals_enter()
                for t in prange(nsb * groups * nkb, schedule="static"):
                    k0 = (t % (groups * nkb)) // nkb * Kg + (t % nkb) * kpt
                    _grad_weight_nchw_plane(grad_output, x,
                                            &pq[t // (groups * nkb), k0 * Cg * kh * kw],
                                            k0, min(kpt, Kg - (t % nkb) * kpt),
                                            (t // (groups * nkb)) * nbs,
                                            min(N, (t // (groups * nkb) + 1) * nbs), p, Cg,
                                            kh, kw, jr, buf + threadid() * per_thread,
                                            buf + threadid() * per_thread + gof,
                                            buf + (threadid() + 1) * per_thread - nacc, Hq, Wq)
                flush_denormals_exit()
        finally:
            free(jr)
            free(raw)
        total = part.sum(axis=0)
        if np.isfinite(total).all():
            np.asarray(grad_weight).reshape(-1)[...] = total
            return
        # An infinity met a zero column of a staged grad_output plane (0 * inf = NaN):
        # recompute below, where only real products are summed.
    # Split input channels too when there are few (group, k-block) tasks.  The sum order of
    # every entry (n, oh, ow) does not depend on the split, so results do not either.
    if groups * nkb < 8 * nthreads:
        ncb = min(Cg, _ceil_div(8 * nthreads, groups * nkb))
    cbs = _ceil_div(Cg, ncb)
    ncb = _ceil_div(Cg, cbs)
    ntasks = groups * nkb * ncb
    jr = <Py_ssize_t *> malloc(2 * kw * sizeof(Py_ssize_t))
    if jr == NULL:
        raise MemoryError()
    try:
        _fill_ranges(jr, jr + kw, kw, grad_output.shape[3], x.shape[3], stride_w, pad_left,
                     dilation_w)
        with nogil, parallel(num_threads=nthreads):
            flush_denormals_enter()
            for t in prange(ntasks, schedule="static"):
                g = t // (nkb * ncb)
                kb = (t // ncb) % nkb
                cb = t % ncb
                k0 = g * Kg + kb * 4
                k1 = min(k0 + 4, (g + 1) * Kg)
                c0 = cb * cbs
                c1 = min(c0 + cbs, Cg)
                _grad_weight_nchw_block(grad_output, x, grad_weight, k0, k1, c0, c1, p, jr, jr + kw)
            flush_denormals_exit()
    finally:
        free(jr)


# --------------------------------------------------------------------------- NHWC forward

cdef void _forward_nhwc_row(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                            const floating[::1] bias, floating[:, :, :, ::1] out,
                            Py_ssize_t n, Py_ssize_t oh, Geom p,
                            const Py_ssize_t *jlo, const Py_ssize_t *jhi) noexcept nogil:
    """out[n, oh, :, :] := bias + sum_{i, j, c} x[n, ih, iw, c] * w[i, j, c, :]  (general groups)"""
    cdef Py_ssize_t H = x.shape[1], C = x.shape[3]
    cdef Py_ssize_t oW = out.shape[2], K = out.shape[3]
    cdef Py_ssize_t kh = weight.shape[0], kw = weight.shape[1], Cg = weight.shape[2]
    cdef Py_ssize_t G = p.G, Kg = K // p.G
    cdef Py_ssize_t ih0 = oh * p.sh - p.pt
    cdef Py_ssize_t i_lo, i_hi, ow, k, i, j, ih, iw, g, cc
    cdef floating *dst
    cdef const floating *xp
    _valid_range(kh, H, p.dh, ih0, &i_lo, &i_hi)
    for ow in range(oW):
        dst = &out[n, oh, ow, 0]
        for k in range(K):
            dst[k] = bias[k]
        for i in range(i_lo, i_hi):
            ih = ih0 + i * p.dh
            for j in range(kw):
                if ow < jlo[j] or ow >= jhi[j]:
                    continue
                iw = ow * p.sw - p.pl + j * p.dw
                xp = &x[n, ih, iw, 0]
                for g in range(G):
                    cc = 0
                    while cc + 4 <= Cg:
                        _axpy4(dst + g * Kg, &weight[i, j, cc, g * Kg],
                               &weight[i, j, cc + 1, g * Kg], &weight[i, j, cc + 2, g * Kg],
                               &weight[i, j, cc + 3, g * Kg], xp[g * Cg + cc],
                               xp[g * Cg + cc + 1], xp[g * Cg + cc + 2], xp[g * Cg + cc + 3],
                               Kg, 1)
                        cc = cc + 4
                    while cc < Cg:
                        _axpy1(dst + g * Kg, &weight[i, j, cc, g * Kg], xp[g * Cg + cc], Kg, 1)
                        cc = cc + 1


cdef inline void _stage_nhwc_row(floating *row, const floating[:, :, :, ::1] x, Py_ssize_t n,
                                 Py_ssize_t ih, Py_ssize_t Wp, Py_ssize_t left) noexcept nogil:
    """row[u, c] := x[n, ih, u - left, c] inside the image, else 0  (Wp pixels)"""
    cdef Py_ssize_t H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef bint inside = 0 <= ih < H
    _fill_padded_row(row, &x[n, ih if inside else 0, 0, 0], Wp * C, left * C,
                     W * C if inside else 0)


cdef void _stage_nhwc_rows(floating *stage, const floating[:, :, :, ::1] x, Py_ssize_t n,
                           Py_ssize_t ih0, Py_ssize_t rows, Py_ssize_t Wp,
                           Py_ssize_t left) noexcept nogil:
    """stage[r, u, c] := x[n, ih0 + r, u - left, c] inside the image, else 0  (rows of Wp pixels)

    stage must be zero or hold rows staged with the same Wp and left: an image row that fits
    inside, at least a vector long, is copied in whole vectors and its padding (zero) kept."""
    cdef Py_ssize_t H = x.shape[1], W = x.shape[2], C = x.shape[3], r, ih
    cdef bint fits = (0 <= left and left + W <= Wp
                      and W * C * <Py_ssize_t> sizeof(floating) >= FASTCONV_VBYTES())
    for r in range(rows):
        ih = ih0 + r
        if fits and 0 <= ih < H:
            if floating is float:
                fastconv_copy_rows_f(stage + (r * Wp + left) * C, 0, &x[n, ih, 0, 0], 0, 1,
                                     W * C, NULL)
            else:
                fastconv_copy_rows_d(stage + (r * Wp + left) * C, 0, &x[n, ih, 0, 0], 0, 1,
                                     W * C, NULL)
        else:
            _stage_nhwc_row(stage + r * Wp * C, x, n, ih, Wp, left)


cdef void _sum_staged_rows(floating *d, const floating *stage, Py_ssize_t Wp, Py_ssize_t C,
                           const floating *w, Py_ssize_t si, Py_ssize_t sj, Py_ssize_t sc,
                           const floating *bias, Py_ssize_t K, Py_ssize_t kh, Py_ssize_t kw,
                           Py_ssize_t oW, Py_ssize_t R, Geom p, const floating **xs,
                           const floating **ws) noexcept nogil:
    """d[(r*oW + ow)*K + k] := bias[k] + sum_{i, j, c} w[i*si + j*sj + c*sc + k]
                                 * stage[((r*sh + i*dh)*Wp + ow*sw + j*dw)*C + c]
    for r < R, ow < oW: R output rows of a single-group layer from its input rows, staged
    channels-last and zero padded (Wp pixels a row), so every column has every tap (the
    padding takes part in the products, as in the NCHW plane kernels: 0 * Inf is NaN there
    too).  One broadcast input value per tap (i, j, c), vectorised over k: _bcast_pixels's
    register blocks, an implicit GEMM with no im2col columns and no packing."""
    cdef Py_ssize_t r, i, j, c, nt = 0
    for i in range(kh):  # the taps of row 0; row r's are r*sh staged rows on
        for j in range(kw):
            for c in range(C):
                xs[nt] = stage + (i * p.dh * Wp + j * p.dw) * C + c
                ws[nt] = w + i * si + j * sj + c * sc
                nt = nt + 1
    for r in range(R):
        _bcast_pixels(d + r * oW * K, xs, ws, nt, bias, K, p.sw * C, r * p.sh * Wp * C, oW)


cdef Py_ssize_t _staged_blocks(Py_ssize_t N, Py_ssize_t oH, Py_ssize_t row_size, Py_ssize_t kh,
                               Geom p, Py_ssize_t nthreads, Py_ssize_t *R) noexcept nogil:
    """Output rows R per block of _sum_staged_rows's tasks (whole images unless there are
    too few for the threads, or their staged input rows of row_size elements outgrow
    _ROW_STAGE); returns the staged elements of a block."""
    cdef Py_ssize_t nrb = min(oH, _ceil_div(4 * nthreads, N))
    R[0] = _ceil_div(oH, nrb)
    R[0] = max(1, min(R[0], (_ROW_STAGE // row_size - (kh - 1) * p.dh - 1) // p.sh + 1))
    return ((R[0] - 1) * p.sh + (kh - 1) * p.dh + 1) * row_size


cdef void _forward_nhwc_staged_block(const floating[:, :, :, ::1] x,
                                     const floating[:, :, :, ::1] weight,
                                     const floating[::1] bias, floating[:, :, :, ::1] out,
                                     Py_ssize_t n, Py_ssize_t oh0, Py_ssize_t R, Geom p,
                                     const floating **xs, const floating **ws,
                                     floating *stage) noexcept nogil:
    """out[n, oh0:oh0+R, :, :] := bias + conv  for G == 1: the block's input rows staged
    once, then _sum_staged_rows straight into the output rows."""
    cdef Py_ssize_t C = x.shape[3], oW = out.shape[2], K = out.shape[3]
    cdef Py_ssize_t kh = weight.shape[0], kw = weight.shape[1]
    cdef Py_ssize_t Wp = (oW - 1) * p.sw + (kw - 1) * p.dw + 1
    _stage_nhwc_rows(stage, x, n, oh0 * p.sh - p.pt, (R - 1) * p.sh + (kh - 1) * p.dh + 1, Wp,
                     p.pl)
    _sum_staged_rows(&out[n, oh0, 0, 0], stage, Wp, C, &weight[0, 0, 0, 0], kw * C * K, C * K,
                     K, &bias[0], K, kh, kw, oW, R, p, xs, ws)


cdef void _forward_nhwc_taps_row(const floating[:, :, :, ::1] x,
                                 const floating[:, :, :, ::1] weight, const floating[::1] bias,
                                 floating[:, :, :, ::1] out, Py_ssize_t n, Py_ssize_t oh, Geom p,
                                 const Py_ssize_t *jlo, const Py_ssize_t *jhi,
                                 const floating **xs, const floating **ws) noexcept nogil:
    """out[n, oh, :, :] := bias + conv  for depthwise (C/G == K/G == 1)

    out[.., c] = bias[c] + sum_{i, j} x[n, ih, iw, c] * w[i, j, 0, c], vectorised over the
    contiguous channels; in the interior columns [lo, hi) every tap is valid, so one call
    covers them all, and each edge column gets a call with its valid taps."""
    cdef Py_ssize_t H = x.shape[1], C = x.shape[3]
    cdef Py_ssize_t oW = out.shape[2]
    cdef Py_ssize_t kh = weight.shape[0], kw = weight.shape[1]
    cdef Py_ssize_t ih0 = oh * p.sh - p.pt
    cdef Py_ssize_t i_lo, i_hi, lo = 0, hi = oW, ow, run, i, j, nt = 0
    _valid_range(kh, H, p.dh, ih0, &i_lo, &i_hi)
    for j in range(kw):
        if jlo[j] < jhi[j]:
            lo = max(lo, jlo[j])
            hi = min(hi, jhi[j])
    ow = 0
    while ow < oW:
        run = hi - ow if lo <= ow < hi else 1
        if (run >= 8 and kw == 3 and p.dw == 1 and p.sw <= 2 and 0 < i_hi - i_lo <= 3
                and C >= FASTCONV_VBYTES() // sizeof(floating)):
            for i in range(i_lo, i_hi):
                xs[i - i_lo] = &x[n, ih0 + i * p.dh, ow * p.sw - p.pl, 0]
                ws[i - i_lo] = &weight[i, 0, 0, 0]
            _dw_rows(&out[n, oh, ow, 0], xs, ws, i_hi - i_lo, p.sw, &bias[0], C, run)
            ow = ow + run
            continue
        nt = 0
        for i in range(i_lo, i_hi):
            for j in range(kw):
                if jlo[j] <= ow < jhi[j]:
                    xs[nt] = &x[n, ih0 + i * p.dh, ow * p.sw + j * p.dw - p.pl, 0]
                    ws[nt] = &weight[i, j, 0, 0]
                    nt = nt + 1
        _dw_pixels(&out[n, oh, ow, 0], xs, ws, nt, &bias[0], C, p.sw * C, run)
        ow = ow + run


def forward_nhwc(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                 const floating[::1] bias, floating[:, :, :, ::1] out,
                 Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                 Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                 Py_ssize_t groups, int num_threads):
    """out := conv2d(x, weight) + bias  (NHWC)"""
    cdef Geom p = Geom(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t N = out.shape[0], oH = out.shape[1], kh = weight.shape[0], kw = weight.shape[1]
    cdef Py_ssize_t Cg = weight.shape[2], nthreads = max(num_threads, 1), taps = kh * kw * Cg
    cdef bint depthwise = Cg == 1 and out.shape[3] == groups
    cdef bint staged = not depthwise and groups == 1
    cdef Py_ssize_t t, R = 1, nrb = oH, stage_size = 0
    cdef Py_ssize_t *jr
    cdef const floating **ptrs = NULL
    cdef floating *stage = NULL
    if N == 0:
        return
    if (kh == 1 and kw == 1 and groups == 1 and pad_top == 0 and pad_left == 0
            and stride_h == 1 and stride_w == 1
            and oH == x.shape[1] and out.shape[2] == x.shape[2]):
        _pointwise_nhwc(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                        N * oH * out.shape[2], Cg, out.shape[3], nthreads)
        return
    if staged:
        # Blocks of R output rows: the input rows are staged once per block, not kh times.
        stage_size = _staged_blocks(
            N, oH, x.shape[3] * ((out.shape[2] - 1) * stride_w + (kw - 1) * dilation_w + 1), kh, p,
            nthreads, &R)
        nrb = _ceil_div(oH, R)
    jr = <Py_ssize_t *> malloc(2 * kw * sizeof(Py_ssize_t))
    if depthwise or staged:
        ptrs = <const floating **> malloc(nthreads * 2 * taps * sizeof(floating *))
        stage = <floating *> calloc(nthreads * stage_size + 1, sizeof(floating))  # staged clean
    if jr == NULL or ((depthwise or staged) and (ptrs == NULL or stage == NULL)):
        free(jr)
        free(ptrs)
        free(stage)
        raise MemoryError()
    try:
        _fill_ranges(jr, jr + kw, kw, out.shape[2], x.shape[2], stride_w, pad_left, dilation_w)
        with nogil, parallel(num_threads=nthreads):
            flush_denormals_enter()
            for t in prange(N * nrb, schedule="static"):
                if staged:
                    _forward_nhwc_staged_block(x, weight, bias, out, t // nrb, (t % nrb) * R,
                                            min(R, oH - (t % nrb) * R), p,
                                            ptrs + threadid() * 2 * taps,
                                            ptrs + threadid() * 2 * taps + taps,
                                            stage + threadid() * stage_size)
                elif depthwise:
                    _forward_nhwc_taps_row(x, weight, bias, out, t // oH, t % oH, p, jr, jr + kw,
                                           ptrs + threadid() * 2 * taps,
                                           ptrs + threadid() * 2 * taps + taps)
                else:
                    _forward_nhwc_row(x, weight, bias, out, t // oH, t % oH, p, jr, jr + kw)
            flush_denormals_exit()
    finally:
        free(stage)
        free(ptrs)
        free(jr)


# --------------------------------------------------------------------------- NHWC grad_input

cdef void _grad_input_nhwc_row(const floating[:, :, :, ::1] grad_output,
                               const floating[:, :, :, ::1] weight,
                               floating[:, :, :, ::1] grad_input,
                               Py_ssize_t n, Py_ssize_t ih, Geom p) noexcept nogil:
    """grad_input[n, ih, :, :] := sum_{i, j, k} grad_output[n, oh, ow, k] * w[i, j, c, k] (adjoint)"""
    cdef Py_ssize_t W = grad_input.shape[2], C = grad_input.shape[3]
    cdef Py_ssize_t oH = grad_output.shape[1], oW = grad_output.shape[2], K = grad_output.shape[3]
    cdef Py_ssize_t kh = weight.shape[0], kw = weight.shape[1], Cg = weight.shape[2]
    cdef Py_ssize_t G = p.G, Kg = K // p.G
    cdef bint depthwise = Cg == 1 and Kg == 1
    cdef Py_ssize_t iw, c, i, j, num, oh, ow, g, cc, cnt
    cdef floating *dst
    cdef const floating *gp
    cdef const floating *gs[4]
    cdef const floating *wsp[4]
    cdef floating s[4]
    for iw in range(W):
        dst = &grad_input[n, ih, iw, 0]
        for c in range(C):
            dst[c] = 0
        cnt = 0
        for i in range(kh):
            num = ih + p.pt - i * p.dh
            if num < 0:
                break
            if p.sh != 1:
                if num % p.sh != 0:
                    continue
                oh = num // p.sh
            else:
                oh = num
            if oh >= oH:
                continue
            for j in range(kw):
                num = iw + p.pl - j * p.dw
                if num < 0:
                    break
                if p.sw != 1:
                    if num % p.sw != 0:
                        continue
                    ow = num // p.sw
                else:
                    ow = num
                if ow >= oW:
                    continue
                gp = &grad_output[n, oh, ow, 0]
                if depthwise:
                    gs[cnt] = gp
                    wsp[cnt] = &weight[i, j, 0, 0]
                    cnt = cnt + 1
                    if cnt == 4:
                        _mul4(dst, gs[0], wsp[0], gs[1], wsp[1], gs[2], wsp[2], gs[3], wsp[3], C)
                        cnt = 0
                    continue
                for g in range(G):
                    cc = 0
                    while cc + 4 <= Cg:
                        _dot4(&weight[i, j, cc, g * Kg], &weight[i, j, cc + 1, g * Kg],
                              &weight[i, j, cc + 2, g * Kg], &weight[i, j, cc + 3, g * Kg],
                              gp + g * Kg, Kg, 1, s)
                        dst[g * Cg + cc] += s[0]
                        dst[g * Cg + cc + 1] += s[1]
                        dst[g * Cg + cc + 2] += s[2]
                        dst[g * Cg + cc + 3] += s[3]
                        cc = cc + 4
                    while cc < Cg:
                        dst[g * Cg + cc] += _dot1(&weight[i, j, cc, g * Kg], gp + g * Kg, Kg, 1)
                        cc = cc + 1
        for c in range(cnt):
            _mul1(dst, gs[c], wsp[c], C)


cdef int _pointwise_nhwc_t(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] w_t,
                           floating[:, :, :, ::1] grad_input, Py_ssize_t nthreads) except -1:
    """grad_input[p, c] := sum_k grad_output[p, k] * w_t[0, 0, k, c] (an NHWC 1x1 layer's adjoint)."""
    cdef Py_ssize_t C = grad_input.shape[3]
    cdef floating *zeros = <floating *> calloc(C, sizeof(floating))
    if zeros == NULL:
        raise MemoryError()
    try:
        _pointwise_nhwc(&grad_output[0, 0, 0, 0], &w_t[0, 0, 0, 0], zeros, &grad_input[0, 0, 0, 0],
                        grad_input.shape[0] * grad_input.shape[1] * grad_input.shape[2],
                        grad_output.shape[3], C, nthreads)
    finally:
        free(zeros)
    return 0


def grad_input_nhwc(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] weight,
                    floating[:, :, :, ::1] grad_input,
                    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                    Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                    Py_ssize_t groups, int num_threads):
    """grad_input := conv2d_input adjoint of grad_output  (NHWC)"""
    cdef Geom p = Geom(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t N = grad_input.shape[0], H = grad_input.shape[1]
    cdef Py_ssize_t kh = weight.shape[0], kw = weight.shape[1]
    cdef Py_ssize_t t
    cdef const floating[:, :, :, ::1] w_t
    if N == 0:
        return
    if (kh == 1 and kw == 1 and stride_h == 1 and stride_w == 1 and groups == 1
            and H == grad_output.shape[1] and grad_input.shape[2] == grad_output.shape[2]):
        # 1x1: the pointwise forward with the weights transposed, (K, C)
        w_t = np.ascontiguousarray(np.asarray(weight).transpose(0, 1, 3, 2))
        _pointwise_nhwc_t(grad_output, w_t, grad_input, max(num_threads, 1))
        return
    if stride_h == 1 and stride_w == 1 and weight.shape[2] == 1 and weight.shape[3] == groups:
        # Depthwise, stride 1: the adjoint is the forward correlation with the flipped kernel
        # and padding (k-1)*d - pad, as in grad_input_nchw.
        forward_nhwc(grad_output, np.ascontiguousarray(np.asarray(weight)[::-1, ::-1]),
                     np.zeros(groups, dtype=np.asarray(weight).dtype), grad_input, 1, 1,
                     (kh - 1) * dilation_h - pad_top, (kw - 1) * dilation_w - pad_left,
                     dilation_h, dilation_w, groups, num_threads)
        return
    with nogil, parallel(num_threads=max(num_threads, 1)):
        flush_denormals_enter()
        for t in prange(N * H, schedule="static"):
            _grad_input_nhwc_row(grad_output, weight, grad_input, t // H, t % H, p)
        flush_denormals_exit()


# --------------------------------------------------------------------------- NHWC grad_weight

cdef void _grad_weight_nhwc_block(const floating[:, :, :, ::1] grad_output,
                                  const floating[:, :, :, ::1] x,
                                  floating[:, :, :, ::1] grad_weight,
                                  Py_ssize_t i, Py_ssize_t j, Py_ssize_t c0, Py_ssize_t c1,
                                  Py_ssize_t g0, Py_ssize_t g1, Geom p,
                                  const Py_ssize_t *jlo, const Py_ssize_t *jhi) noexcept nogil:
    """grad_weight[i, j, c0:c1, g0*Kg:g1*Kg] := sum_{n, oh, ow} x[n, ih, iw, c] * grad_output[n, oh, ow, k]"""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], C = x.shape[3]
    cdef Py_ssize_t oH = grad_output.shape[1], K = grad_output.shape[3]
    cdef Py_ssize_t Cg = grad_weight.shape[2], Kg = K // p.G
    cdef Py_ssize_t n, oh, ow, ih, off, cc, g, k, q
    cdef Py_ssize_t lo = jlo[j], hi = jhi[j]
    cdef const floating *gp[4]
    cdef const floating *xp[4]
    cdef floating *dst
    off = j * p.dw - p.pl
    for cc in range(c0, c1):
        for k in range(g0 * Kg, g1 * Kg):
            grad_weight[i, j, cc, k] = 0
    if lo >= hi:
        return
    for n in range(N):
        for oh in range(oH):
            ih = oh * p.sh - p.pt + i * p.dh
            if ih < 0 or ih >= H:
                continue
            ow = lo
            while ow < hi:
                q = min(4, hi - ow)
                for k in range(q):
                    gp[k] = &grad_output[n, oh, ow + k, 0]
                    xp[k] = &x[n, ih, (ow + k) * p.sw + off, 0]
                for cc in range(c0, c1):
                    for g in range(g0, g1):
                        dst = &grad_weight[i, j, cc, g * Kg]
                        if q == 4:
                            _axpy4(dst, gp[0] + g * Kg, gp[1] + g * Kg, gp[2] + g * Kg,
                                   gp[3] + g * Kg, xp[0][g * Cg + cc], xp[1][g * Cg + cc],
                                   xp[2][g * Cg + cc], xp[3][g * Cg + cc], Kg, 1)
                        else:
                            for k in range(q):
                                _axpy1(dst, gp[k] + g * Kg, xp[k][g * Cg + cc], Kg, 1)
                ow = ow + q


cdef void _dw_dot_range(floating *r, const floating[:, :, :, ::1] grad_output,
                        const floating[:, :, :, ::1] x, Py_ssize_t n, Py_ssize_t oh,
                        Py_ssize_t ih, Py_ssize_t off, Py_ssize_t a, Py_ssize_t b,
                        Py_ssize_t c0, Py_ssize_t c1, Geom p) noexcept nogil:
    """r[c] += sum_{a <= ow < b} x[n, ih, ow*sw + off, c] * grad_output[n, oh, ow, c]  (one tap)"""
    cdef floating *rs[1]
    cdef const floating *xs[1]
    if b > a:
        rs[0] = r
        xs[0] = &x[n, ih, a * p.sw + off, 0]
        _dw_dots(rs, xs, 1, &grad_output[n, oh, a, 0], x.shape[3], p.sw * x.shape[3], b - a,
                 c0, c1)


cdef void _grad_weight_nhwc_dw_task(const floating[:, :, :, ::1] grad_output,
                                    const floating[:, :, :, ::1] x, floating *part,
                                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t n0, Py_ssize_t n1,
                                    Py_ssize_t c0, Py_ssize_t c1, Geom p,
                                    const Py_ssize_t *jlo, const Py_ssize_t *jhi) noexcept nogil:
    """part[(i*kw + j)*C + c] := sum_{n0 <= n < n1, oh, ow} x[n, ih, iw, c] * go[n, oh, ow, c]

    Depthwise, channels [c0, c1).  Up to 4 taps of a kernel row share each grad_output load
    over the columns where all of them are valid; the columns left over go tap by tap.
    3-wide kernel rows at dilation 1 and stride 1 take all the valid kernel rows of an
    output row at once (_dw_grad_rows: each grad_output load shared by up to 9 taps)."""
    cdef Py_ssize_t H = x.shape[1], C = x.shape[3], oH = grad_output.shape[1]
    cdef Py_ssize_t VL = FASTCONV_VBYTES() // sizeof(floating)
    cdef Py_ssize_t n, oh, i, j, j0, nj, q, ih, lo, hi, c, i_lo, i_hi
    cdef bint rows3 = kw == 3 and p.dw == 1 and p.sw == 1 and c1 - c0 >= VL
    cdef floating *rs[4]
    cdef const floating *xs[4]
    for q in range(kh * kw):
        for c in range(c0, c1):
            part[q * C + c] = 0
    lo = max(jlo[0], jlo[1], jlo[2]) if rows3 else 0   # the columns all 3 taps reach
    hi = min(jhi[0], jhi[1], jhi[2]) if rows3 else 0
    for n in range(n0, n1):
        for oh in range(oH):
            _valid_range(kh, H, p.dh, oh * p.sh - p.pt, &i_lo, &i_hi)
            if rows3 and hi > lo and 0 < i_hi - i_lo <= 3:
                for i in range(i_lo, i_hi):
                    ih = oh * p.sh - p.pt + i * p.dh
                    rs[i - i_lo] = part + i * kw * C
                    xs[i - i_lo] = &x[n, ih, lo * p.sw - p.pl, 0]
                    for j in range(kw):
                        _dw_dot_range(part + (i * kw + j) * C, grad_output, x, n, oh, ih,
                                      j - p.pl, jlo[j], lo, c0, c1, p)
                        _dw_dot_range(part + (i * kw + j) * C, grad_output, x, n, oh, ih,
                                      j - p.pl, hi, jhi[j], c0, c1, p)
                _dw_grad_rows(rs, xs, i_hi - i_lo, &grad_output[n, oh, lo, 0], C, hi - lo, c0, c1)
                continue
            for i in range(kh):
                ih = oh * p.sh - p.pt + i * p.dh
                if ih < 0 or ih >= H:
                    continue
                for j0 in range(0, kw, 4):
                    nj = min(4, kw - j0)
                    lo = 0
                    hi = grad_output.shape[2]
                    for j in range(j0, j0 + nj):
                        lo = max(lo, jlo[j])
                        hi = min(hi, jhi[j])
                    hi = max(hi, lo)
                    for j in range(j0, j0 + nj):
                        _dw_dot_range(part + (i * kw + j) * C, grad_output, x, n, oh, ih,
                                      j * p.dw - p.pl, jlo[j], min(jhi[j], lo), c0, c1, p)
                        _dw_dot_range(part + (i * kw + j) * C, grad_output, x, n, oh, ih,
                                      j * p.dw - p.pl, max(jlo[j], hi), jhi[j], c0, c1, p)
                    if hi > lo:
                        for q in range(nj):
                            rs[q] = part + (i * kw + j0 + q) * C
                            xs[q] = &x[n, ih, lo * p.sw + (j0 + q) * p.dw - p.pl, 0]
                        _dw_dots(rs, xs, nj, &grad_output[n, oh, lo, 0], C, p.sw * C, hi - lo,
                                 c0, c1)


cdef void _grad_weight_nhwc_few_task(const floating[:, :, :, ::1] grad_output,
                                     const floating[:, :, :, ::1] x, floating *part,
                                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t n0, Py_ssize_t n1,
                                     Geom p, floating *stage) noexcept nogil:
    """part[((i*kw + j)*C + c)*K + k] := sum_{n0 <= n < n1, oh, ow} x[n, ih, iw, c] go[n, oh, ow, k]

    G == 1, few input channels.  The input is staged zero padded as in the forward, so every
    tap covers the whole row: whole images when runs of 3 or more taps lie at consecutive
    offsets of a staged row (see _brow_dots): a kernel row's taps (j, c) when the width
    dilation is 1, else each tap's channels.  Otherwise the kh input rows of each output row,
    up to 4 taps of a kernel row sharing each grad_output load.  stage must start zeroed."""
    cdef Py_ssize_t H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t oH = grad_output.shape[1], oW = grad_output.shape[2], K = grad_output.shape[3]
    cdef Py_ssize_t Wp = (oW - 1) * p.sw + (kw - 1) * p.dw + 1
    cdef Py_ssize_t T = kw * C, nch = _ceil_div(kw * C, 4)
    cdef Py_ssize_t n, oh, i, j, ih0, h, q, q0, q1, k
    # runs of 3 to _BROW_MAX consecutive taps: nrow per kernel row (dilation 1) or per tap j
    cdef Py_ssize_t run = T if p.dw == 1 else C, nrow = _ceil_div(run, _BROW_MAX)
    cdef floating *rs[4]
    cdef const floating *xs[4]
    for q in range(kh * T * K):
        part[q] = 0
    if run >= 3:
        # Whole images: staged once per sample, each run summed over the image in registers.
        for n in range(n0, n1):
            _stage_nhwc_rows(stage, x, n, -p.pt, (oH - 1) * p.sh + (kh - 1) * p.dh + 1, Wp, p.pl)
            for i in range(kh):
                for j in range(T // run):
                    for h in range(nrow):
                        q0 = run * h // nrow
                        q1 = run * (h + 1) // nrow
                        _brow_dots(part + (i * T + j * C + q0) * K,
                                   stage + (i * p.dh * Wp + j * p.dw) * C + q0, q1 - q0,
                                   &grad_output[n, 0, 0, 0], K, p.sw * C, p.sh * Wp * C, oW, oH)
        return
    for n in range(n0, n1):
        for oh in range(oH):
            ih0 = oh * p.sh - p.pt
            for i in range(kh):
                _stage_nhwc_row(stage + i * Wp * C, x, n, ih0 + i * p.dh, Wp, p.pl)
                for h in range(nch):  # taps (j, c) of this row in nch chunks of <= 4
                    q0 = T * h // nch
                    q1 = T * (h + 1) // nch
                    for q in range(q0, q1):
                        rs[q - q0] = part + (i * T + q) * K
                        xs[q - q0] = stage + (i * Wp + (q // C) * p.dw) * C + q % C
                    _bcast_dots(rs, xs, q1 - q0, &grad_output[n, oh, 0, 0], K, p.sw * C, oW)


def grad_weight_nhwc(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] x,
                     floating[:, :, :, ::1] grad_weight,
                     Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                     Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                     Py_ssize_t groups, int num_threads):
    """grad_weight := sum_n correlation of x with grad_output  (NHWC)"""
    cdef Geom p = Geom(stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups)
    cdef Py_ssize_t kh = grad_weight.shape[0], kw = grad_weight.shape[1]
    cdef Py_ssize_t Cg = grad_weight.shape[2], K = grad_weight.shape[3]
    cdef Py_ssize_t Kg = K // groups
    cdef Py_ssize_t nthreads = max(num_threads, 1)
    cdef Py_ssize_t target = 8 * nthreads
    cdef Py_ssize_t N = x.shape[0]
    cdef Py_ssize_t ncb = 1, ngb = 1, cbs, gbs, ntasks, t, ij, r, cb, gb, nbs, nsb, per_thread
    cdef Py_ssize_t *jr
    cdef floating *stage
    cdef floating[:, :, ::1] pp
    cdef floating[:, ::1] pq
    if Cg == 1 and Kg == 1 and N > 0:
        # Depthwise: tasks (sample chunk, channel block) fixed by the shape alone, each
        # summing into its own slice of `part`; the chunks are then added in order.  Whole
        # pixels (all channels) per task unless there are too few samples to share out.
        cbs = groups if N >= 4 else max(32, _ceil_div(_ceil_div(groups, _ceil_div(16, N)), 32) * 32)
        ncb = _ceil_div(groups, cbs)
        nbs = _chunk_size(N, 16)
        nsb = _ceil_div(N, nbs)
        part = np.empty((nsb, kh * kw, groups), dtype=np.asarray(x).dtype)
        pp = part
        jr = <Py_ssize_t *> malloc(2 * kw * sizeof(Py_ssize_t))
        if jr == NULL:
            raise MemoryError()
        try:
            _fill_ranges(jr, jr + kw, kw, grad_output.shape[2], x.shape[2], stride_w, pad_left,
                         dilation_w)
            with nogil, parallel(num_threads=nthreads):
                flush_denormals_enter()
                for t in prange(nsb * ncb, schedule="static"):
                    _grad_weight_nhwc_dw_task(grad_output, x, &pp[t // ncb, 0, 0], kh, kw,
                                              (t // ncb) * nbs, min(N, (t // ncb + 1) * nbs),
                                              (t % ncb) * cbs, min(groups, (t % ncb + 1) * cbs),
                                              p, jr, jr + kw)
                flush_denormals_exit()
        finally:
            free(jr)
        np.asarray(grad_weight).reshape(kh * kw, groups)[...] = part.sum(axis=0)
        return
    if groups == 1 and Cg <= _NARROW and N > 0:
        # First and narrow layers: tasks are sample chunks fixed by the shape, each summing
        # into its own slice of `part`; the chunks are then added in order.
        nbs = _chunk_size(N, 16)
        nsb = _ceil_div(N, nbs)
        per_thread = (max(kh, (grad_output.shape[1] - 1) * stride_h + (kh - 1) * dilation_h + 1)
                      * ((grad_output.shape[2] - 1) * stride_w + (kw - 1) * dilation_w + 1) * Cg)
        part = np.empty((nsb, kh * kw * Cg * K), dtype=np.asarray(x).dtype)
        pq = part
        stage = <floating *> calloc(nthreads * per_thread, sizeof(floating))  # staged clean
        if stage == NULL:
            raise MemoryError()
        try:
            with nogil, parallel(num_threads=nthreads):
                flush_denormals_enter()
                for t in prange(nsb, schedule="static"):
                    _grad_weight_nhwc_few_task(grad_output, x, &pq[t, 0], kh, kw, t * nbs,
                                               min(N, (t + 1) * nbs), p,
                                               stage + threadid() * per_thread)
                flush_denormals_exit()
        finally:
            free(stage)
        np.asarray(grad_weight).reshape(-1)[...] = part.sum(axis=0)
        return
    # Each task owns grad_weight[i, j, c-block, g-block]; the sum order of every entry is
    # (n, oh, ow) in fixed groups of four pixels whatever the split.
    if kh * kw < target:
        if Cg == 1:
            ngb = min(groups, _ceil_div(target, kh * kw))
        else:
            ncb = min(Cg, _ceil_div(target, kh * kw))
    cbs = _ceil_div(Cg, ncb)
    ncb = _ceil_div(Cg, cbs)
    gbs = _ceil_div(groups, ngb)
    ngb = _ceil_div(groups, gbs)
    ntasks = kh * kw * ncb * ngb
    jr = <Py_ssize_t *> malloc(2 * kw * sizeof(Py_ssize_t))
    if jr == NULL:
        raise MemoryError()
    try:
        _fill_ranges(jr, jr + kw, kw, grad_output.shape[2], x.shape[2], stride_w, pad_left,
                     dilation_w)
        with nogil, parallel(num_threads=nthreads):
            flush_denormals_enter()
            for t in prange(ntasks, schedule="static"):
                ij = t // (ncb * ngb)
                r = t % (ncb * ngb)
                cb = r // ngb
                gb = r % ngb
                _grad_weight_nhwc_block(grad_output, x, grad_weight, ij // kw, ij % kw,
                                        cb * cbs, min(cb * cbs + cbs, Cg),
                                        gb * gbs, min(gb * gbs + gbs, groups), p, jr, jr + kw)
            flush_denormals_exit()
    finally:
        free(jr)
