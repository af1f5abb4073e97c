"""Winograd F(2x2, 3x3) and F(2x2, 5x5) convolution of stride-1, undilated layers with 3x3 or
5x5 kernels: the forward pass (the Python side runs grad_input as the forward of the
transposed convolution) and the weight gradient, F(3x3, 2x2) and F(5x5, 2x2) (below).

Legend as in _conv_im2col: N, C, H, W input; K outputs; oH, oW output size; G groups,
Cg = C/G, Kg = K/G. Tiles are 2x2 blocks of outputs: tH = ceil(oH/2) by tW = ceil(oW/2)
per sample; a tile row is the tW tiles of one (n, th).

Each tile's outputs come from the 4x4 input patch d under it (zeros in the padding):
    Y = A^T [ U (.) (B^T d B) ] A,   U = G g G^T   ((.) elementwise over the 16 positions xi)
    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
Summed over input channels the elementwise products become 16 independent GEMMs, one per xi:
    M[xi] (tiles, Kg) = V[xi] (tiles, R) @ U[xi] (R, Kg)
That is 16 multiplies per 4 outputs and channel pair where direct convolution needs 36 (2.25x
fewer). The transforms only add, subtract and halve, so rounding stays close to a direct sum.
A 5x5 kernel with 16 or more channels per group runs F(2x2, 5x5): 6x6 patches, 36 positions
(B^T, G and A^T on the points 0, +-1, +-2 and infinity, as F(4x4, 3x3) uses), 36 multiplies
per tile where a direct sum takes 100; its weight gradient is F(5x5, 2x2) on the same
transforms. With fewer channels, a 5x5 kernel, zero-padded to 6x6, is S = 4 sub-kernels of 3x3
at offsets (3si, 3sj) (64 multiplies per tile, but GEMMs four times as deep); each reads the
input moved by its offset, and their transformed patches stack along the reduction: R = S*Cg
(R = Cg for 3x3 kernels and F(2x2, 5x5)). U is kept (positions, R, K) for both layouts.

The transforms run along channels (long vectors), one 4x4 patch or 2x2 tile at a time. NCHW
samples get there through a channels-last copy of the rows each block needs: transforming
along a narrow plane's rows instead (7 tiles across a 14-pixel row) ran scalar and took most
of the time.

Threads: blocks of tile rows run in an OpenMP prange; each thread transforms its block into its
own V, multiplies with single-threaded BLAS (the Python caller limits BLAS to one thread) and
transforms M back into the output with the bias added.
"""
from cython.parallel cimport parallel, prange, threadid

from fastconv._ext._blas cimport floating, gemm
from fastconv._ext._fpenv cimport flush_denormals_enter, flush_denormals_exit
from fastconv._ext._transpose cimport from_channels_last, to_channels_last
from libc.float cimport DBL_MAX, FLT_MAX
from libc.string cimport memset

# The transforms' inner loops, in C so that every stream can be declared restrict: each loop
# reads or writes 16 streams, too many for the compiler's run-time alias checks, and without
# restrict it would not vectorise them. One copy per dtype (suffix _f, _d).
cdef extern from *:
    """
    #include <float.h>
    #include <stddef.h>
    /* 16 restrict pointer parameters N0..N15, one per transform position xi, and the arguments
       B + xi*LD for them. restrict on parameters (kept when inlined) lets every loop below
       vectorise without run-time alias checks, which 16 streams would exceed. */
    #define FASTCONV_P16(Q, T, N) \\
        Q T *restrict N##0, Q T *restrict N##1, Q T *restrict N##2, Q T *restrict N##3, \\
        Q T *restrict N##4, Q T *restrict N##5, Q T *restrict N##6, Q T *restrict N##7, \\
        Q T *restrict N##8, Q T *restrict N##9, Q T *restrict N##10, Q T *restrict N##11, \\
        Q T *restrict N##12, Q T *restrict N##13, Q T *restrict N##14, Q T *restrict N##15
    #define FASTCONV_A16(B, LD) \\
        (B), (B) + (LD), (B) + 2 * (LD), (B) + 3 * (LD), (B) + 4 * (LD), (B) + 5 * (LD), \\
        (B) + 6 * (LD), (B) + 7 * (LD), (B) + 8 * (LD), (B) + 9 * (LD), (B) + 10 * (LD), \\
        (B) + 11 * (LD), (B) + 12 * (LD), (B) + 13 * (LD), (B) + 14 * (LD), (B) + 15 * (LD)

    /* o_xi[I] = (B^T d B)[xi], given r_ab = (B^T d)[a, b] */
    #define FASTCONV_WINO_COLUMNS(I) \\
        o0[I] = r00 - r02; o1[I] = r01 + r02; o2[I] = r02 - r01; o3[I] = r01 - r03; \\
        o4[I] = r10 - r12; o5[I] = r11 + r12; o6[I] = r12 - r11; o7[I] = r11 - r13; \\
        o8[I] = r20 - r22; o9[I] = r21 + r22; o10[I] = r22 - r21; o11[I] = r21 - r23; \\
        o12[I] = r30 - r32; o13[I] = r31 + r32; o14[I] = r32 - r31; o15[I] = r31 - r33;

    /* u_b, v_b = rows 0 and 1 of A^T M in column b, M[xi] = m_xi[I] */
    #define FASTCONV_WINO_ROWS(T, I) \\
        const T u0 = m0[I] + m4[I] + m8[I], u1 = m1[I] + m5[I] + m9[I]; \\
        const T u2 = m2[I] + m6[I] + m10[I], u3 = m3[I] + m7[I] + m11[I]; \\
        const T v0 = m4[I] - m8[I] - m12[I], v1 = m5[I] - m9[I] - m13[I]; \\
        const T v2 = m6[I] - m10[I] - m14[I], v3 = m7[I] - m11[I] - m15[I];

    /* ACC |= whether an output is an infinity or NaN. Comparisons, not arithmetic: with
       -fassociative-math the compiler may cancel y - y or y * 0 to 0, but NaN compares false. */
    #define FASTCONV_WINO_CHECK(ACC, MAX) \\
        ACC |= !((y00 <= MAX) & (y00 >= -MAX) & (y01 <= MAX) & (y01 >= -MAX) \\
                 & (y10 <= MAX) & (y10 >= -MAX) & (y11 <= MAX) & (y11 >= -MAX));

    /* o_xi[I] = (A g A^T)[xi] of the 2x2 gradient tile g; A = [[1, 0], [1, 1], [1, -1], [0, -1]] */
    #define FASTCONV_WINO_GRAD(T, I) \\
        const T r00 = g00, r01 = g01, r10 = g00 + g10, r11 = g01 + g11; \\
        const T r20 = g00 - g10, r21 = g01 - g11, r30 = -g10, r31 = -g11; \\
        o0[I] = r00; o1[I] = r00 + r01; o2[I] = r00 - r01; o3[I] = -r01; \\
        o4[I] = r10; o5[I] = r10 + r11; o6[I] = r10 - r11; o7[I] = -r11; \\
        o8[I] = r20; o9[I] = r20 + r21; o10[I] = r20 - r21; o11[I] = -r21; \\
        o12[I] = r30; o13[I] = r30 + r31; o14[I] = r30 - r31; o15[I] = -r31;

    #define FASTCONV_WINOGRAD_LOOPS(T, S, MAX) \\
    static inline void fastconv_wino_in_pixels_##S(FASTCONV_P16(const, T, p), FASTCONV_P16(, T, o), \\
                                                   ptrdiff_t n) { \\
        for (ptrdiff_t c = 0; c < n; c++) { \\
            const T r00 = p0[c] - p8[c], r01 = p1[c] - p9[c], r02 = p2[c] - p10[c]; \\
            const T r03 = p3[c] - p11[c], r10 = p4[c] + p8[c], r11 = p5[c] + p9[c]; \\
            const T r12 = p6[c] + p10[c], r13 = p7[c] + p11[c], r20 = p8[c] - p4[c]; \\
            const T r21 = p9[c] - p5[c], r22 = p10[c] - p6[c], r23 = p11[c] - p7[c]; \\
            const T r30 = p4[c] - p12[c], r31 = p5[c] - p13[c], r32 = p6[c] - p14[c]; \\
            const T r33 = p7[c] - p15[c]; \\
            FASTCONV_WINO_COLUMNS(c) \\
        } \\
    } \\
    /* NHWC input: o[xi*ld + c] = (B^T d B)[xi] for c in [0, n); d[a*4 + b] -> pixel (a, b) */ \\
    static inline void fastconv_wino_input_nhwc_##S(const T *const *d, T *o, ptrdiff_t ld, \\
                                                    ptrdiff_t n) { \\
        fastconv_wino_in_pixels_##S(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], \\
                                    d[10], d[11], d[12], d[13], d[14], d[15], FASTCONV_A16(o, ld), n); \\
    } \\
    static inline void fastconv_wino_w_##S(const T *restrict g00, const T *restrict g01, \\
                                           const T *restrict g02, const T *restrict g10, \\
                                           const T *restrict g11, const T *restrict g12, \\
                                           const T *restrict g20, const T *restrict g21, \\
                                           const T *restrict g22, FASTCONV_P16(, T, o), ptrdiff_t n) { \\
        const T h = (T)0.5; \\
        for (ptrdiff_t k = 0; k < n; k++) { \\
            /* G g: rows a, b, c, d of 4x3; then (G g) G^T: the same combination along each row */ \\
            const T a0 = g00[k], a1 = g01[k], a2 = g02[k]; \\
            const T b0 = (g00[k] + g10[k] + g20[k]) * h, b1 = (g01[k] + g11[k] + g21[k]) * h; \\
            const T b2 = (g02[k] + g12[k] + g22[k]) * h; \\
            const T c0 = (g00[k] - g10[k] + g20[k]) * h, c1 = (g01[k] - g11[k] + g21[k]) * h; \\
            const T c2 = (g02[k] - g12[k] + g22[k]) * h; \\
            const T d0 = g20[k], d1 = g21[k], d2 = g22[k]; \\
            o0[k] = a0; o1[k] = (a0 + a1 + a2) * h; o2[k] = (a0 - a1 + a2) * h; o3[k] = a2; \\
            o4[k] = b0; o5[k] = (b0 + b1 + b2) * h; o6[k] = (b0 - b1 + b2) * h; o7[k] = b2; \\
            o8[k] = c0; o9[k] = (c0 + c1 + c2) * h; o10[k] = (c0 - c1 + c2) * h; o11[k] = c2; \\
            o12[k] = d0; o13[k] = (d0 + d1 + d2) * h; o14[k] = (d0 - d1 + d2) * h; o15[k] = d2; \\
        } \\
    } \\
    /* Weights: o[xi*ld + k] = (G g G^T)[xi] for k in [0, n), g[i*3 + j] -> tap (i, j)'s row */ \\
    static inline void fastconv_wino_weights_##S(const T *const *g, T *o, ptrdiff_t ld, \\
                                                 ptrdiff_t n) { \\
        fastconv_wino_w_##S(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], \\
                            FASTCONV_A16(o, ld), n); \\
    } \\
    static inline void fastconv_wino_gr_pixels_##S(const T *restrict p00, const T *restrict p01, \\
                                                   const T *restrict p10, const T *restrict p11, \\
                                                   FASTCONV_P16(, T, o), ptrdiff_t n) { \\
        for (ptrdiff_t c = 0; c < n; c++) { \\
            const T g00 = p00[c], g01 = p01[c], g10 = p10[c], g11 = p11[c]; \\
            FASTCONV_WINO_GRAD(T, c) \\
        } \\
    } \\
    /* NHWC gradient tile: o[xi*ld + k] = (A g A^T)[xi] for k in [0, n); g_ab -> output (a, b) */ \\
    static inline void fastconv_wino_grad_nhwc_##S(const T *g00, const T *g01, const T *g10, \\
                                                   const T *g11, T *o, ptrdiff_t ld, ptrdiff_t n) { \\
        fastconv_wino_gr_pixels_##S(g00, g01, g10, g11, FASTCONV_A16(o, ld), n); \\
    } \\
    static inline int fastconv_wino_out_pixels_##S(FASTCONV_P16(const, T, m), \\
                                                 const T *restrict bias, T *restrict q00, \\
                                                 T *restrict q01, T *restrict q10, \\
                                                 T *restrict q11, ptrdiff_t n) { \\
        int nonfinite = 0; \\
        for (ptrdiff_t c = 0; c < n; c++) { \\
            FASTCONV_WINO_ROWS(T, c) \\
            const T y00 = u0 + u1 + u2 + bias[c], y01 = u1 - u2 - u3 + bias[c]; \\
            const T y10 = v0 + v1 + v2 + bias[c], y11 = v1 - v2 - v3 + bias[c]; \\
            q00[c] = y00; q01[c] = y01; q10[c] = y10; q11[c] = y11; \\
            FASTCONV_WINO_CHECK(nonfinite, MAX) \\
        } \\
        return nonfinite; \\
    } \\
    /* NHWC output, a whole 2x2 tile: y_ij[c] = (A^T M A)[i, j] + bias[c], M[xi] at s[xi*ld + c]. \\
       Returns whether an output is not finite. */ \\
    static inline int fastconv_wino_output_nhwc_##S(const T *s, ptrdiff_t ld, const T *bias, \\
                                                  T *y00, T *y01, T *y10, T *y11, ptrdiff_t n) { \\
        return fastconv_wino_out_pixels_##S(FASTCONV_A16(s, ld), bias, y00, y01, y10, y11, n); \\
    }

    FASTCONV_WINOGRAD_LOOPS(float, f, FLT_MAX)
    FASTCONV_WINOGRAD_LOOPS(double, d, DBL_MAX)

    /* F(2x2, 5x5): 6x6 patches, 36 positions, on the points 0, 1, -1, 2, -2 and infinity.
       Too many streams for one restrict parameter each: each loop runs along channels on
       64-byte vectors (TT = V), then on scalars for the tail (TT = T), loading every stream
       once per step. Applied to a 6-vector x along one axis:
         B^T x = (4x0 - 5x2 + x4, x3 + x4 - 4(x1 + x2), 4(x1 - x2) - x3 + x4,
                  2(x3 - x1) - x2 + x4, 2(x1 - x3) - x2 + x4, 4x1 - 5x3 + x5)
         G g   = (g0/4, -(e + o)/6, -(e - o)/6, (e2 + o2)/24, (e2 - o2)/24, g4)   for the 5 taps,
                 e = g0 + g2 + g4, o = g1 + g3, e2 = g0 + 4g2 + 16g4, o2 = 2g1 + 8g3
         A^T m = (m0 + m1 + m2 + m3 + m4, m1 - m2 + 2(m3 - m4) + m5) */
    #define FASTCONV_W6_LD(TT, P) ({ TT v_; __builtin_memcpy(&v_, (P), sizeof(TT)); v_; })
    #define FASTCONV_W6_ST(TT, P, X) do { TT v_ = (X); __builtin_memcpy((P), &v_, sizeof(TT)); } while (0)
    #define FASTCONV_W6_BT(T, x0, x1, x2, x3, x4, x5, r0, r1, r2, r3, r4, r5) do { \\
            r0 = (T)4 * x0 - (T)5 * x2 + x4; r1 = x3 + x4 - (T)4 * (x1 + x2); \\
            r2 = (T)4 * (x1 - x2) - x3 + x4; r3 = (T)2 * (x3 - x1) - x2 + x4; \\
            r4 = (T)2 * (x1 - x3) - x2 + x4; r5 = (T)4 * x1 - (T)5 * x3 + x5; \\
        } while (0)
    #define FASTCONV_W6_G(T, TT, g0, g1, g2, g3, g4, u0, u1, u2, u3, u4, u5) do { \\
            const TT e_ = g0 + g2 + g4, o_ = g1 + g3; \\
            const TT e2_ = g0 + (T)4 * g2 + (T)16 * g4, o2_ = (T)2 * g1 + (T)8 * g3; \\
            u0 = g0 * (T)0.25; u1 = (e_ + o_) * (T)(-1.0 / 6); u2 = (e_ - o_) * (T)(-1.0 / 6); \\
            u3 = (e2_ + o2_) * (T)(1.0 / 24); u4 = (e2_ - o2_) * (T)(1.0 / 24); u5 = g4; \\
        } while (0)
    #define FASTCONV_W6_AT0(m, b, st) (m[b] + m[(b) + st] + m[(b) + 2 * st] + m[(b) + 3 * st] + m[(b) + 4 * st])
    #define FASTCONV_W6_AT1(T, m, b, st) \\
        (m[(b) + st] - m[(b) + 2 * st] + (T)2 * (m[(b) + 3 * st] - m[(b) + 4 * st]) + m[(b) + 5 * st])

    /* o[xi*ld + c] = (B^T d B)[xi], d[a*6 + b] -> pixel (a, b) of the patch */
    #define FASTCONV_W6_INPUT_STEP(T, TT) do { \\
            TT x[36], t[36], r[6]; \\
            int i; \\
            for (i = 0; i < 36; i++) x[i] = FASTCONV_W6_LD(TT, d[i] + c); \\
            for (i = 0; i < 6; i++) \\
                FASTCONV_W6_BT(T, x[i], x[6 + i], x[12 + i], x[18 + i], x[24 + i], x[30 + i], \\
                               t[i], t[6 + i], t[12 + i], t[18 + i], t[24 + i], t[30 + i]); \\
            for (i = 0; i < 6; i++) { \\
                FASTCONV_W6_BT(T, t[6 * i], t[6 * i + 1], t[6 * i + 2], t[6 * i + 3], t[6 * i + 4], \\
                               t[6 * i + 5], r[0], r[1], r[2], r[3], r[4], r[5]); \\
                for (int b = 0; b < 6; b++) FASTCONV_W6_ST(TT, o + (6 * i + b) * ld + c, r[b]); \\
            } \\
        } while (0)
    /* o[xi*ld + k] = (G g G^T)[xi], g[i*5 + j] -> tap (i, j)'s row of K */
    #define FASTCONV_W6_WEIGHT_STEP(T, TT) do { \\
            TT a[25], t[30], r[6]; \\
            int i; \\
            for (i = 0; i < 25; i++) a[i] = FASTCONV_W6_LD(TT, g[i] + c); \\
            for (i = 0; i < 5; i++) \\
                FASTCONV_W6_G(T, TT, a[i], a[5 + i], a[10 + i], a[15 + i], a[20 + i], \\
                              t[i], t[5 + i], t[10 + i], t[15 + i], t[20 + i], t[25 + i]); \\
            for (i = 0; i < 6; i++) { \\
                FASTCONV_W6_G(T, TT, t[5 * i], t[5 * i + 1], t[5 * i + 2], t[5 * i + 3], t[5 * i + 4], \\
                              r[0], r[1], r[2], r[3], r[4], r[5]); \\
                for (int b = 0; b < 6; b++) FASTCONV_W6_ST(TT, o + (6 * i + b) * ld + c, r[b]); \\
            } \\
        } while (0)
    /* y_ij[c] = (A^T M A)[i, j] + bias[c], M[xi] at s[xi*ld + c]; ok &= whether all are finite */
    #define FASTCONV_W6_OUTPUT_STEP(T, TT, MAX) do { \\
            TT m[36], u[6], v[6]; \\
            int i; \\
            for (i = 0; i < 36; i++) m[i] = FASTCONV_W6_LD(TT, s + i * ld + c); \\
            for (i = 0; i < 6; i++) { \\
                u[i] = FASTCONV_W6_AT0(m, i, 6); \\
                v[i] = FASTCONV_W6_AT1(T, m, i, 6); \\
            } \\
            const TT bv = FASTCONV_W6_LD(TT, bias + c); \\
            const TT y00 = FASTCONV_W6_AT0(u, 0, 1) + bv, y01 = FASTCONV_W6_AT1(T, u, 0, 1) + bv; \\
            const TT y10 = FASTCONV_W6_AT0(v, 0, 1) + bv, y11 = FASTCONV_W6_AT1(T, v, 0, 1) + bv; \\
            FASTCONV_W6_ST(TT, q00 + c, y00); FASTCONV_W6_ST(TT, q01 + c, y01); \\
            FASTCONV_W6_ST(TT, q10 + c, y10); FASTCONV_W6_ST(TT, q11 + c, y11); \\
            ok = (y00 <= MAX) & (y00 >= -MAX) & (y01 <= MAX) & (y01 >= -MAX) \\
                 & (y10 <= MAX) & (y10 >= -MAX) & (y11 <= MAX) & (y11 >= -MAX); \\
        } while (0)

    /* The weight gradient's 2x2 tile g: o[xi*ld + c] = (A g A^T)[xi], A = (A^T)^T, i.e. along
       each axis (g0, g1) -> (g0, g0 + g1, g0 - g1, g0 + 2g1, g0 - 2g1, g1) */
    #define FASTCONV_W6_A(T, x0, x1, r) do { \\
            r[0] = x0; r[1] = x0 + x1; r[2] = x0 - x1; \\
            r[3] = x0 + (T)2 * x1; r[4] = x0 - (T)2 * x1; r[5] = x1; \\
        } while (0)
    #define FASTCONV_W6_GRAD_STEP(T, TT) do { \\
            TT r0[6], r1[6], col[6]; \\
            FASTCONV_W6_A(T, FASTCONV_W6_LD(TT, g00 + c), FASTCONV_W6_LD(TT, g01 + c), r0); \\
            FASTCONV_W6_A(T, FASTCONV_W6_LD(TT, g10 + c), FASTCONV_W6_LD(TT, g11 + c), r1); \\
            for (int b = 0; b < 6; b++) { \\
                FASTCONV_W6_A(T, r0[b], r1[b], col); \\
                for (int a = 0; a < 6; a++) FASTCONV_W6_ST(TT, o + (6 * a + b) * ld + c, col[a]); \\
            } \\
        } while (0)

    /* STEP for each vector of channels c, then for each remaining channel */
    #define FASTCONV_W6_ALONG(STEP, T, S) do { \\
            ptrdiff_t c = 0; \\
            for (; c + FASTCONV_W6L_##S <= n; c += FASTCONV_W6L_##S) \\
                STEP(T, fastconv_w6v_##S); \\
            for (; c < n; c++) STEP(T, T); \\
        } while (0)

    #define FASTCONV_WINOGRAD6(T, S, MAX, MASK) \\
    typedef T fastconv_w6v_##S __attribute__((vector_size(64))); \\
    typedef MASK fastconv_w6m_##S __attribute__((vector_size(64))); \\
    enum { FASTCONV_W6L_##S = 64 / sizeof(T) }; \\
    static inline void fastconv_w6_input_##S(const T *const *d, T *restrict o, ptrdiff_t ld, \\
                                             ptrdiff_t n) { \\
        FASTCONV_W6_ALONG(FASTCONV_W6_INPUT_STEP, T, S); \\
    } \\
    static inline void fastconv_w6_weights_##S(const T *const *g, T *restrict o, ptrdiff_t ld, \\
                                               ptrdiff_t n) { \\
        FASTCONV_W6_ALONG(FASTCONV_W6_WEIGHT_STEP, T, S); \\
    } \\
    static inline void fastconv_w6_grad_##S(const T *g00, const T *g01, const T *g10, \\
                                            const T *g11, T *restrict o, ptrdiff_t ld, \\
                                            ptrdiff_t n) { \\
        FASTCONV_W6_ALONG(FASTCONV_W6_GRAD_STEP, T, S); \\
    } \\
    /* A whole 2x2 tile (edge tiles point the outputs they lack at scratch); returns whether \\
       an output is not finite */ \\
    static inline int fastconv_w6_output_##S(const T *restrict s, ptrdiff_t ld, \\
                                             const T *restrict bias, T *restrict q00, \\
                                             T *restrict q01, T *restrict q10, \\
                                             T *restrict q11, ptrdiff_t n) { \\
        int nonfinite = 0; \\
        ptrdiff_t c = 0; \\
        for (; c + FASTCONV_W6L_##S <= n; c += FASTCONV_W6L_##S) { \\
            fastconv_w6m_##S ok; \\
            MASK lanes[FASTCONV_W6L_##S]; \\
            FASTCONV_W6_OUTPUT_STEP(T, fastconv_w6v_##S, MAX); \\
            __builtin_memcpy(lanes, &ok, sizeof(ok)); \\
            for (int l = 0; l < FASTCONV_W6L_##S; l++) nonfinite |= !lanes[l]; \\
        } \\
        for (; c < n; c++) { \\
            int ok; \\
            FASTCONV_W6_OUTPUT_STEP(T, T, MAX); \\
            nonfinite |= !ok; \\
        } \\
        return nonfinite; \\
    }

    FASTCONV_WINOGRAD6(float, f, FLT_MAX, int)
    FASTCONV_WINOGRAD6(double, d, DBL_MAX, long long)
    """
    void wino_input_nhwc_f "fastconv_wino_input_nhwc_f"(const float **d, float *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    void wino_input_nhwc_d "fastconv_wino_input_nhwc_d"(const double **d, double *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    void wino_weights_f "fastconv_wino_weights_f"(const float **g, float *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    void wino_weights_d "fastconv_wino_weights_d"(const double **g, double *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    void wino_grad_nhwc_f "fastconv_wino_grad_nhwc_f"(const float *g00, const float *g01, const float *g10, const float *g11, float *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    void wino_grad_nhwc_d "fastconv_wino_grad_nhwc_d"(const double *g00, const double *g01, const double *g10, const double *g11, double *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    int wino_output_nhwc_f "fastconv_wino_output_nhwc_f"(const float *s, Py_ssize_t ld, const float *bias, float *y00, float *y01, float *y10, float *y11, Py_ssize_t n) noexcept nogil
    int wino_output_nhwc_d "fastconv_wino_output_nhwc_d"(const double *s, Py_ssize_t ld, const double *bias, double *y00, double *y01, double *y10, double *y11, Py_ssize_t n) noexcept nogil
    void w6_input_f "fastconv_w6_input_f"(const float **d, float *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    void w6_input_d "fastconv_w6_input_d"(const double **d, double *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    void w6_weights_f "fastconv_w6_weights_f"(const float **g, float *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    void w6_weights_d "fastconv_w6_weights_d"(const double **g, double *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    int w6_output_f "fastconv_w6_output_f"(const float *s, Py_ssize_t ld, const float *bias, float *y00, float *y01, float *y10, float *y11, Py_ssize_t n) noexcept nogil
    void w6_grad_f "fastconv_w6_grad_f"(const float *g00, const float *g01, const float *g10, const float *g11, float *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    void w6_grad_d "fastconv_w6_grad_d"(const double *g00, const double *g01, const double *g10, const double *g11, double *o, Py_ssize_t ld, Py_ssize_t n) noexcept nogil
    int w6_output_d "fastconv_w6_output_d"(const double *s, Py_ssize_t ld, const double *bias, double *y00, double *y01, double *y10, double *y11, Py_ssize_t n) noexcept nogil


# V and M of one block (elements): 1 MB of float32, an L2 cache.
cdef Py_ssize_t _BLOCK_ELEMENTS = 256 << 10


cdef struct Plan:
    Py_ssize_t N, C, H, W, K, oH, oW, G, Cg, Kg, pt, pl
    Py_ssize_t kh, kw, Sw, S, R  # kernel; its 3x3 sub-kernels (S, Sw across); R = S*Cg
    Py_ssize_t alpha, npos       # patch side and transform positions: 4, 16 (F(2x2, 3x3)) or
                                 # 6, 36 (F(2x2, 5x5), S = 1)
    Py_ssize_t tH, tW            # tiles per sample, down and across
    Py_ssize_t rows              # tile rows per block
    Py_ssize_t blocks
    Py_ssize_t tiles             # tiles in a full block (rows * tW): the leading dimension of V, M
    Py_ssize_t vstride, mstride  # elements from V[xi] to V[xi + 1], M[xi] to M[xi + 1]
    Py_ssize_t span              # input rows one tile row reads (4 for 3x3, 7 for 5x5)
    Py_ssize_t stage             # NCHW: a block's rows of one sample, channels last
    Py_ssize_t per_thread        # scratch elements per thread: V, M, the NCHW staging and
                                 # (F(2x2, 5x5)) Kg outputs an edge tile writes past the edge
    Py_ssize_t weights           # elements of U
    int threads


cdef inline bint _not_finite(floating y) noexcept nogil:
    """y is an infinity or NaN (a comparison: arithmetic tests may be reassociated away)."""
    if floating is float:
        return not (y <= FLT_MAX and y >= -FLT_MAX)
    else:
        return not (y <= DBL_MAX and y >= -DBL_MAX)


cdef inline Py_ssize_t _min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


cdef inline Py_ssize_t _max(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline Py_ssize_t _stream_stride(Py_ssize_t n) noexcept nogil:
    """n rounded up to an odd number of 16-element lines.

    The transforms read or write the 16 matrices V[xi] (or M[xi]) side by side. A stride that
    is a multiple of 4 KB puts all 16 streams in one L1 set, which holds 8 lines: each access
    then misses (10x slower on narrow NCHW layers). An odd multiple of 64 bytes spreads them.
    """
    cdef Py_ssize_t lines = (n + 15) // 16
    return 16 * (lines | 1)


cdef Plan _plan(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t K,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oH, Py_ssize_t oW, Py_ssize_t pt,
                Py_ssize_t pl, Py_ssize_t G, int nt) noexcept nogil:
    """A 5x5 kernel with 16 or more channels per group runs F(2x2, 5x5); others F(2x2, 3x3),
    a 5x5 kernel on 3x3 sub-kernels. F(2x2, 5x5) multiplies 36 times per tile where the four
    sub-kernels take 64, but its GEMMs reduce over Cg instead of 4*Cg: measured, 1.3-1.5x
    faster from 32 channels (fmnist_conv2 NHWC 6.4 -> 4.3 ms), even at 16, slower at 6 (LeNet)."""
    cdef Plan p
    cdef Py_ssize_t total, want
    cdef bint f25
    p.N = N; p.C = C; p.H = H; p.W = W; p.K = K; p.oH = oH; p.oW = oW; p.G = G
    p.Cg = C // G; p.Kg = K // G; p.pt = pt; p.pl = pl
    p.kh = kh; p.kw = kw
    f25 = kh == 5 and kw == 5 and p.Cg >= 16
    p.alpha = 6 if f25 else 4
    p.npos = p.alpha * p.alpha
    p.Sw = 1 if f25 else (kw + 2) // 3
    p.S = 1 if f25 else ((kh + 2) // 3) * p.Sw
    p.R = p.S * p.Cg
    p.tH = (oH + 1) // 2
    p.tW = (oW + 1) // 2
    total = N * p.tH
    # V and M in cache, but at least 2*Kg tiles so that BLAS repacking U[xi] on each call
    # stays small next to the multiply; at least two blocks per thread for balance.
    want = _max(_BLOCK_ELEMENTS // (p.npos * (p.R + p.Kg)), 2 * p.Kg)
    p.rows = _max(1, _min(want // p.tW, total))
    if nt > 1:
        p.rows = _max(1, _min(p.rows, total // (2 * nt)))
    p.blocks = (total + p.rows - 1) // p.rows
    p.tiles = p.rows * p.tW
    p.vstride = _stream_stride(p.tiles * p.R)
    p.mstride = _stream_stride(p.tiles * p.Kg)
    p.span = 6 if f25 else 3 * ((kh + 2) // 3) + 1
    p.stage = _max(_min(H, 2 * p.rows - 2 + p.span) * W * p.Cg, _min(oH, 2 * p.rows) * oW * p.Kg)
    p.per_thread = p.npos * (p.vstride + p.mstride) + p.stage + (p.Kg if f25 else 0)
    p.weights = p.npos * p.R * K
    p.threads = <int>_max(1, _min(nt, p.blocks))
    return p


# ----------------------------------------------------------------------------------------------
# Weight transform U = G g G^T
# ----------------------------------------------------------------------------------------------

cdef void _weight_row(const floating *w, floating *u, const floating *zeros, const Plan *p,
                      Py_ssize_t sc) noexcept nogil:
    """u[xi, sc, :] for sc = s*Cg + c: sub-kernel s = (si, sj) is the 3x3 block of taps from
    (3si, 3sj), zero past the kernel's edge; vectorised over k."""
    cdef Py_ssize_t s = sc // p.Cg, c = sc % p.Cg, a, i, j
    cdef const floating *g[9]
    for a in range(9):
        i = 3 * (s // p.Sw) + a // 3
        j = 3 * (s % p.Sw) + a % 3
        g[a] = w + ((i * p.kw + j) * p.Cg + c) * p.K if (i < p.kh and j < p.kw) else zeros
    if floating is float:
        wino_weights_f(g, u + sc * p.K, p.R * p.K, p.K)
    else:
        wino_weights_d(g, u + sc * p.K, p.R * p.K, p.K)


cdef void _weight_row_5x5(const floating *w, floating *u, const Plan *p,
                          Py_ssize_t c) noexcept nogil:
    """u[xi, c, :] = (G g G^T)[xi] of channel c's 5x5 kernel, F(2x2, 5x5)."""
    cdef Py_ssize_t a
    cdef const floating *g[25]
    for a in range(25):
        g[a] = w + (a * p.Cg + c) * p.K
    if floating is float:
        w6_weights_f(g, u + c * p.K, p.R * p.K, p.K)
    else:
        w6_weights_d(g, u + c * p.K, p.R * p.K, p.K)


cdef inline void _weight_rows(const floating *w, floating *u, const floating *zeros,
                              const Plan *p, Py_ssize_t sc) noexcept nogil:
    if p.alpha == 6:
        _weight_row_5x5(w, u, p, sc)
    else:
        _weight_row(w, u, zeros, p, sc)


cdef void _weights(const floating *w, floating *u, const floating *zeros, const Plan *p,
                   int nt) noexcept nogil:
    """u[xi, s*Cg + c, k] = (G g G^T)[xi] from w[i, j, c, k] (HWIO, for both layouts)."""
    cdef Py_ssize_t sc
    if nt <= 1:
        for sc in range(p.R):
            _weight_rows(w, u, zeros, p, sc)
        return
    for sc in prange(p.R, num_threads=nt, schedule="static"):
        _weight_rows(w, u, zeros, p, sc)


# ----------------------------------------------------------------------------------------------
# Transforms of one tile row, vectorised over channels
# ----------------------------------------------------------------------------------------------
# An image is a pointer and two strides: channel c of pixel (h, w) lies at
# img[(h - h0)*rs + w*ps + c]. NHWC arrays are images as they are; NCHW samples become images
# through a channels-last copy of the rows a block needs (its cost is a small part of a
# transform that runs along long channel vectors instead of a few tiles of a narrow row).

cdef void _input_row(const floating *img, Py_ssize_t rs, Py_ssize_t ps, Py_ssize_t h0,
                     floating *v, const floating *zeros, const Plan *p, Py_ssize_t th,
                     Py_ssize_t t0) noexcept nogil:
    """v[xi, t0 + tw, s*Cg + c] = (B^T d B)[xi] of tile tw of tile row th under sub-kernel s
    (the patch moved by (3si, 3sj)); zeros outside the input."""
    cdef Py_ssize_t Cg = p.Cg, n = p.alpha, tw, a, b, ih, iw, s
    cdef const floating *d[36]
    for tw in range(p.tW):
        for s in range(p.S):
            for a in range(n):
                ih = 2 * th - p.pt + 3 * (s // p.Sw) + a
                for b in range(n):
                    iw = 2 * tw - p.pl + 3 * (s % p.Sw) + b
                    if ih < 0 or ih >= p.H or iw < 0 or iw >= p.W:
                        d[a * n + b] = zeros
                    else:
                        d[a * n + b] = img + (ih - h0) * rs + iw * ps
            if n == 6:
                if floating is float:
                    w6_input_f(d, v + (t0 + tw) * p.R, p.vstride, Cg)
                else:
                    w6_input_d(d, v + (t0 + tw) * p.R, p.vstride, Cg)
            elif floating is float:
                wino_input_nhwc_f(d, v + (t0 + tw) * p.R + s * Cg, p.vstride, Cg)
            else:
                wino_input_nhwc_d(d, v + (t0 + tw) * p.R + s * Cg, p.vstride, Cg)


cdef bint _output_row_5x5(const floating *m, const floating *bias, floating *img, Py_ssize_t rs,
                          Py_ssize_t ps, const Plan *p, Py_ssize_t th,
                          floating *junk) noexcept nogil:
    """As _output_row for F(2x2, 5x5); an edge tile's outputs past the edge go to junk."""
    cdef Py_ssize_t tw
    cdef floating *o0
    cdef floating *o01
    cdef floating *o10
    cdef floating *o11
    cdef bint nonfinite = False
    cdef bint two_rows = 2 * th + 1 < p.oH, two_cols
    for tw in range(p.tW):
        two_cols = 2 * tw + 1 < p.oW
        o0 = img + 2 * tw * ps
        o01 = o0 + ps if two_cols else junk
        o10 = o0 + rs if two_rows else junk
        o11 = o0 + rs + ps if two_rows and two_cols else junk
        if floating is float:
            nonfinite |= w6_output_f(m + tw * p.Kg, p.mstride, bias, o0, o01, o10, o11, p.Kg)
        else:
            nonfinite |= w6_output_d(m + tw * p.Kg, p.mstride, bias, o0, o01, o10, o11, p.Kg)
    return nonfinite


cdef bint _output_row(const floating *m, const floating *bias, floating *img, Py_ssize_t rs,
                      Py_ssize_t ps, const Plan *p, Py_ssize_t th, floating *junk) noexcept nogil:
    """Outputs (2th + i, 2tw + j) of tile row th into img (its row 2th at img):
    bias + (A^T M A)[i, j], M[xi] of tile tw at m[xi*mstride + tw*Kg]; inside oH, oW.

    Returns whether an output is not finite.
    """
    if p.alpha == 6:
        return _output_row_5x5(m, bias, img, rs, ps, p, th, junk)
    cdef Py_ssize_t Kg = p.Kg, ld = p.mstride, tw, k, ow
    cdef const floating *s
    cdef floating *o0
    cdef floating *o1
    cdef floating c0, c1, c2, c3, d0, d1, d2, d3, b, y
    cdef bint nonfinite = False
    cdef bint two_rows = 2 * th + 1 < p.oH, two_cols
    for tw in range(p.tW):
        ow = 2 * tw
        two_cols = ow + 1 < p.oW
        s = m + tw * Kg
        o0 = img + ow * ps
        o1 = o0 + rs
        if two_rows and two_cols:
            if floating is float:
                nonfinite |= wino_output_nhwc_f(s, ld, bias, o0, o0 + ps, o1, o1 + ps, Kg)
            else:
                nonfinite |= wino_output_nhwc_d(s, ld, bias, o0, o0 + ps, o1, o1 + ps, Kg)
            continue
        for k in range(Kg):     # a tile on the bottom or right edge
            # A^T M: c_b, d_b = rows 0 and 1 of column b; then (A^T M) A along the row
            c0 = s[k] + s[4 * ld + k] + s[8 * ld + k]
            c1 = s[ld + k] + s[5 * ld + k] + s[9 * ld + k]
            c2 = s[2 * ld + k] + s[6 * ld + k] + s[10 * ld + k]
            c3 = s[3 * ld + k] + s[7 * ld + k] + s[11 * ld + k]
            d0 = s[4 * ld + k] - s[8 * ld + k] - s[12 * ld + k]
            d1 = s[5 * ld + k] - s[9 * ld + k] - s[13 * ld + k]
            d2 = s[6 * ld + k] - s[10 * ld + k] - s[14 * ld + k]
            d3 = s[7 * ld + k] - s[11 * ld + k] - s[15 * ld + k]
            b = bias[k]
            y = c0 + c1 + c2 + b
            o0[k] = y
            nonfinite |= _not_finite(y)
            if two_cols:
                y = c1 - c2 - c3 + b
                o0[ps + k] = y
                nonfinite |= _not_finite(y)
            if two_rows:
                y = d0 + d1 + d2 + b
                o1[k] = y
                nonfinite |= _not_finite(y)
                if two_cols:
                    y = d1 - d2 - d3 + b
                    o1[ps + k] = y
                    nonfinite |= _not_finite(y)
    return nonfinite


cdef void _grad_row(const floating *img, Py_ssize_t rs, Py_ssize_t ps, Py_ssize_t h0,
                    floating *qb, const floating *zeros, const Plan *p, Py_ssize_t th,
                    Py_ssize_t t0) noexcept nogil:
    """qb[xi, t0 + tw, k] = (A g A^T)[xi] of the 2x2 grad_output tile tw of tile row th
    (zeros past the edge)."""
    cdef Py_ssize_t tw, oh = 2 * th, ow
    cdef const floating *g00
    cdef const floating *g01
    cdef const floating *g10
    cdef const floating *g11
    for tw in range(p.tW):
        ow = 2 * tw
        g00 = img + (oh - h0) * rs + ow * ps
        g01 = g00 + ps if ow + 1 < p.oW else zeros
        g10 = g00 + rs if oh + 1 < p.oH else zeros
        g11 = g10 + ps if (oh + 1 < p.oH and ow + 1 < p.oW) else zeros
        if p.alpha == 6:
            if floating is float:
                w6_grad_f(g00, g01, g10, g11, qb + (t0 + tw) * p.Kg, p.mstride, p.Kg)
            else:
                w6_grad_d(g00, g01, g10, g11, qb + (t0 + tw) * p.Kg, p.mstride, p.Kg)
        elif floating is float:
            wino_grad_nhwc_f(g00, g01, g10, g11, qb + (t0 + tw) * p.Kg, p.mstride, p.Kg)
        else:
            wino_grad_nhwc_d(g00, g01, g10, g11, qb + (t0 + tw) * p.Kg, p.mstride, p.Kg)


# ----------------------------------------------------------------------------------------------
# NCHW samples as channels-last images
# ----------------------------------------------------------------------------------------------

cdef inline Py_ssize_t _sample_end(const Plan *p, Py_ssize_t q, Py_ssize_t q1) noexcept nogil:
    """End of the tile rows [q, end) of q's sample within [q, q1)."""
    return _min(q1, (q // p.tH + 1) * p.tH)


cdef void _input_nchw(const floating *x, floating *v, floating *stage, const floating *zeros,
                      const Plan *p, Py_ssize_t c0, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    """As _input_nhwc, from NCHW x through a channels-last copy of each sample's rows."""
    cdef Py_ssize_t q = q0, end, n, th0, h0, h1, HW = p.H * p.W, th
    while q < q1:
        end = _sample_end(p, q, q1)
        n = q // p.tH
        th0 = q - n * p.tH
        h0 = _max(0, 2 * th0 - p.pt)
        h1 = _min(p.H, 2 * (end - 1 - n * p.tH) - p.pt + p.span)
        if h1 > h0:
            to_channels_last(x + (n * p.C + c0) * HW + h0 * p.W, HW, p.Cg, (h1 - h0) * p.W,
                              stage)
        for th in range(th0, th0 + end - q):
            _input_row(stage, p.W * p.Cg, p.Cg, h0, v, zeros, p, th, (q - q0 + th - th0) * p.tW)
        q = end


cdef void _input_nhwc(const floating *x, floating *v, const floating *zeros, const Plan *p,
                      Py_ssize_t c0, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    """v[xi, t, s*Cg + c] for the tiles t of tile rows [q0, q1), channels c0 + [0, Cg)."""
    cdef Py_ssize_t q, n
    for q in range(q0, q1):
        n = q // p.tH
        _input_row(x + n * p.H * p.W * p.C + c0, p.W * p.C, p.C, 0, v, zeros, p,
                   q - n * p.tH, (q - q0) * p.tW)


cdef bint _output_nchw(const floating *m, const floating *bias, floating *out, floating *stage,
                       floating *junk, const Plan *p, Py_ssize_t k0, Py_ssize_t q0,
                       Py_ssize_t q1) noexcept nogil:
    """As _output_nhwc, into NCHW out: each sample's rows channels-last in stage, then moved."""
    cdef Py_ssize_t q = q0, end, n, th0, th, rows, P = p.oH * p.oW
    cdef bint nonfinite = False
    while q < q1:
        end = _sample_end(p, q, q1)
        n = q // p.tH
        th0 = q - n * p.tH
        for th in range(th0, th0 + end - q):
            nonfinite |= _output_row(m + (q - q0 + th - th0) * p.tW * p.Kg, bias + k0,
                                     stage + 2 * (th - th0) * p.oW * p.Kg, p.oW * p.Kg, p.Kg,
                                     p, th, junk)
        rows = _min(p.oH, 2 * (th0 + end - q)) - 2 * th0
        from_channels_last(stage, P, p.Kg, rows * p.oW,
                            out + (n * p.K + k0) * P + 2 * th0 * p.oW)
        q = end
    return nonfinite


cdef bint _output_nhwc(const floating *m, const floating *bias, floating *out, floating *junk,
                       const Plan *p, Py_ssize_t k0, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    """out[n, 2th + i, 2tw + j, k0 + k] = bias + (A^T M A)[i, j] of each tile (inside oH, oW).

    Returns whether an output is not finite.
    """
    cdef Py_ssize_t q, n, th
    cdef bint nonfinite = False
    for q in range(q0, q1):
        n = q // p.tH
        th = q - n * p.tH
        nonfinite |= _output_row(m + (q - q0) * p.tW * p.Kg, bias + k0,
                                 out + ((n * p.oH + 2 * th) * p.oW) * p.K + k0, p.oW * p.K, p.K,
                                 p, th, junk)
    return nonfinite


cdef bint _block(const floating *x, const floating *u, const floating *bias, floating *out,
                 floating *scratch, const floating *zeros, const Plan *p, bint nhwc,
                 Py_ssize_t blk) noexcept nogil:
    """Block blk of tile rows; True if an output is not finite."""
    cdef Py_ssize_t q0 = blk * p.rows, q1 = _min(q0 + p.rows, p.N * p.tH)
    cdef Py_ssize_t T = (q1 - q0) * p.tW, xi, gi
    cdef floating *v = scratch
    cdef floating *m = v + p.npos * p.vstride
    cdef floating *stage = m + p.npos * p.mstride
    cdef floating *junk = stage + p.stage
    cdef bint nonfinite = False
    for gi in range(p.G):
        if nhwc:
            _input_nhwc(x, v, zeros, p, gi * p.Cg, q0, q1)
        else:
            _input_nchw(x, v, stage, zeros, p, gi * p.Cg, q0, q1)
        for xi in range(p.npos):    # M[xi] (T, Kg) = V[xi] (T, R) @ U[xi] (R, Kg)
            gemm(False, False, T, p.Kg, p.R, v + xi * p.vstride, p.R,
                 u + xi * p.R * p.K + gi * p.Kg, p.K, 0, m + xi * p.mstride, p.Kg)
        if nhwc:
            nonfinite |= _output_nhwc(m, bias, out, junk, p, gi * p.Kg, q0, q1)
        else:
            nonfinite |= _output_nchw(m, bias, out, stage, junk, p, gi * p.Kg, q0, q1)
    return nonfinite


# ----------------------------------------------------------------------------------------------
# Python boundary
# ----------------------------------------------------------------------------------------------

cdef Py_ssize_t _forward(const floating *x, const floating *w, const floating *bias,
                         floating *out, floating *ws, const Plan *p, bint nhwc) noexcept nogil:
    """ws: U, then the threads' scratch, then (NHWC) zeros for the padding.

    Returns how many blocks have outputs that are not finite.
    """
    cdef floating *u = ws
    cdef floating *scratch = ws + p.weights
    cdef floating *zeros = scratch + p.threads * p.per_thread
    cdef floating *mine = NULL
    cdef Py_ssize_t blk, nonfinite = 0
    cdef int tid = 0
    memset(zeros, 0, _max(p.Cg, p.K) * sizeof(floating))
    _weights(w, u, zeros, p, p.threads)
    if p.threads <= 1:
        flush_denormals_enter()
        for blk in range(p.blocks):
            nonfinite += _block(x, u, bias, out, scratch, zeros, p, nhwc, blk)
        flush_denormals_exit()
        return nonfinite
    with parallel(num_threads=p.threads):
        flush_denormals_enter()
        tid = threadid()
        mine = scratch + tid * p.per_thread
        for blk in prange(p.blocks, schedule="dynamic"):
            nonfinite += _block(x, u, bias, out, mine, zeros, p, nhwc, blk)
        flush_denormals_exit()
    return nonfinite


def workspace_elements(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t K,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oH, Py_ssize_t oW,
                       Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t groups,
                       int num_threads):
    """Scratch elements the forward needs: U, each thread's V and M, and a zero vector."""
    cdef Plan p = _plan(N, C, H, W, K, kh, kw, oH, oW, pad_top, pad_left, groups, num_threads)
    return p.weights + p.threads * p.per_thread + _max(p.Cg, p.K)


cdef Plan _checked_plan(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t K,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oH, Py_ssize_t oW,
                        Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t groups,
                        int num_threads, Py_ssize_t have) except *:
    cdef Plan p = _plan(N, C, H, W, K, kh, kw, oH, oW, pad_top, pad_left, groups, num_threads)
    cdef Py_ssize_t need = p.weights + p.threads * p.per_thread + _max(p.Cg, p.K)
    if have < need:
        raise ValueError(f"workspace too small: {have} elements, need {need}")
    return p


def _forward_checked(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                     const floating[::1] bias, floating[:, :, :, ::1] out,
                     floating[::1] workspace, Py_ssize_t pad_top, Py_ssize_t pad_left,
                     Py_ssize_t groups, int num_threads, bint nhwc):
    cdef Plan p
    cdef Py_ssize_t nonfinite
    if x.shape[0] == 0:
        return False
    if nhwc:
        p = _checked_plan(x.shape[0], x.shape[3], x.shape[1], x.shape[2], weight.shape[3],
                          weight.shape[0], weight.shape[1], out.shape[1], out.shape[2], pad_top,
                          pad_left, groups, num_threads, workspace.shape[0])
    else:
        p = _checked_plan(x.shape[0], x.shape[1], x.shape[2], x.shape[3], weight.shape[3],
                          weight.shape[0], weight.shape[1], out.shape[2], out.shape[3], pad_top,
                          pad_left, groups, num_threads, workspace.shape[0])
    with nogil:
        nonfinite = _forward(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                             &workspace[0], &p, nhwc)
    return nonfinite > 0


def forward_nchw(x, weight, bias, out, workspace, Py_ssize_t pad_top, Py_ssize_t pad_left,
                 Py_ssize_t groups, int num_threads):
    """out := bias + conv2d(x, weight), stride 1: x (N, C, H, W), weight (kh, kw, C/G, K) -
    in Keras's HWIO layout for both data layouts (its transform reads K contiguously).

    Returns True when some output is not finite: an infinity or NaN in the input spreads over
    the whole 4x4 patch in Winograd's transform, so the caller must recompute such a result
    with a direct sum to get the same NaN and infinity positions.
    """
    return _forward_checked(x, weight, bias, out, workspace, pad_top, pad_left, groups,
                            num_threads, False)


def forward_nhwc(x, weight, bias, out, workspace, Py_ssize_t pad_top, Py_ssize_t pad_left,
                 Py_ssize_t groups, int num_threads):
    """As forward_nchw, for x (N, H, W, C) and out (N, oH, oW, K)."""
    return _forward_checked(x, weight, bias, out, workspace, pad_top, pad_left, groups,
                            num_threads, True)


# ----------------------------------------------------------------------------------------------
# Weight gradient: F(3x3, 2x2)
# ----------------------------------------------------------------------------------------------
# Differentiating the forward identity sum(g * Y) = sum over xi of (A g A^T) (.) U (.) V with
# respect to the weights gives, for each tile with grad_output g (2x2, zeros past the edge),
#     dW += G^T [ (A g A^T) (.) (B^T d B) ] G,      A = [[1, 0], [1, 1], [1, -1], [0, -1]]
# so the 16 products summed over tiles are again 16 GEMMs (over the tiles), and one transform
# by G^T . G at the end turns the 16 sums into the 3x3 kernel gradient. F(5x5, 2x2) is the
# same with F(2x2, 5x5)'s 6x6 transforms: 36 GEMMs, and G^T M G is 5x5.

cdef void _grad_tiles_nhwc(const floating *gout, floating *qb, const floating *zeros,
                           const Plan *p, Py_ssize_t k0, Py_ssize_t q0,
                           Py_ssize_t q1) noexcept nogil:
    """qb[xi, t, k] = (A g A^T)[xi] of tile t's grad_output, channels k0 + [0, Kg)."""
    cdef Py_ssize_t q, n
    for q in range(q0, q1):
        n = q // p.tH
        _grad_row(gout + n * p.oH * p.oW * p.K + k0, p.oW * p.K, p.K, 0, qb, zeros, p,
                  q - n * p.tH, (q - q0) * p.tW)


cdef void _grad_tiles_nchw(const floating *gout, floating *qb, floating *stage,
                           const floating *zeros, const Plan *p, Py_ssize_t k0, Py_ssize_t q0,
                           Py_ssize_t q1) noexcept nogil:
    """As _grad_tiles_nhwc, from NCHW grad_output through a channels-last copy of its rows."""
    cdef Py_ssize_t q = q0, end, n, th0, th, h0, h1, P = p.oH * p.oW
    while q < q1:
        end = _sample_end(p, q, q1)
        n = q // p.tH
        th0 = q - n * p.tH
        h0 = 2 * th0
        h1 = _min(p.oH, 2 * (th0 + end - q))
        to_channels_last(gout + (n * p.K + k0) * P + h0 * p.oW, P, p.Kg, (h1 - h0) * p.oW, stage)
        for th in range(th0, th0 + end - q):
            _grad_row(stage, p.oW * p.Kg, p.Kg, h0, qb, zeros, p, th, (q - q0 + th - th0) * p.tW)
        q = end


cdef void _gw_block(const floating *gout, const floating *x, floating *acc, floating *scratch,
                    const floating *zeros, const Plan *p, bint nhwc, Py_ssize_t blk) noexcept nogil:
    """acc[xi] += the block's products: (R, K) per xi in NHWC, (K, R) in NCHW."""
    cdef Py_ssize_t q0 = blk * p.rows, q1 = _min(q0 + p.rows, p.N * p.tH)
    cdef Py_ssize_t T = (q1 - q0) * p.tW, xi, gi, R = p.R, Kg = p.Kg, K = p.K
    cdef floating *v = scratch
    cdef floating *qb = v + p.npos * p.vstride
    cdef floating *stage = qb + p.npos * p.mstride
    for gi in range(p.G):
        if nhwc:
            _input_nhwc(x, v, zeros, p, gi * p.Cg, q0, q1)
            _grad_tiles_nhwc(gout, qb, zeros, p, gi * Kg, q0, q1)
            for xi in range(p.npos):    # (R, Kg) += V[xi]^T (R, T) @ Q[xi] (T, Kg)
                gemm(True, False, R, Kg, T, v + xi * p.vstride, R,
                     qb + xi * p.mstride, Kg, 1, acc + xi * R * K + gi * Kg, K)
        else:
            _input_nchw(x, v, stage, zeros, p, gi * p.Cg, q0, q1)
            _grad_tiles_nchw(gout, qb, stage, zeros, p, gi * Kg, q0, q1)
            for xi in range(p.npos):    # (Kg, R) += Q[xi]^T (Kg, T) @ V[xi] (T, R)
                gemm(True, False, Kg, R, T, qb + xi * p.mstride, Kg,
                     v + xi * p.vstride, R, 1, acc + (xi * K + gi * Kg) * R, R)


cdef inline void _kernel_gradient(const floating *m, Py_ssize_t step, floating *gw,
                                  Py_ssize_t gw_step) noexcept nogil:
    """gw[(i*3 + j) * gw_step] = (G^T M G)[i, j] for M[xi] = m[xi * step]."""
    cdef floating h = 0.5
    cdef floating r[12]     # G^T M: 3 x 4
    cdef int b, i
    for b in range(4):
        r[b] = m[b * step] + h * (m[(4 + b) * step] + m[(8 + b) * step])
        r[4 + b] = h * (m[(4 + b) * step] - m[(8 + b) * step])
        r[8 + b] = h * (m[(4 + b) * step] + m[(8 + b) * step]) + m[(12 + b) * step]
    for i in range(3):      # (G^T M) G
        gw[(i * 3) * gw_step] = r[i * 4] + h * (r[i * 4 + 1] + r[i * 4 + 2])
        gw[(i * 3 + 1) * gw_step] = h * (r[i * 4 + 1] - r[i * 4 + 2])
        gw[(i * 3 + 2) * gw_step] = h * (r[i * 4 + 1] + r[i * 4 + 2]) + r[i * 4 + 3]


# G of F(2x2, 5x5) (6 x 5): the kernel gradient is G^T M G
cdef double[6][5] _G5 = [[0.25, 0, 0, 0, 0],
                          [-1 / 6., -1 / 6., -1 / 6., -1 / 6., -1 / 6.],
                          [-1 / 6., 1 / 6., -1 / 6., 1 / 6., -1 / 6.],
                          [1 / 24., 1 / 12., 1 / 6., 1 / 3., 2 / 3.],
                          [1 / 24., -1 / 12., 1 / 6., -1 / 3., 2 / 3.],
                          [0, 0, 0, 0, 1]]


cdef inline void _kernel_gradient_5x5(const floating *m, Py_ssize_t step,
                                      floating *gw) noexcept nogil:
    """gw[i*5 + j] = (G^T M G)[i, j] for M[xi] = m[xi * step] (6 x 6)."""
    cdef floating r[30]     # G^T M: 5 x 6
    cdef floating s
    cdef int a, b, i, j
    for i in range(5):
        for b in range(6):
            s = 0
            for a in range(6):
                s = s + <floating>_G5[a][i] * m[(a * 6 + b) * step]
            r[i * 6 + b] = s
    for i in range(5):
        for j in range(5):
            s = 0
            for b in range(6):
                s = s + r[i * 6 + b] * <floating>_G5[b][j]
            gw[i * 5 + j] = s


cdef void _grad_weight(const floating *gout, const floating *x, floating *gw, floating *ws,
                       const Plan *p, bint nhwc) noexcept nogil:
    """ws: thread 0's accumulator, the threads' scratch, zeros, the other accumulators."""
    cdef Py_ssize_t acc_n = p.weights, e, a, blk, RK = p.R * p.K
    cdef floating *scratch = ws + acc_n
    cdef floating *zeros = scratch + p.threads * p.per_thread
    cdef floating *others = zeros + _max(p.Cg, p.K)
    cdef floating *mine = NULL
    cdef floating *acc = NULL
    cdef floating s
    cdef int tid = 0
    memset(zeros, 0, _max(p.Cg, p.K) * sizeof(floating))
    memset(ws, 0, acc_n * sizeof(floating))
    memset(others, 0, (p.threads - 1) * acc_n * sizeof(floating))
    if p.threads <= 1:
        flush_denormals_enter()
        for blk in range(p.blocks):
            _gw_block(gout, x, ws, scratch, zeros, p, nhwc, blk)
        flush_denormals_exit()
    else:
        with parallel(num_threads=p.threads):
            flush_denormals_enter()
            tid = threadid()
            mine = scratch + tid * p.per_thread
            acc = ws if tid == 0 else others + (tid - 1) * acc_n
            for blk in prange(p.blocks, schedule="static"):   # the same blocks per thread: same bits
                _gw_block(gout, x, acc, mine, zeros, p, nhwc, blk)
            flush_denormals_exit()
        for e in prange(acc_n, num_threads=p.threads, schedule="static", nogil=True):
            s = ws[e]
            for a in range(p.threads - 1):
                s = s + others[a * acc_n + e]
            ws[e] = s
    # the sums of each (sub-kernel, c, k) -> its 3x3 (or 5x5) block of the kernel's gradient
    if p.threads <= 1:
        for e in range(RK):
            _gradient_taps(ws, gw, p, nhwc, e)
    else:
        for e in prange(RK, num_threads=p.threads, schedule="static", nogil=True):
            _gradient_taps(ws, gw, p, nhwc, e)


cdef void _gradient_taps(const floating *ws, floating *gw, const Plan *p, bint nhwc,
                         Py_ssize_t e) noexcept nogil:
    """The taps of gw that entry e of the summed products gives (G^T M G: 3x3, or 5x5 for
    F(2x2, 5x5))."""
    cdef Py_ssize_t sub, c, k, i, j, tap, side = p.alpha - 1
    cdef floating taps[25]
    if p.alpha == 6:
        _kernel_gradient_5x5(ws + e, p.R * p.K, taps)
    else:
        _kernel_gradient(ws + e, p.R * p.K, taps, 1)
    if nhwc:    # ws[xi, sub*Cg + c, k]
        sub = e // (p.Cg * p.K)
        c = (e // p.K) % p.Cg
        k = e % p.K
    else:       # ws[xi, k, sub*Cg + c]
        k = e // p.R
        sub = (e % p.R) // p.Cg
        c = e % p.Cg
    for tap in range(side * side):
        i = 3 * (sub // p.Sw) + tap // side
        j = 3 * (sub % p.Sw) + tap % side
        if i < p.kh and j < p.kw:
            if nhwc:
                gw[((i * p.kw + j) * p.Cg + c) * p.K + k] = taps[tap]
            else:
                gw[((k * p.Cg + c) * p.kh + i) * p.kw + j] = taps[tap]


def grad_weight_workspace_elements(Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                                   Py_ssize_t K, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t oH,
                                   Py_ssize_t oW, Py_ssize_t pad_top, Py_ssize_t pad_left,
                                   Py_ssize_t groups, int num_threads):
    """Scratch elements grad_weight needs: one 16 x R x K accumulator per thread, each thread's
    V and transformed grad_output, and a zero vector."""
    cdef Plan p = _plan(N, C, H, W, K, kh, kw, oH, oW, pad_top, pad_left, groups, num_threads)
    return p.threads * p.weights + p.threads * p.per_thread + _max(p.Cg, p.K)


def _grad_weight_checked(const floating[:, :, :, ::1] grad_output, const floating[:, :, :, ::1] x,
                         floating[:, :, :, ::1] grad_weight, floating[::1] workspace,
                         Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t groups,
                         int num_threads, bint nhwc):
    cdef Plan p
    cdef Py_ssize_t need
    if nhwc:
        p = _plan(x.shape[0], x.shape[3], x.shape[1], x.shape[2], grad_weight.shape[3],
                  grad_weight.shape[0], grad_weight.shape[1], grad_output.shape[1],
                  grad_output.shape[2], pad_top, pad_left, groups, num_threads)
    else:
        p = _plan(x.shape[0], x.shape[1], x.shape[2], x.shape[3], grad_weight.shape[0],
                  grad_weight.shape[2], grad_weight.shape[3], grad_output.shape[2],
                  grad_output.shape[3], pad_top, pad_left, groups, num_threads)
    need = p.threads * p.weights + p.threads * p.per_thread + _max(p.Cg, p.K)
    if workspace.shape[0] < need:
        raise ValueError(f"workspace too small: {workspace.shape[0]} elements, need {need}")
    if x.shape[0] == 0:
        grad_weight[...] = 0
        return
    with nogil:
        _grad_weight(&grad_output[0, 0, 0, 0], &x[0, 0, 0, 0], &grad_weight[0, 0, 0, 0],
                     &workspace[0], &p, nhwc)


def grad_weight_nchw(grad_output, x, grad_weight, workspace, Py_ssize_t pad_top,
                     Py_ssize_t pad_left, Py_ssize_t groups, int num_threads):
    """grad_weight := dL/dW of a stride-1 convolution, NCHW: x (N, C, H, W), weight
    (K, C/G, kh, kw). May hold infinities or NaN where a direct sum would not; the caller checks."""
    _grad_weight_checked(grad_output, x, grad_weight, workspace, pad_top, pad_left, groups,
                         num_threads, False)


def grad_weight_nhwc(grad_output, x, grad_weight, workspace, Py_ssize_t pad_top,
                     Py_ssize_t pad_left, Py_ssize_t groups, int num_threads):
    """As grad_weight_nchw for x (N, H, W, C) and weight (kh, kw, C/G, K)."""
    _grad_weight_checked(grad_output, x, grad_weight, workspace, pad_top, pad_left, groups,
                         num_threads, True)
