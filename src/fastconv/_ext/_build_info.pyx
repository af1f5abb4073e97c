"""What the compiled extensions were built with, for `fastconv info` and bug reports."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTCONV_HAVE_OPENMP 1
    static int fastconv_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define FASTCONV_HAVE_OPENMP 0
    static int fastconv_omp_max_threads(void) { return 1; }
    #endif
    """
    int FASTCONV_HAVE_OPENMP
    const char *FASTCONV_BUILD_FLAGS
    int fastconv_omp_max_threads() nogil

OPENMP = bool(FASTCONV_HAVE_OPENMP)
BUILD_FLAGS = FASTCONV_BUILD_FLAGS.decode()


def openmp_max_threads():
    """omp_get_max_threads() of this build's OpenMP runtime (1 without OpenMP)."""
    return fastconv_omp_max_threads()
