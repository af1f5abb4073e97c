# Vector types for kernels written in GCC/Clang vector extensions.
#
# V holds FASTCONV_VB bytes, the widest registers the build's -march has (AVX-512 in the
# x86-64-v4 build, AVX2 in x86-64-v3, SSE2 in the baseline). fastconv_vf / fastconv_vd are V of
# float / double, fastconv_if / fastconv_id the integer vectors of the same lanes (shuffle
# masks, compare results), fastconv_hf / fastconv_hd half vectors (and fastconv_ihf / fastconv_ihd).
cdef extern from *:
    """
    #ifndef FASTCONV_SIMD_DEFINED
    #define FASTCONV_SIMD_DEFINED
    #if defined(__AVX512F__)
    #define FASTCONV_VB 64
    #elif defined(__AVX__)
    #define FASTCONV_VB 32
    #else
    #define FASTCONV_VB 16
    #endif
    typedef float fastconv_vf __attribute__((vector_size(FASTCONV_VB)));
    typedef double fastconv_vd __attribute__((vector_size(FASTCONV_VB)));
    typedef int fastconv_if __attribute__((vector_size(FASTCONV_VB)));
    typedef long long fastconv_id __attribute__((vector_size(FASTCONV_VB)));
    /* half vectors: rows of 14x14 planes hold no whole V of float */
    typedef float fastconv_hf __attribute__((vector_size(FASTCONV_VB / 2)));
    typedef double fastconv_hd __attribute__((vector_size(FASTCONV_VB / 2)));
    typedef int fastconv_ihf __attribute__((vector_size(FASTCONV_VB / 2)));
    typedef long long fastconv_ihd __attribute__((vector_size(FASTCONV_VB / 2)));
    #define FASTCONV_VBYTES() FASTCONV_VB
    /* unaligned load / store of a V (or T) at p */
    #define FASTCONV_LD(V, p) ({ V v_; __builtin_memcpy(&v_, (p), sizeof(V)); v_; })
    #define FASTCONV_ST(V, p, v) do { V v_ = (v); __builtin_memcpy((p), &v_, sizeof(V)); } while (0)
    /* hide how the pointer p was computed: loads at constant offsets from it are then
       addressed by displacement, where GCC would keep each base + offset sum that does not
       change in a loop in a register of its own (14 of them, moved out of vector registers
       for every product) */
    #define FASTCONV_OPAQUE(p) __asm__("" : "+r"(p))
    #endif
    """
    Py_ssize_t FASTCONV_VBYTES() noexcept nogil  # bytes in one vector V
