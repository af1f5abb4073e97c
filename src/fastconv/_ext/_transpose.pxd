# Transposes of row-major matrices through registers, for the modules that change layouts
# (_layout's weight swaps, Winograd's NCHW staging).
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
