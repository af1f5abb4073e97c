# Transposes of row-major matrices through registers, for the modules that change layouts
# (_layout's weight swaps; Winograd's and direct's NCHW staging, to and from channels-last
# rows).
from fastconv._ext._blas cimport floating

cdef extern from *:
    """
    #ifndef FASTCONV_TRANSPOSE_DEFINED
    #define FASTCONV_TRANSPOSE_DEFINED
    #include <stddef.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* d[j*ld_d + i] := s[i*ld_s + j]  for i < m, j < n: 4 x 4 blocks of floats (2 x 2 of
       doubles) in SSE registers (every x86-64 CPU has SSE2), the ragged edges one by one. */
    static void fastconv_transpose_f(float *d, ptrdiff_t ld_d, const float *s,
                                     ptrdiff_t ld_s, ptrdiff_t m, ptrdiff_t n) {
        ptrdiff_t i = 0, j;
    #if defined(__SSE2__)
        for (; i + 4 <= m; i += 4) {
            for (j = 0; j + 4 <= n; j += 4) {
                __m128 r0 = _mm_loadu_ps(s + i * ld_s + j);
                __m128 r1 = _mm_loadu_ps(s + (i + 1) * ld_s + j);
                __m128 r2 = _mm_loadu_ps(s + (i + 2) * ld_s + j);
                __m128 r3 = _mm_loadu_ps(s + (i + 3) * ld_s + j);
                _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                _mm_storeu_ps(d + j * ld_d + i, r0);
                _mm_storeu_ps(d + (j + 1) * ld_d + i, r1);
                _mm_storeu_ps(d + (j + 2) * ld_d + i, r2);
                _mm_storeu_ps(d + (j + 3) * ld_d + i, r3);
            }
            for (; j < n; j++)
                for (ptrdiff_t u = i; u < i + 4; u++)
                    d[j * ld_d + u] = s[u * ld_s + j];
        }
    #endif
        for (; i < m; i++)
            for (j = 0; j < n; j++)
                d[j * ld_d + i] = s[i * ld_s + j];
    }
    static void fastconv_transpose_d(double *d, ptrdiff_t ld_d, const double *s,
                                     ptrdiff_t ld_s, ptrdiff_t m, ptrdiff_t n) {
        ptrdiff_t i = 0, j;
    #if defined(__SSE2__)
        for (; i + 2 <= m; i += 2) {
            for (j = 0; j + 2 <= n; j += 2) {
                __m128d r0 = _mm_loadu_pd(s + i * ld_s + j);
                __m128d r1 = _mm_loadu_pd(s + (i + 1) * ld_s + j);
                _mm_storeu_pd(d + j * ld_d + i, _mm_unpacklo_pd(r0, r1));
                _mm_storeu_pd(d + (j + 1) * ld_d + i, _mm_unpackhi_pd(r0, r1));
            }
            for (; j < n; j++) {
                d[j * ld_d + i] = s[i * ld_s + j];
                d[j * ld_d + i + 1] = s[(i + 1) * ld_s + j];
            }
        }
    #endif
        for (; i < m; i++)
            for (j = 0; j < n; j++)
                d[j * ld_d + i] = s[i * ld_s + j];
    }
    #endif
    """
    void fastconv_transpose_f(float *d, Py_ssize_t ld_d, const float *s, Py_ssize_t ld_s,
                              Py_ssize_t m, Py_ssize_t n) noexcept nogil
    void fastconv_transpose_d(double *d, Py_ssize_t ld_d, const double *s, Py_ssize_t ld_s,
                              Py_ssize_t m, Py_ssize_t n) noexcept nogil


cdef inline void transpose(floating *d, Py_ssize_t ld_d, const floating *s, Py_ssize_t ld_s,
                           Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """d[j*ld_d + i] := s[i*ld_s + j]  for i < m, j < n"""
    if floating is float:
        fastconv_transpose_f(d, ld_d, s, ld_s, m, n)
    else:
        fastconv_transpose_d(d, ld_d, s, ld_s, m, n)


cdef inline Py_ssize_t pixel_block(Py_ssize_t plane) noexcept nogil:
    """Pixels a block of the layout transposes: 32, or 64 on planes of 4096 pixels or more,
    whose channels' rows are streams of their own from memory (VGG's 64 channels at
    224 x 224, batch 1: forward and weight gradient 12% faster; 64 on smaller planes was
    up to 5% slower, 128 no better than 64)."""
    return 64 if plane >= 4096 else 32


cdef inline void transpose_rows(floating *d, Py_ssize_t ld_d, const floating *s,
                                Py_ssize_t ld_s, Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """d[j*ld_d + i] := s[i*ld_s + j]  for i < m, j < n (a block that fits L1).

    The transpose's inner loop writes 16 bytes to each of d's n rows in turn.  Rows whose
    distance has a large power of two in it share a few L1 sets (4 KB apart: one set; a 4
    KB way holds 4 KB / 2^p rows 2^p bytes apart), and with more of them than the sets'
    ways hold each line is evicted between its 4 writes: there the rows go 4 at a time,
    the inner loop along them.  A C harness: 32 channels back to 32 x 32 planes 9x faster,
    512 channels to channels-last rows 2.4x; elsewhere 4 at a time is 1.2-2x slower."""
    cdef Py_ssize_t j = 0, strip = n
    cdef Py_ssize_t distance = ld_d * sizeof(floating)
    if n * min(distance & -distance, 4096) > 8 * 4096:   # more rows than 8 ways hold
        strip = 4
    while j < n:
        transpose(d + j * ld_d, ld_d, s + j, ld_s, m, min(strip, n - j))
        j = j + strip


cdef inline void to_channels_last(const floating *src, Py_ssize_t plane, Py_ssize_t channels,
                                  Py_ssize_t n, floating *dst) noexcept nogil:
    """dst[e*channels + c] = src[c*plane + e] for e in [0, n): n pixels of NCHW planes, in
    blocks of pixels whose channels-last rows stay in L1 while every channel is moved in
    (element by element, its stores a row of channels apart, 128 channels took a third of a
    Winograd weight gradient)."""
    cdef Py_ssize_t e = 0, block = pixel_block(plane)
    while e < n:
        transpose_rows(dst + e * channels, channels, src + e, plane, channels,
                       min(block, n - e))
        e = e + block


cdef inline void from_channels_last(const floating *src, Py_ssize_t plane,
                                    Py_ssize_t channels, Py_ssize_t n,
                                    floating *dst) noexcept nogil:
    """dst[c*plane + e] = src[e*channels + c] for e in [0, n), in blocks of pixels."""
    cdef Py_ssize_t e = 0, block = pixel_block(plane)
    while e < n:
        transpose_rows(dst + e, plane, src + e * channels, channels, min(block, n - e),
                       channels)
        e = e + block
