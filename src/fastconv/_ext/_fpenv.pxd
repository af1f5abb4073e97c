# Flush-to-zero for the kernels' threads, restored afterwards.
#
# Subnormal floats make x86 arithmetic take microcode assists (up to 100x slower
# per operation). Each OpenMP thread sets FTZ (results) and DAZ (inputs) when it
# enters a parallel region and restores its own previous mode when it leaves, so
# the caller's floating-point environment is unchanged after every kernel.
cdef extern from *:
    """
    #if defined(__x86_64__) || defined(_M_X64) || defined(__SSE2__)
    #include <xmmintrin.h>
    static __thread unsigned int fastconv_saved_csr;
    static inline void fastconv_flush_denormals_enter(void) {
        fastconv_saved_csr = _mm_getcsr();
        _mm_setcsr(fastconv_saved_csr | 0x8040);  /* FTZ (bit 15) | DAZ (bit 6) */
    }
    static inline void fastconv_flush_denormals_exit(void) { _mm_setcsr(fastconv_saved_csr); }
    #else
    static inline void fastconv_flush_denormals_enter(void) {}
    static inline void fastconv_flush_denormals_exit(void) {}
    #endif
    """
    void flush_denormals_enter "fastconv_flush_denormals_enter"() noexcept nogil
    void flush_denormals_exit "fastconv_flush_denormals_exit"() noexcept nogil
