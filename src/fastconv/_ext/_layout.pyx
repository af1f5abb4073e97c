"""Weight layouts: the kernel of the transposed convolution, whose forward computes a
stride-1 input gradient (flipped in space, input and output channels swapped).

NumPy copies a transposed array element by element in the destination's order, striding
through the source a whole row apart: for 512 x 512 channels per tap that is a cache and TLB
miss per element (3.3 ms for a 3x3 kernel, where copying it takes 0.17 ms). Here the swap
goes through 32 x 32 blocks that stay in the L1 cache, on all threads.
"""
from cython.parallel cimport parallel, prange, threadid

from fastconv._ext._blas cimport floating
from fastconv._ext._transpose cimport transpose
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef Py_ssize_t _BLOCK = 32


def flip_transpose(const floating[:, :, :, ::1] src, floating[:, :, :, ::1] dst,
                   bint flip_outer, bint flip_inner, int num_threads):
    """dst[b', j, i, e'] = src[b, i, j, e]: the middle axes swapped, and b' = B-1-b when
    flip_outer, e' = E-1-e when flip_inner (else b' = b, e' = e).

    NHWC kernels (taps, C, K) -> (taps, K, C) flip the taps (outer); NCHW kernels
    (G, K/G, C/G, taps) -> (G, C/G, K/G, taps) flip them inside each run (inner)."""
    cdef Py_ssize_t B = src.shape[0], M = src.shape[1], N = src.shape[2], E = src.shape[3]
    cdef Py_ssize_t blocks = (M + _BLOCK - 1) // _BLOCK, column_blocks = (N + _BLOCK - 1) // _BLOCK
    cdef Py_ssize_t task, b, jb, tile_size = _BLOCK * _BLOCK * E
    cdef int threads = max(num_threads, 1)
    cdef floating *tiles
    if dst.shape[0] != B or dst.shape[1] != N or dst.shape[2] != M or dst.shape[3] != E:
        raise ValueError(f"flip_transpose: dst must have shape {(B, N, M, E)}. Received: "
                         f"dst.shape={(dst.shape[0], dst.shape[1], dst.shape[2], dst.shape[3])}")
    if B * M * N * E == 0:
        return
    tiles = <floating *> malloc(threads * tile_size * sizeof(floating))
    if tiles == NULL:
        raise MemoryError(f"flip_transpose: no memory for {threads} blocks of {tile_size} elements")
    with nogil, parallel(num_threads=threads):
        for task in prange(B * blocks, schedule="static"):
            b = task // blocks
            for jb in range(column_blocks):
                _swap_block(src, dst, tiles + threadid() * tile_size, b,
                            B - 1 - b if flip_outer else b, flip_inner,
                            (task % blocks) * _BLOCK, jb * _BLOCK)
    free(tiles)


cdef inline void _swap_block(const floating[:, :, :, ::1] src, floating[:, :, :, ::1] dst,
                             floating *tile, Py_ssize_t b, Py_ssize_t ob, bint flip_inner,
                             Py_ssize_t i0, Py_ssize_t j0) noexcept nogil:
    """One block, through a contiguous tile: the source's rows are read and the destination's
    written along their length. Straight from one to the other, the rows of one side are a
    power of two apart (512 channels: 2 KB) and share two L1 sets, evicting each other.
    Runs of E elements move whole; single elements (NHWC) in SSE transposes (_transpose.pxd).
    src and dst are C-contiguous (flip_transpose's fused signature accepts nothing else)."""
    cdef Py_ssize_t M = src.shape[1], N = src.shape[2], E = src.shape[3]
    cdef Py_ssize_t i1 = min(i0 + _BLOCK, M), j1 = min(j0 + _BLOCK, N), i, j, e
    cdef const floating *s
    cdef floating *t
    if E == 1:
        transpose(tile, _BLOCK, &src[b, i0, j0, 0], N, i1 - i0, j1 - j0)
    else:
        for i in range(i0, i1):
            s = &src[b, i, j0, 0]
            for j in range(j1 - j0):
                t = tile + (j * _BLOCK + i - i0) * E
                if flip_inner:
                    for e in range(E):
                        t[E - 1 - e] = s[j * E + e]
                else:
                    memcpy(t, s + j * E, E * sizeof(floating))
    for j in range(j0, j1):
        memcpy(&dst[ob, j, i0, 0], tile + (j - j0) * _BLOCK * E, (i1 - i0) * E * sizeof(floating))
