"""Grouped convolution in NHWC with narrow groups (ResNeXt's 32 groups of 4 channels), float32.

Legend as in _conv_direct: x (N, H, W, C), weight (kh, kw, g, K) (HWIO), out (N, oH, oW, K),
here with g = C/G = K/G channels per group on both sides, g in {2, 4, 8, 16}, C = K a
multiple of 16.

A group's GEMM would be g x g: too small for BLAS, and a scalar loop over it is slow (7x
PyTorch's time). Instead each 16-lane vector of output channels k0..k0+15 is computed at
once: output channel k reads input channels (k // g)*g + c for c < g, which lie in the
vector of the same 16 input channels, lane l taking lane (l // g)*g + c. That is one fixed
register shuffle per c:
    out[p, k0:k0+16] = bias + sum over taps (i, j) and c < g of
                       shuffle(x[pixel under (p, i, j), k0:k0+16], c) * w[i, j, c, k0:k0+16]
The weight gradient is the same sum with the roles turned:
    gw[i, j, c, k0:k0+16] = sum over pixels p of shuffle(x[...], c) * grad_output[p, k0:k0+16]

Parallelism (OpenMP, static schedules; each task owns its outputs and sums in a fixed
order, so results are bitwise reproducible and independent of the thread count):
    forward      (n, oh) output rows, 4 output pixels x 16 channels per pass
    grad_weight  (16-channel block, kernel row i): all samples, in order
The input gradient of a stride-1 layer is the forward of the transposed convolution (the
Python caller makes it); other strides use _conv_direct.
"""
from cython.parallel cimport prange

from fastconv._ext._fpenv cimport flush_denormals_enter, flush_denormals_exit

cdef float ZEROS[16]     # the input of taps in the padding (static storage: zeros)

cdef extern from *:
    """
    #include <stddef.h>
    #include <string.h>
    typedef float fastconv_v16 __attribute__((vector_size(64)));
    typedef int fastconv_i16 __attribute__((vector_size(64)));

    /* unaligned 16-float loads and stores */
    #define FASTCONV_G_LOAD(v, p) memcpy(&(v), (p), sizeof(fastconv_v16))
    #define FASTCONV_G_STORE(p, v) memcpy((p), &(v), sizeof(fastconv_v16))

    /* masks[c] lane l = (l / g) * g + c: the input lane output lane l reads for its c-th input */
    static inline void fastconv_g_masks(fastconv_i16 *masks, ptrdiff_t g) {
        for (ptrdiff_t c = 0; c < g; c++)
            for (int l = 0; l < 16; l++)
                masks[c][l] = (int)((l / g) * g + c);
    }

    /* One output row (n, oh), for groups of G channels (a constant, so that the loops over c
       unroll and the accumulators stay in registers). 4 output pixels per pass; a pixel whose
       tap falls in the padding reads a vector of zeros, so the passes have no branches and a
       partial last pass computes pixels it does not store. */
    #define FASTCONV_GROUPED_FORWARD_ROW(G) \\
    static void fastconv_grouped_forward_row_##G( \\
            const float *x, const float *w, const float *bias, float *out, const float *zeros, \\
            ptrdiff_t H, ptrdiff_t W, ptrdiff_t K, ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t oW, \\
            ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t dh, ptrdiff_t dw, \\
            ptrdiff_t oh) { \\
        fastconv_i16 masks[G]; \\
        fastconv_g_masks(masks, G); \\
        for (ptrdiff_t ow0 = 0; ow0 < oW; ow0 += 4) { \\
            for (ptrdiff_t k0 = 0; k0 < K; k0 += 16) { \\
                fastconv_v16 a0, a1, a2, a3; \\
                FASTCONV_G_LOAD(a0, bias + k0); \\
                a1 = a0; a2 = a0; a3 = a0; \\
                for (ptrdiff_t i = 0; i < kh; i++) { \\
                    const ptrdiff_t ih = oh * sh - pt + i * dh; \\
                    if (ih < 0 || ih >= H) continue; \\
                    const float *xr = x + ih * W * K + k0; \\
                    for (ptrdiff_t j = 0; j < kw; j++) { \\
                        const float *wp = w + (i * kw + j) * G * K + k0; \\
                        const float *src[4]; \\
                        for (int q = 0; q < 4; q++) { \\
                            const ptrdiff_t iw = (ow0 + q) * sw - pl + j * dw; \\
                            src[q] = (iw >= 0 && iw < W) ? xr + iw * K : zeros; \\
                        } \\
                        fastconv_v16 x0, x1, x2, x3, wv; \\
                        FASTCONV_G_LOAD(x0, src[0]); FASTCONV_G_LOAD(x1, src[1]); \\
                        FASTCONV_G_LOAD(x2, src[2]); FASTCONV_G_LOAD(x3, src[3]); \\
                        for (int c = 0; c < G; c++) { \\
                            FASTCONV_G_LOAD(wv, wp + c * K); \\
                            a0 += __builtin_shuffle(x0, masks[c]) * wv; \\
                            a1 += __builtin_shuffle(x1, masks[c]) * wv; \\
                            a2 += __builtin_shuffle(x2, masks[c]) * wv; \\
                            a3 += __builtin_shuffle(x3, masks[c]) * wv; \\
                        } \\
                    } \\
                } \\
                float *o = out + ow0 * K + k0; \\
                FASTCONV_G_STORE(o, a0); \\
                if (ow0 + 1 < oW) FASTCONV_G_STORE(o + K, a1); \\
                if (ow0 + 2 < oW) FASTCONV_G_STORE(o + 2 * K, a2); \\
                if (ow0 + 3 < oW) FASTCONV_G_STORE(o + 3 * K, a3); \\
            } \\
        } \\
    }

    /* gw[i, j, c, k0:k0+16] for the taps j of kernel row i, summed over the N samples. */
    #define FASTCONV_GROUPED_GRAD_WEIGHT(G) \\
    static void fastconv_grouped_grad_weight_task_##G( \\
            const float *gout, const float *x, float *gw, ptrdiff_t N, ptrdiff_t H, \\
            ptrdiff_t W, ptrdiff_t K, ptrdiff_t kw, ptrdiff_t oH, ptrdiff_t oW, \\
            ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t dh, ptrdiff_t dw, \\
            ptrdiff_t i, ptrdiff_t k0) { \\
        fastconv_i16 masks[G]; \\
        fastconv_g_masks(masks, G); \\
        for (ptrdiff_t j = 0; j < kw; j++) { \\
            fastconv_v16 acc[G]; \\
            for (int c = 0; c < G; c++) acc[c] = (fastconv_v16){0}; \\
            for (ptrdiff_t n = 0; n < N; n++) { \\
                for (ptrdiff_t oh = 0; oh < oH; oh++) { \\
                    const ptrdiff_t ih = oh * sh - pt + i * dh; \\
                    if (ih < 0 || ih >= H) continue; \\
                    const float *xr = x + (n * H + ih) * W * K + k0; \\
                    const float *gr = gout + (n * oH + oh) * oW * K + k0; \\
                    for (ptrdiff_t ow = 0; ow < oW; ow++) { \\
                        const ptrdiff_t iw = ow * sw - pl + j * dw; \\
                        if (iw < 0 || iw >= W) continue; \\
                        fastconv_v16 xv, gv; \\
                        FASTCONV_G_LOAD(xv, xr + iw * K); \\
                        FASTCONV_G_LOAD(gv, gr + ow * K); \\
                        for (int c = 0; c < G; c++) \\
                            acc[c] += __builtin_shuffle(xv, masks[c]) * gv; \\
                    } \\
                } \\
            } \\
            for (int c = 0; c < G; c++) \\
                FASTCONV_G_STORE(gw + ((i * kw + j) * G + c) * K + k0, acc[c]); \\
        } \\
    }

    FASTCONV_GROUPED_FORWARD_ROW(2)
    FASTCONV_GROUPED_FORWARD_ROW(4)
    FASTCONV_GROUPED_FORWARD_ROW(8)
    FASTCONV_GROUPED_FORWARD_ROW(16)
    FASTCONV_GROUPED_GRAD_WEIGHT(2)
    FASTCONV_GROUPED_GRAD_WEIGHT(4)
    FASTCONV_GROUPED_GRAD_WEIGHT(8)

    static void fastconv_grouped_forward_row(
            const float *x, const float *w, const float *bias, float *out, const float *zeros,
            ptrdiff_t H, ptrdiff_t W, ptrdiff_t K, ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t g,
            ptrdiff_t oW, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t pt, ptrdiff_t pl,
            ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t oh) {
        switch (g) {
        case 2: fastconv_grouped_forward_row_2(x, w, bias, out, zeros, H, W, K, kh, kw, oW, sh, sw, pt, pl, dh, dw, oh); break;
        case 4: fastconv_grouped_forward_row_4(x, w, bias, out, zeros, H, W, K, kh, kw, oW, sh, sw, pt, pl, dh, dw, oh); break;
        case 8: fastconv_grouped_forward_row_8(x, w, bias, out, zeros, H, W, K, kh, kw, oW, sh, sw, pt, pl, dh, dw, oh); break;
        default: fastconv_grouped_forward_row_16(x, w, bias, out, zeros, H, W, K, kh, kw, oW, sh, sw, pt, pl, dh, dw, oh);
        }
    }

    static void fastconv_grouped_grad_weight_task(
            const float *gout, const float *x, float *gw, ptrdiff_t N, ptrdiff_t H,
            ptrdiff_t W, ptrdiff_t K, ptrdiff_t kw, ptrdiff_t g, ptrdiff_t oH, ptrdiff_t oW,
            ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t pt, ptrdiff_t pl, ptrdiff_t dh, ptrdiff_t dw,
            ptrdiff_t i, ptrdiff_t k0) {
        switch (g) {
        case 2: fastconv_grouped_grad_weight_task_2(gout, x, gw, N, H, W, K, kw, oH, oW, sh, sw, pt, pl, dh, dw, i, k0); break;
        case 4: fastconv_grouped_grad_weight_task_4(gout, x, gw, N, H, W, K, kw, oH, oW, sh, sw, pt, pl, dh, dw, i, k0); break;
        default: fastconv_grouped_grad_weight_task_8(gout, x, gw, N, H, W, K, kw, oH, oW, sh, sw, pt, pl, dh, dw, i, k0);
        }
    }
    """
    void forward_row "fastconv_grouped_forward_row"(
        const float *x, const float *w, const float *bias, float *out, const float *zeros,
        Py_ssize_t H,
        Py_ssize_t W, Py_ssize_t K, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t g, Py_ssize_t oW,
        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
        Py_ssize_t dw, Py_ssize_t oh) noexcept nogil
    void grad_weight_task "fastconv_grouped_grad_weight_task"(
        const float *gout, const float *x, float *gw, Py_ssize_t N, Py_ssize_t H, Py_ssize_t W,
        Py_ssize_t K, Py_ssize_t kw, Py_ssize_t g, Py_ssize_t oH, Py_ssize_t oW, Py_ssize_t sh,
        Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
        Py_ssize_t i, Py_ssize_t k0) noexcept nogil


def supports(Py_ssize_t channels, Py_ssize_t out_channels, Py_ssize_t groups, str op):
    """Whether op ("forward" or "grad_weight") takes a layer: groups of g in {2, 4, 8, 16}
    channels on both sides (the weight gradient g <= 8: its g accumulators stay in
    registers), C a multiple of 16."""
    if (op not in ("forward", "grad_weight") or groups <= 1 or channels != out_channels
            or channels % groups or channels % 16):
        return False
    g = channels // groups
    return g in (2, 4, 8) or (g == 16 and op == "forward")


def _check(Py_ssize_t C, Py_ssize_t K, Py_ssize_t groups, str op):
    if not supports(C, K, groups, op):
        raise ValueError(f"{op}: groups of 2, 4, 8 (or 16) channels, C = K a multiple of 16 "
                         f"expected. Received: C={C}, K={K}, groups={groups}")


def forward_nhwc(const float[:, :, :, ::1] x, const float[:, :, :, ::1] weight,
                 const float[::1] bias, float[:, :, :, ::1] out,
                 Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                 Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                 Py_ssize_t groups, int num_threads):
    """out := conv2d(x, weight) + bias  (NHWC, narrow groups)"""
    cdef Py_ssize_t N = out.shape[0], oH = out.shape[1], oW = out.shape[2], K = out.shape[3]
    cdef Py_ssize_t H = x.shape[1], W = x.shape[2], kh = weight.shape[0], kw = weight.shape[1]
    cdef Py_ssize_t g = weight.shape[2], r, n, oh
    _check(x.shape[3], K, groups, "forward")
    if N == 0 or oH == 0 or oW == 0:
        return
    with nogil:
        flush_denormals_enter()
        for r in prange(N * oH, schedule="static", num_threads=max(num_threads, 1)):
            n = r // oH
            oh = r - n * oH
            forward_row(&x[n, 0, 0, 0], &weight[0, 0, 0, 0], &bias[0], &out[n, oh, 0, 0],
                        ZEROS, H, W, K, kh, kw, g, oW, stride_h, stride_w, pad_top, pad_left,
                        dilation_h, dilation_w, oh)
        flush_denormals_exit()


def grad_weight_nhwc(const float[:, :, :, ::1] grad_output, const float[:, :, :, ::1] x,
                     float[:, :, :, ::1] grad_weight,
                     Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
                     Py_ssize_t pad_left, Py_ssize_t dilation_h, Py_ssize_t dilation_w,
                     Py_ssize_t groups, int num_threads):
    """grad_weight := sum_n correlation of x with grad_output  (NHWC, narrow groups)"""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], K = grad_weight.shape[3]
    cdef Py_ssize_t kh = grad_weight.shape[0], kw = grad_weight.shape[1]
    cdef Py_ssize_t g = grad_weight.shape[2], oH = grad_output.shape[1]
    cdef Py_ssize_t oW = grad_output.shape[2], blocks = K // 16, t
    _check(x.shape[3], K, groups, "grad_weight")
    if N == 0 or oH == 0 or oW == 0:
        grad_weight[...] = 0
        return
    with nogil:
        flush_denormals_enter()
        for t in prange(kh * blocks, schedule="static", num_threads=max(num_threads, 1)):
            grad_weight_task(&grad_output[0, 0, 0, 0], &x[0, 0, 0, 0], &grad_weight[0, 0, 0, 0],
                             N, H, W, K, kw, g, oH, oW, stride_h, stride_w, pad_top, pad_left,
                             dilation_h, dilation_w, t // blocks, 16 * (t % blocks))
        flush_denormals_exit()
