"""Winograd F(2x2, 3x3) and F(2x2, 5x5) convolution kernels in Numba for stride-1, undilated layers
with 3x3 or 5x5 kernels: the forward pass (the Python side runs grad_input as the forward of the
transposed convolution) and the weight gradient, F(3x3, 2x2) and F(5x5, 2x2) (below); NCHW and
NHWC. Each layer runs the tiling the Cython module runs (the same plan).

Drop-in replacement for ``fastconv._ext._conv_winograd``: same function names, same positional
arguments, the same "not finite" flag from the forward, and ``workspace_elements`` and
``grad_weight_workspace_elements`` with the same arguments.

Legend (as numba_im2col)
    N, C, H, W  input batch, channels, height, width;  K outputs;  oH, oW output height, width
    G           groups;  Cg = C/G, Kg = K/G
    tH, tW      tiles per sample, down and across: a tile is a 2x2 block of outputs,
                tH = ceil(oH/2), tW = ceil(oW/2); a tile row is the tW tiles of one (n, th)
    xi          one of the 16 positions of a transformed 4x4 patch (36 of a 6x6 patch)
    S, R        3x3 sub-kernels of the kernel (1 for 3x3, 4 for 5x5, 1 for F(2x2, 5x5));
                R = S*Cg (GEMM reduction)

The maths
Each tile's outputs come from the 4x4 input patch d under it (zeros in the padding):
    Y = A^T [ U (.) (B^T d B) ] A,   U = G g G^T   ((.) elementwise over the 16 positions xi)
    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
Summed over input channels the elementwise products become 16 independent GEMMs, one per xi:
    M[xi] (tiles, Kg) = V[xi] (tiles, R) @ U[xi] (R, Kg)
That is 16 multiplies per 4 outputs and channel pair where direct convolution needs 36 (2.25x
fewer). The transforms only add, subtract and halve, so rounding stays close to a direct sum.
Each transform X^T z X is separable: X^T applied to the columns of z, then to the rows.
A 5x5 kernel, zero-padded to 6x6, is S = 4 sub-kernels of 3x3 at offsets (3si, 3sj); each
reads the input moved by its offset, and their transformed patches stack along the reduction:
R = S*Cg. U is kept (positions, R, K) for both layouts, from weights in HWIO.
A 5x5 kernel with 16 or more channels per group runs F(2x2, 5x5) instead: 6x6 patches, 36
positions (B^T, G and A^T on the points 0, +-1, +-2 and infinity), 36 multiplies per tile where
the four sub-kernels take 64 (a direct sum 100), with GEMMs over Cg; its weight gradient is
F(5x5, 2x2) on the same transforms. Its transforms scale by up to 5 and 1/24, so its float32
error is a few times a direct sum's; with fewer channels the sub-kernels' deeper GEMMs win.

Vectorisation
The transforms run along channels (long contiguous vectors), one 4x4 patch or 2x2 tile at a
time (6x6 and 2x2 for F(2x2, 5x5)). NCHW samples get there through a channels-last copy of the
rows each block needs. A transform loop reads up to 36 vectors and writes up to 36 others: far
too many streams for LLVM's run-time overlap checks, so it would stay scalar. As in the Cython
module, the streams are raw pointers (``_address``, and ``_grid`` for a whole tuple of them: no
reference counts to pass views around, no bounds) declared restrict: the transforms compile
with Numba's noalias flag (``_restrict``), and LLVM keeps the promise as alias scopes when it
inlines them into their callers (``_pointers``, the helpers that gather the pointers, are
inlined too). The 6x6 transforms' constants take the data's type (``_like``): a float32 times
a Python number would be computed in float64.

Threads
Blocks of tile rows run on ``threads`` shares in a numba.prange, each with its own scratch; a
share transforms a block into its V, multiplies with single-threaded BLAS (the Python caller
limits BLAS to one thread) and transforms M back into the output with the bias added. The
forward's shares take the next block from an atomic counter, so that a core busy elsewhere
does fewer (Numba's OpenMP layer splits statically); the weight gradient's take fixed
contiguous parts, so that each share's sums, added in order, give the same bits each call.
The 16 (36) matrices of a block lie an odd number of cache lines apart (``_stream_stride``).
"""
import collections

import numpy as np
from numba import njit, prange
from numba.core import compiler, types
from numba.extending import intrinsic

from .numba_im2col import _FASTMATH, _gemm, _use_threads

_BLOCK_ELEMENTS = 256 << 10     # V and M of one block: 1 MB of float32, an L2 cache
_PIXEL_BLOCK = 16               # pixels per pass of the NCHW <-> channels-last copies


class _NoaliasCompiler(compiler.Compiler):
    """Numba's pipeline with its noalias flag: every pointer argument of the compiled function,
    each array argument's data among them, is declared not to alias the others (C's restrict).
    Numba sets the flag on the bodies of its parallel loops; no njit option exposes it."""

    def __init__(self, typingctx, targetctx, library, args, return_type, flags, locals):
        flags = flags.copy()
        flags.noalias = True
        super().__init__(typingctx, targetctx, library, args, return_type, flags, locals)


_inner = njit(cache=True, fastmath=_FASTMATH)
_pointers = njit(cache=True, forceinline=True)
_restrict = njit(cache=True, fastmath=_FASTMATH, pipeline_class=_NoaliasCompiler,
                 forceinline=True)
_parallel = njit(cache=True, fastmath=_FASTMATH, parallel=True)


# --------------------------------------------------------------------------- plan

_Plan = collections.namedtuple("_Plan", [
    "N", "C", "H", "W", "K", "oH", "oW", "G", "Cg", "Kg", "pt", "pl",
    "kh", "kw", "Sh", "Sw", "S", "R",   # kernel; its sub-kernels (Sh x Sw); R = S*Cg
    "alpha", "npos",                # patch side and transform positions: 4, 16 (F(2x2, 3x3),
                                    # sub-kernels of 3x3) or 6, 36 (F(2x2, 5x5), S = 1)
    "tH", "tW",                     # tiles per sample, down and across
    "rows", "blocks", "threads",    # tile rows per block, blocks, shares of blocks
    "vstride", "mstride",           # elements from V[xi] to V[xi + 1], M[xi] to M[xi + 1]
    "span",                         # input rows one tile row reads (4 for 3x3, 7 or 6 for 5x5)
    "stage",                        # NCHW: a block's rows of one sample, channels last
    "per_thread",                   # scratch of a share: V, M, the staging, 4 spare outputs
    "weights",                      # elements of U (and of a weight-gradient accumulator)
    "padded",                       # the kernel gradient padded to whole sub-kernels, or 0
    "zeros",                        # length of the zero vector read in the padding
])


def _stream_stride(n):
    """n rounded up to an odd number of 16-element lines.

    The transforms read or write the 16 (36) matrices V[xi] (or M[xi]) side by side. A stride
    that is a multiple of 4 KB puts all 16 streams in one L1 set, which holds 8 lines: each access
    then misses (10x slower on narrow NCHW layers). An odd multiple of 64 bytes spreads them.
    """
    return 16 * (((n + 15) // 16) | 1)


def _plan(N, C, H, W, K, kh, kw, oH, oW, pad_top, pad_left, groups, num_threads):
    """The layer's sizes, its blocks and its scratch (a _Plan). As the Cython module decides: a
    5x5 kernel with 16 or more channels per group runs F(2x2, 5x5) (36 multiplies per tile
    where four 3x3 sub-kernels take 64, GEMMs over Cg instead of 4*Cg); others F(2x2, 3x3)."""
    Cg, Kg = C // groups, K // groups
    f25 = kh == 5 and kw == 5 and Cg >= 16
    alpha = 6 if f25 else 4
    npos = alpha * alpha
    Sh, Sw = (1, 1) if f25 else ((kh + 2) // 3, (kw + 2) // 3)
    S = Sh * Sw
    R = S * Cg
    tH, tW = (oH + 1) // 2, (oW + 1) // 2
    total = N * tH
    # V and M in cache, but at least 2*Kg tiles so that BLAS repacking U[xi] on each call
    # stays small next to the multiply; at least two blocks per thread for balance.
    want = max(_BLOCK_ELEMENTS // (npos * (R + Kg)), 2 * Kg)
    rows = max(1, min(want // tW, total))
    if num_threads > 1:
        rows = max(1, min(rows, total // (2 * num_threads)))
    blocks = -(-total // rows)
    vstride, mstride = _stream_stride(rows * tW * R), _stream_stride(rows * tW * Kg)
    span = alpha if f25 else 3 * Sh + 1
    stage = max(min(H, 2 * rows - 2 + span) * W * Cg, min(oH, 2 * rows) * oW * Kg)
    side = alpha - 1    # taps of a sub-kernel across
    return _Plan(N=N, C=C, H=H, W=W, K=K, oH=oH, oW=oW, G=groups, Cg=Cg, Kg=Kg, pt=pad_top,
                 pl=pad_left, kh=kh, kw=kw, Sh=Sh, Sw=Sw, S=S, R=R, alpha=alpha, npos=npos,
                 tH=tH, tW=tW, rows=rows, blocks=blocks,
                 threads=max(1, min(num_threads, blocks)), vstride=vstride, mstride=mstride,
                 span=span, stage=stage, per_thread=npos * (vstride + mstride) + stage + 4 * Kg,
                 weights=npos * R * K,
                 padded=0 if (kh, kw) == (side * Sh, side * Sw) else side * side * R * K,
                 zeros=max(Cg, K))


def _forward_elements(p):
    """Forward workspace: U, each share's scratch, the zero vector."""
    return p.weights + p.threads * p.per_thread + p.zeros


def _grad_weight_elements(p):
    """Weight-gradient workspace: an accumulator of U's size per share, the padded kernel
    gradient, scratch, zeros."""
    return p.threads * p.weights + p.padded + p.threads * p.per_thread + p.zeros


# --------------------------------------------------------------------------- the transforms
# Each computes one small matrix product along vectors of channels; the 1-D ones are the
# factors (a column of the matrix in, a column out) that the separable transforms apply twice.

@_inner
def _bt(x0, x1, x2, x3):
    """B^T x."""
    return x0 - x2, x1 + x2, x2 - x1, x1 - x3


@_inner
def _g(x0, x1, x2, half):
    """G x."""
    return x0, (x0 + x1 + x2) * half, (x0 - x1 + x2) * half, x2


@_inner
def _at(x0, x1, x2, x3):
    """A^T x."""
    return x0 + x1 + x2, x1 - x2 - x3


@_inner
def _a(x0, x1):
    """A x, A = [[1, 0], [1, 1], [1, -1], [0, -1]] (F(3x3, 2x2)'s grad_output transform)."""
    return x0, x0 + x1, x0 - x1, -x1


@_inner
def _gt(x0, x1, x2, x3, half):
    """G^T x."""
    return x0 + (x1 + x2) * half, (x1 - x2) * half, (x1 + x2) * half + x3


@_inner
def _finite(y):
    """y is neither infinite nor NaN (a comparison: with reassociation allowed, an arithmetic
    test such as y - y == 0 could be folded away)."""
    return abs(y) < np.inf


@_restrict
def _input_transform(d, v, n):
    """v[xi][c] = (B^T d B)[xi] for c in [0, n); d the 16 pixels (a, b) of the patch at a*4 + b."""
    for c in range(n):
        c0 = _bt(d[0][c], d[4][c], d[8][c], d[12][c])       # the columns of B^T d
        c1 = _bt(d[1][c], d[5][c], d[9][c], d[13][c])
        c2 = _bt(d[2][c], d[6][c], d[10][c], d[14][c])
        c3 = _bt(d[3][c], d[7][c], d[11][c], d[15][c])
        v[0][c], v[1][c], v[2][c], v[3][c] = _bt(c0[0], c1[0], c2[0], c3[0])    # its rows, by B
        v[4][c], v[5][c], v[6][c], v[7][c] = _bt(c0[1], c1[1], c2[1], c3[1])
        v[8][c], v[9][c], v[10][c], v[11][c] = _bt(c0[2], c1[2], c2[2], c3[2])
        v[12][c], v[13][c], v[14][c], v[15][c] = _bt(c0[3], c1[3], c2[3], c3[3])


@_restrict
def _weight_transform(g, u, n, half):
    """u[xi][k] = (G g G^T)[xi] for k in [0, n); g the taps (i, j) at i*4 + j (a 4x4 patch of
    the kernel whose 3x3 corner is read); half is 1/2 in their type."""
    for k in range(n):
        c0 = _g(g[0][k], g[4][k], g[8][k], half)            # the columns of G g
        c1 = _g(g[1][k], g[5][k], g[9][k], half)
        c2 = _g(g[2][k], g[6][k], g[10][k], half)
        u[0][k], u[1][k], u[2][k], u[3][k] = _g(c0[0], c1[0], c2[0], half)     # its rows, by G^T
        u[4][k], u[5][k], u[6][k], u[7][k] = _g(c0[1], c1[1], c2[1], half)
        u[8][k], u[9][k], u[10][k], u[11][k] = _g(c0[2], c1[2], c2[2], half)
        u[12][k], u[13][k], u[14][k], u[15][k] = _g(c0[3], c1[3], c2[3], half)


@_restrict
def _output_transform(m, bias, y, n):
    """y[i*2 + j][k] = bias[k] + (A^T M A)[i, j] for k in [0, n), M[xi] = m[xi][k].

    Returns whether an output is not finite.
    """
    finite = True
    for k in range(n):
        c0 = _at(m[0][k], m[4][k], m[8][k], m[12][k])       # the columns of A^T M
        c1 = _at(m[1][k], m[5][k], m[9][k], m[13][k])
        c2 = _at(m[2][k], m[6][k], m[10][k], m[14][k])
        c3 = _at(m[3][k], m[7][k], m[11][k], m[15][k])
        finite &= _biased_tile(y, k, bias[k], _at(c0[0], c1[0], c2[0], c3[0]),   # its rows, by A
                               _at(c0[1], c1[1], c2[1], c3[1]))
    return not finite


@_restrict
def _biased_tile(y, k, b, row0, row1):
    """y[i*2 + j][k] = b + row_i[j]; whether the four are finite."""
    y[0][k], y[1][k], y[2][k], y[3][k] = row0[0] + b, row0[1] + b, row1[0] + b, row1[1] + b
    return _finite(y[0][k]) & _finite(y[1][k]) & _finite(y[2][k]) & _finite(y[3][k])


@_restrict
def _grad_output_transform(g, q, n):
    """q[xi][k] = (A g A^T)[xi] for k in [0, n); g the 2x2 gradient tile, (a, b) at a*2 + b."""
    for k in range(n):
        c0 = _a(g[0][k], g[2][k])                           # the columns of A g
        c1 = _a(g[1][k], g[3][k])
        q[0][k], q[1][k], q[2][k], q[3][k] = _a(c0[0], c1[0])                   # its rows, by A^T
        q[4][k], q[5][k], q[6][k], q[7][k] = _a(c0[1], c1[1])
        q[8][k], q[9][k], q[10][k], q[11][k] = _a(c0[2], c1[2])
        q[12][k], q[13][k], q[14][k], q[15][k] = _a(c0[3], c1[3])


@_restrict
def _kernel_gradient_transform(m, taps, n, step, half):
    """taps[i*3 + j][k*step] = (G^T M G)[i, j] for k in [0, n), M[xi] = m[xi][k]; half is
    1/2 in their type."""
    for k in range(n):
        c0 = _gt(m[0][k], m[4][k], m[8][k], m[12][k], half)     # the columns of G^T M
        c1 = _gt(m[1][k], m[5][k], m[9][k], m[13][k], half)
        c2 = _gt(m[2][k], m[6][k], m[10][k], m[14][k], half)
        c3 = _gt(m[3][k], m[7][k], m[11][k], m[15][k], half)
        t = k * step
        taps[0][t], taps[1][t], taps[2][t] = _gt(c0[0], c1[0], c2[0], c3[0], half)  # its rows, by G
        taps[3][t], taps[4][t], taps[5][t] = _gt(c0[1], c1[1], c2[1], c3[1], half)
        taps[6][t], taps[7][t], taps[8][t] = _gt(c0[2], c1[2], c2[2], c3[2], half)


# --------------------------------------------------------------------------- F(2x2, 5x5)
# 6x6 patches, 36 positions, on the points 0, 1, -1, 2, -2 and infinity (as the Cython
# module's FASTCONV_W6_* macros). The 2-D transforms run the 1-D factors down the columns of
# their 36 (or 25) streams (the static slices z[b::6]), then along the rows.

@intrinsic
def _like(typingctx, x, value):
    """value in x's type: a float32 times a Python number would be a float64."""
    def codegen(context, builder, signature, args):
        return context.cast(builder, args[1], signature.args[1], signature.return_type)
    return x(x, value), codegen


@_inner
def _bt6(x0, x1, x2, x3, x4, x5):
    """B^T x."""
    two, four, five = _like(x0, 2), _like(x0, 4), _like(x0, 5)
    return (four * x0 - five * x2 + x4, x3 + x4 - four * (x1 + x2), four * (x1 - x2) - x3 + x4,
            two * (x3 - x1) - x2 + x4, two * (x1 - x3) - x2 + x4, four * x1 - five * x3 + x5)


@_inner
def _g6(g0, g1, g2, g3, g4):
    """G g, 5 taps to 6 values."""
    even, odd = g0 + g2 + g4, g1 + g3                   # the points 1 and -1
    even2 = g0 + _like(g0, 4) * g2 + _like(g0, 16) * g4  # 2 and -2
    odd2 = _like(g0, 2) * g1 + _like(g0, 8) * g3
    sixth, twenty_fourth = _like(g0, -1.0 / 6), _like(g0, 1.0 / 24)
    return (g0 * _like(g0, 0.25), (even + odd) * sixth, (even - odd) * sixth,
            (even2 + odd2) * twenty_fourth, (even2 - odd2) * twenty_fourth, g4)


@_inner
def _at6(m0, m1, m2, m3, m4, m5):
    """A^T m, 6 values to 2."""
    return m0 + m1 + m2 + m3 + m4, m1 - m2 + _like(m0, 2) * (m3 - m4) + m5


@_inner
def _a6(x0, x1):
    """A x, 2 values to 6 (F(5x5, 2x2)'s grad_output transform)."""
    two = _like(x0, 2)
    return x0, x0 + x1, x0 - x1, x0 + two * x1, x0 - two * x1, x1


@_inner
def _gt6(m0, m1, m2, m3, m4, m5):
    """G^T m, 6 values to 5 taps."""
    even, odd, even2, odd2 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    sixth = _like(m0, 1.0 / 6)
    return (m0 * _like(m0, 0.25) - even * sixth + even2 * _like(m0, 1.0 / 24),
            odd2 * _like(m0, 1.0 / 12) - odd * sixth, (even2 - even) * sixth,
            odd2 * _like(m0, 1.0 / 3) - odd * sixth, even2 * _like(m0, 2.0 / 3) - even * sixth + m5)


@_pointers
def _load5(z, c):
    """z[i][c], i in [0, 5)."""
    return z[0][c], z[1][c], z[2][c], z[3][c], z[4][c]


@_pointers
def _load6(z, c):
    """z[i][c], i in [0, 6)."""
    return _load5(z, c) + (z[5][c],)


@_pointers
def _store5(z, c, values):
    """z[i][c] = values[i], i in [0, 5)."""
    z[0][c], z[1][c], z[2][c], z[3][c], z[4][c] = values


@_pointers
def _store6(z, c, values):
    """z[i][c] = values[i], i in [0, 6)."""
    _store5(z, c, values[:5])
    z[5][c] = values[5]


@_restrict
def _input_transform6(d, v, n):
    """v[xi][c] = (B^T d B)[xi] for c in [0, n); d the 36 pixels (a, b) of the patch at a*6 + b."""
    for c in range(n):
        c0, c1, c2 = _bt6(*_load6(d[0::6], c)), _bt6(*_load6(d[1::6], c)), _bt6(*_load6(d[2::6], c))
        c3, c4, c5 = _bt6(*_load6(d[3::6], c)), _bt6(*_load6(d[4::6], c)), _bt6(*_load6(d[5::6], c))
        _store6(v[0:6], c, _bt6(c0[0], c1[0], c2[0], c3[0], c4[0], c5[0]))      # its rows, by B
        _store6(v[6:12], c, _bt6(c0[1], c1[1], c2[1], c3[1], c4[1], c5[1]))
        _store6(v[12:18], c, _bt6(c0[2], c1[2], c2[2], c3[2], c4[2], c5[2]))
        _store6(v[18:24], c, _bt6(c0[3], c1[3], c2[3], c3[3], c4[3], c5[3]))
        _store6(v[24:30], c, _bt6(c0[4], c1[4], c2[4], c3[4], c4[4], c5[4]))
        _store6(v[30:36], c, _bt6(c0[5], c1[5], c2[5], c3[5], c4[5], c5[5]))


@_restrict
def _weight_transform6(g, u, n):
    """u[xi][k] = (G g G^T)[xi] for k in [0, n); g the 25 taps (i, j) at i*5 + j."""
    for k in range(n):
        c0, c1, c2 = _g6(*_load5(g[0::5], k)), _g6(*_load5(g[1::5], k)), _g6(*_load5(g[2::5], k))
        c3, c4 = _g6(*_load5(g[3::5], k)), _g6(*_load5(g[4::5], k))     # the columns of G g
        _store6(u[0:6], k, _g6(c0[0], c1[0], c2[0], c3[0], c4[0]))      # its rows, by G^T
        _store6(u[6:12], k, _g6(c0[1], c1[1], c2[1], c3[1], c4[1]))
        _store6(u[12:18], k, _g6(c0[2], c1[2], c2[2], c3[2], c4[2]))
        _store6(u[18:24], k, _g6(c0[3], c1[3], c2[3], c3[3], c4[3]))
        _store6(u[24:30], k, _g6(c0[4], c1[4], c2[4], c3[4], c4[4]))
        _store6(u[30:36], k, _g6(c0[5], c1[5], c2[5], c3[5], c4[5]))


@_restrict
def _output_transform6(m, bias, y, n):
    """y[i*2 + j][k] = bias[k] + (A^T M A)[i, j] for k in [0, n), M[xi] = m[xi][k].

    Returns whether an output is not finite.
    """
    finite = True
    for k in range(n):
        c0, c1, c2 = _at6(*_load6(m[0::6], k)), _at6(*_load6(m[1::6], k)), _at6(*_load6(m[2::6], k))
        c3, c4, c5 = _at6(*_load6(m[3::6], k)), _at6(*_load6(m[4::6], k)), _at6(*_load6(m[5::6], k))
        finite &= _biased_tile(y, k, bias[k], _at6(c0[0], c1[0], c2[0], c3[0], c4[0], c5[0]),
                               _at6(c0[1], c1[1], c2[1], c3[1], c4[1], c5[1]))   # rows, by A
    return not finite


@_restrict
def _grad_output_transform6(g, q, n):
    """q[xi][k] = (A g A^T)[xi] for k in [0, n); g the 2x2 gradient tile, (a, b) at a*2 + b."""
    for k in range(n):
        c0, c1 = _a6(g[0][k], g[2][k]), _a6(g[1][k], g[3][k])     # the columns of A g
        _store6(q[0:6], k, _a6(c0[0], c1[0]))                     # its rows, by A^T
        _store6(q[6:12], k, _a6(c0[1], c1[1]))
        _store6(q[12:18], k, _a6(c0[2], c1[2]))
        _store6(q[18:24], k, _a6(c0[3], c1[3]))
        _store6(q[24:30], k, _a6(c0[4], c1[4]))
        _store6(q[30:36], k, _a6(c0[5], c1[5]))


@_restrict
def _kernel_gradient_transform6(m, taps, n, step):
    """taps[i*5 + j][k*step] = (G^T M G)[i, j] for k in [0, n), M[xi] = m[xi][k]."""
    for k in range(n):
        c0, c1, c2 = _gt6(*_load6(m[0::6], k)), _gt6(*_load6(m[1::6], k)), _gt6(*_load6(m[2::6], k))
        c3, c4, c5 = _gt6(*_load6(m[3::6], k)), _gt6(*_load6(m[4::6], k)), _gt6(*_load6(m[5::6], k))
        t = k * step
        _store5(taps[0:5], t, _gt6(c0[0], c1[0], c2[0], c3[0], c4[0], c5[0]))  # rows, by G
        _store5(taps[5:10], t, _gt6(c0[1], c1[1], c2[1], c3[1], c4[1], c5[1]))
        _store5(taps[10:15], t, _gt6(c0[2], c1[2], c2[2], c3[2], c4[2], c5[2]))
        _store5(taps[15:20], t, _gt6(c0[3], c1[3], c2[3], c3[3], c4[3], c5[3]))
        _store5(taps[20:25], t, _gt6(c0[4], c1[4], c2[4], c3[4], c4[4], c5[4]))


# --------------------------------------------------------------------------- pointers and images
# An image is (pointer, row step, pixel step, first row, height, width): channel c of pixel
# (h, w) lies at pointer[(h - first row)*row step + w*pixel step + c]. NHWC arrays are images
# as they are; NCHW samples become images through a channels-last copy of the rows a block
# needs. (Pointers, not arrays: a read-only input's views would not unify with the staging.)

def _data(context, builder, base_type, base):
    """The LLVM pointer to the first element of base, an array or a pointer."""
    if isinstance(base_type, types.CPointer):
        return base
    return context.make_array(base_type)(context, builder, value=base).data


def _pointer_type(base):
    """The type of a pointer into base, an array or a pointer."""
    return base if isinstance(base, types.CPointer) else types.CPointer(base.dtype)


@intrinsic
def _address(typingctx, base, index):
    """A pointer to base[index], base an array or a pointer (no bounds check)."""
    def codegen(context, builder, signature, args):
        return builder.gep(_data(context, builder, base, args[0]), [args[1]])
    return _pointer_type(base)(base, types.intp), codegen


@intrinsic
def _grid(typingctx, base, start, row_step, column_step, side):
    """Pointers to base[start + i*row_step + j*column_step] at i*side + j, i, j in [0, side):
    base an array or a pointer, side a constant (no bounds check)."""
    if not isinstance(side, types.IntegerLiteral):
        return None
    n = side.literal_value
    grid = types.UniTuple(_pointer_type(base), n * n)

    def codegen(context, builder, signature, args):
        data, first, down, across = _data(context, builder, base, args[0]), *args[1:4]
        rows = [builder.add(first, builder.mul(down, first.type(i))) for i in range(n)]
        return context.make_tuple(builder, grid, [
            builder.gep(data, [builder.add(row, builder.mul(across, first.type(j)))])
            for row in rows for j in range(n)])
    return grid(base, types.intp, types.intp, types.intp, side), codegen


@intrinsic
def _fetch_add(typingctx, counter):
    """counter[0] += 1, atomically; returns the value before."""
    def codegen(context, builder, signature, args):
        pointer = context.make_array(counter)(context, builder, value=args[0]).data
        return builder.atomic_rmw("add", pointer, context.get_constant(types.int64, 1),
                                  "monotonic")
    return types.int64(counter), codegen


@_pointers
def _streams(a, start, ld):
    """Pointers to a[start + xi*ld], one per position xi of F(2x2, 3x3)."""
    return _grid(a, start, 4 * ld, ld, 4)


@_pointers
def _streams36(a, start, ld):
    """Pointers to a[start + xi*ld], one per position xi of F(2x2, 5x5)."""
    return _grid(a, start, 6 * ld, ld, 6)


@_pointers
def _corner(image, h, w):
    """(pointer, offset of pixel (h, w), row step, pixel step) of image: _grid's first
    arguments for the pixels from (h, w) on."""
    pointer, row_step, pixel_step, first_row, _, _ = image
    return pointer, (h - first_row) * row_step + w * pixel_step, row_step, pixel_step


@_pointers
def _inside(image, h, w, side):
    """Whether the side x side patch at (h, w) lies inside the image."""
    height, width = image[4], image[5]
    return h >= 0 and h + side <= height and w >= 0 and w + side <= width


@_pointers
def _pixel(image, h, w, outside):
    """A pointer to the channels of pixel (h, w) of image; `outside` where there is no such
    pixel."""
    if not _inside(image, h, w, 1):
        return outside
    pointer, offset, _, _ = _corner(image, h, w)
    return _address(pointer, offset)


@_pointers
def _patch_row(image, h, w, zeros):
    """The pixels (h, w + b), b in [0, 4); zeros outside the image."""
    return (_pixel(image, h, w, zeros), _pixel(image, h, w + 1, zeros),
            _pixel(image, h, w + 2, zeros), _pixel(image, h, w + 3, zeros))


@_pointers
def _patch_row6(image, h, w, zeros):
    """The pixels (h, w + b), b in [0, 6); zeros outside the image."""
    return _patch_row(image, h, w, zeros) + (_pixel(image, h, w + 4, zeros),
                                             _pixel(image, h, w + 5, zeros))


@_pointers
def _patch(image, h, w, zeros):
    """The pixels (h + a, w + b) of the 4x4 patch at (h, w), at a*4 + b; zeros outside."""
    pointer, start, row_step, pixel_step = _corner(image, h, w)
    if _inside(image, h, w, 4):     # no checks
        return _grid(pointer, start, row_step, pixel_step, 4)
    return (_patch_row(image, h, w, zeros) + _patch_row(image, h + 1, w, zeros)
            + _patch_row(image, h + 2, w, zeros) + _patch_row(image, h + 3, w, zeros))


@_pointers
def _patch6(image, h, w, zeros):
    """The pixels (h + a, w + b) of the 6x6 patch at (h, w), at a*6 + b; zeros outside."""
    pointer, start, row_step, pixel_step = _corner(image, h, w)
    if _inside(image, h, w, 6):
        return _grid(pointer, start, row_step, pixel_step, 6)
    return (_patch_row6(image, h, w, zeros) + _patch_row6(image, h + 1, w, zeros)
            + _patch_row6(image, h + 2, w, zeros) + _patch_row6(image, h + 3, w, zeros)
            + _patch_row6(image, h + 4, w, zeros) + _patch_row6(image, h + 5, w, zeros))


@_pointers
def _tile(image, h, w, outside):
    """The pixels (h + a, w + b) of the 2x2 tile at (h, w), at a*2 + b; outside[a*2 + b] for
    those past the image."""
    return (_pixel(image, h, w, outside[0]), _pixel(image, h, w + 1, outside[1]),
            _pixel(image, h + 1, w, outside[2]), _pixel(image, h + 1, w + 1, outside[3]))


@_inner
def _scratch_parts(scratch, p):
    """A share's scratch as V (or the grad_output's transform too), M, the NCHW staging and 4
    spare outputs (pointers to the last two)."""
    v_end = p.npos * p.vstride
    m_end = v_end + p.npos * p.mstride
    stage_end = m_end + p.stage
    return (scratch[:v_end], scratch[v_end:m_end], _address(scratch, m_end),
            (_address(scratch, stage_end), _address(scratch, stage_end + p.Kg),
             _address(scratch, stage_end + 2 * p.Kg), _address(scratch, stage_end + 3 * p.Kg)))


@_inner
def _split_workspace(workspace, p, head):
    """(its first head elements, the shares' scratch, a pointer to a zeroed vector that
    stands for the pixels in the padding)."""
    scratch_end = head + p.threads * p.per_thread
    workspace[scratch_end:scratch_end + p.zeros] = 0
    return workspace[:head], workspace[head:scratch_end], _address(workspace, scratch_end)


@_inner
def _image(a, stage, nhwc, n, c0, channels, count, height, width, first_row):
    """Channels c0 + [0, count) of sample n of an (N, height, width, channels) array as an
    image; NCHW ((N, channels, height, width)): their rows from first_row on, in stage."""
    if nhwc:
        return (_address(a, n * height * width * channels + c0), width * channels, channels, 0,
                height, width)
    return (stage, width * count, count, first_row, height, width)


@_inner
def _nchw_rows(a, n, c0, channels, height, width, first_row):
    """A pointer to an NCHW array's channel c0 of sample n, row first_row."""
    return _address(a, ((n * channels + c0) * height + first_row) * width)


@_inner
def _copy_pixels(src, src_pixel, src_channel, dst, dst_pixel, dst_channel, n, channels):
    """dst[e*dst_pixel + c*dst_channel] = src[e*src_pixel + c*src_channel] for n pixels e and
    their channels c: between NCHW planes (steps 1 and the plane) and channels last (steps
    channels and 1). A few pixels at a time, so that the lines both sides touch stay in L1
    (pixel by pixel across a plane, 256 channels took 4 ns an element; now 0.3-0.5)."""
    for e0 in range(0, n, _PIXEL_BLOCK):
        for c in range(channels):
            for e in range(e0, min(e0 + _PIXEL_BLOCK, n)):
                dst[e * dst_pixel + c * dst_channel] = src[e * src_pixel + c * src_channel]


@_inner
def _staged_image(a, stage, nhwc, n, c0, channels, count, height, width, first_row, end_row):
    """As _image, the rows [first_row, end_row) of an NCHW array copied into stage first."""
    if not nhwc:
        _copy_pixels(_nchw_rows(a, n, c0, channels, height, width, first_row), 1, height * width,
                     stage, count, 1, (end_row - first_row) * width, count)
    return _image(a, stage, nhwc, n, c0, channels, count, height, width, first_row)


@_inner
def _sample_run(p, q, q1):
    """(n, th0, th1): the tile rows [q, q1) of q's sample are its rows [th0, th1)."""
    n = q // p.tH
    th0 = q - n * p.tH
    return n, th0, th0 + min(q1, (n + 1) * p.tH) - q


@_inner
def _part(n, share, shares):
    """[first, last): the share's part of n items split in contiguous parts (contiguous, so
    that no two threads write into one cache line). share may be prange's index, unsigned."""
    share = np.int64(share)
    return n * share // shares, n * (share + 1) // shares


@_inner
def _block_rows(p, blk):
    """Tile rows [q0, q1) of block blk."""
    q0 = blk * p.rows
    return q0, min(q0 + p.rows, p.N * p.tH)


# --------------------------------------------------------------------------- tile rows

@_inner
def _kernel_image(wf, p, c):
    """Input channel c of the HWIO kernel as an image of kh x kw pixels of K channels."""
    return (_address(wf, c * p.K), p.kw * p.Cg * p.K, p.Cg * p.K, 0, p.kh, p.kw)


@_inner
def _weight_row(wf, u, zeros, p, sc):
    """u[xi][sc, :] for sc = s*Cg + c: sub-kernel s = (si, sj) is the 3x3 block of taps from
    (3si, 3sj), zero past the kernel's edge; F(2x2, 5x5): the whole 5x5 kernel (sc = c)."""
    s, c = sc // p.Cg, sc % p.Cg
    image = _kernel_image(wf, p, c)
    if p.alpha == 6:
        pointer, start, row_step, pixel_step = _corner(image, 0, 0)
        _weight_transform6(_grid(pointer, start, row_step, pixel_step, 5),
                           _streams36(u, sc * p.K, p.R * p.K), p.K)
    else:
        _weight_transform(_patch(image, 3 * (s // p.Sw), 3 * (s % p.Sw), zeros),
                          _streams(u, sc * p.K, p.R * p.K), p.K, u.dtype.type(0.5))


@_inner
def _input_row(image, v, zeros, p, th, t0):
    """v[xi][t0 + tw, s*Cg + c] = (B^T d B)[xi] of tile tw of tile row th under sub-kernel s
    (the patch moved by (3si, 3sj)); zeros outside the input."""
    for tw in range(p.tW):
        for si in range(p.Sh):
            for sj in range(p.Sw):
                h, w = 2 * th - p.pt + 3 * si, 2 * tw - p.pl + 3 * sj
                first = (t0 + tw) * p.R + (si * p.Sw + sj) * p.Cg
                if p.alpha == 6:
                    _input_transform6(_patch6(image, h, w, zeros),
                                      _streams36(v, first, p.vstride), p.Cg)
                else:
                    _input_transform(_patch(image, h, w, zeros), _streams(v, first, p.vstride),
                                     p.Cg)


@_inner
def _output_row(m, bias, image, spare, p, th):
    """Outputs (2th + i, 2tw + j) of tile row th into image: bias + (A^T M A)[i, j], M[xi] of
    tile tw at m[xi*mstride + tw*Kg]; those past oH or oW into the spare vectors.

    Returns whether an output is not finite.
    """
    nonfinite = False
    for tw in range(p.tW):
        tile = _tile(image, 2 * th, 2 * tw, spare)
        if p.alpha == 6:
            nonfinite |= _output_transform6(_streams36(m, tw * p.Kg, p.mstride), bias, tile,
                                            p.Kg)
        else:
            nonfinite |= _output_transform(_streams(m, tw * p.Kg, p.mstride), bias, tile, p.Kg)
    return nonfinite


@_inner
def _grad_row(image, qb, zeros, p, th, t0):
    """qb[xi][t0 + tw, k] = (A g A^T)[xi] of the 2x2 grad_output tile tw of tile row th (zeros
    past the edge)."""
    for tw in range(p.tW):
        tile = _tile(image, 2 * th, 2 * tw, (zeros, zeros, zeros, zeros))
        first = (t0 + tw) * p.Kg
        if p.alpha == 6:
            _grad_output_transform6(tile, _streams36(qb, first, p.mstride), p.Kg)
        else:
            _grad_output_transform(tile, _streams(qb, first, p.mstride), p.Kg)


# --------------------------------------------------------------------------- blocks

@_inner
def _input_tiles(xf, v, stage, zeros, p, nhwc, c0, q0, q1):
    """v[xi][t, s*Cg + c] for the tiles t of tile rows [q0, q1), channels c0 + [0, Cg)."""
    q = q0
    while q < q1:
        n, th0, th1 = _sample_run(p, q, q1)
        image = _staged_image(xf, stage, nhwc, n, c0, p.C, p.Cg, p.H, p.W,
                              max(0, 2 * th0 - p.pt), min(p.H, 2 * (th1 - 1) - p.pt + p.span))
        for th in range(th0, th1):
            _input_row(image, v, zeros, p, th, (q - q0 + th - th0) * p.tW)
        q += th1 - th0


@_inner
def _output_tiles(m, bias, of, stage, spare, p, nhwc, k0, q0, q1):
    """out[n, 2th + i, 2tw + j, k0 + k] (NCHW out[n, k0 + k, ...]) = bias + (A^T M A)[i, j]
    for the tiles of tile rows [q0, q1), inside oH, oW.

    Returns whether an output is not finite.
    """
    nonfinite = False
    q = q0
    while q < q1:
        n, th0, th1 = _sample_run(p, q, q1)
        h0, h1 = 2 * th0, min(p.oH, 2 * th1)
        image = _image(of, stage, nhwc, n, k0, p.K, p.Kg, p.oH, p.oW, h0)
        for th in range(th0, th1):
            nonfinite |= _output_row(m[(q - q0 + th - th0) * p.tW * p.Kg:], bias, image, spare,
                                     p, th)
        if not nhwc:
            _copy_pixels(stage, p.Kg, 1, _nchw_rows(of, n, k0, p.K, p.oH, p.oW, h0), 1,
                         p.oH * p.oW, (h1 - h0) * p.oW, p.Kg)
        q += th1 - th0
    return nonfinite


@_inner
def _grad_tiles(gof, qb, stage, zeros, p, nhwc, k0, q0, q1):
    """qb[xi][t, k] = (A g A^T)[xi] of the grad_output tiles t of tile rows [q0, q1), channels
    k0 + [0, Kg)."""
    q = q0
    while q < q1:
        n, th0, th1 = _sample_run(p, q, q1)
        image = _staged_image(gof, stage, nhwc, n, k0, p.K, p.Kg, p.oH, p.oW, 2 * th0,
                              min(p.oH, 2 * th1))
        for th in range(th0, th1):
            _grad_row(image, qb, zeros, p, th, (q - q0 + th - th0) * p.tW)
        q += th1 - th0


@_inner
def _block(xf, u, bias, of, scratch, zeros, p, nhwc, blk):
    """The outputs of block blk of tile rows; whether one is not finite."""
    q0, q1 = _block_rows(p, blk)
    T = (q1 - q0) * p.tW
    v, m, stage, spare = _scratch_parts(scratch, p)
    nonfinite = False
    for gi in range(p.G):
        _input_tiles(xf, v, stage, zeros, p, nhwc, gi * p.Cg, q0, q1)
        for xi in range(p.npos):    # M[xi] (T, Kg) = V[xi] (T, R) @ U[xi] (R, Kg)
            _gemm(False, False, T, p.Kg, p.R, v[xi * p.vstride:], p.R,
                  u[xi * p.R * p.K + gi * p.Kg:], p.K, 0.0, m[xi * p.mstride:], p.Kg)
        nonfinite |= _output_tiles(m, bias[gi * p.Kg:], of, stage, spare, p, nhwc, gi * p.Kg,
                                   q0, q1)
    return nonfinite


@_parallel
def _forward(x, w, bias, out, workspace, next_block, p, nhwc):
    """out := bias + conv2d(x, w); workspace: U, the shares' scratch, zeros; next_block a
    zeroed counter from which the shares take their blocks.

    Returns how many blocks have outputs that are not finite.
    """
    xf, wf, of = x.reshape(x.size), w.reshape(w.size), out.reshape(out.size)
    u, scratch, zeros = _split_workspace(workspace, p, p.weights)
    for share in prange(p.threads):
        for sc in range(*_part(p.R, share, p.threads)):
            _weight_row(wf, u, zeros, p, sc)
    nonfinite = 0
    for share in prange(p.threads):     # blocks as the shares get to them: a busy core does fewer
        mine = scratch[share * p.per_thread:(share + 1) * p.per_thread]
        blk = _fetch_add(next_block)
        while blk < p.blocks:
            nonfinite += _block(xf, u, bias, of, mine, zeros, p, nhwc, blk)
            blk = _fetch_add(next_block)
    return nonfinite


# --------------------------------------------------------------------------- weight gradient
# Differentiating the forward identity sum(g * Y) = sum over xi of (A g A^T) (.) U (.) V with
# respect to the weights gives, for each tile with grad_output g (2x2, zeros past the edge),
#     dW += G^T [ (A g A^T) (.) (B^T d B) ] G,      A = [[1, 0], [1, 1], [1, -1], [0, -1]]
# so the 16 products summed over tiles are again 16 GEMMs (over the tiles), and one transform
# by G^T . G at the end turns the 16 sums into the 3x3 kernel gradient: F(3x3, 2x2).
# F(5x5, 2x2) is the same with F(2x2, 5x5)'s 6x6 transforms: 36 GEMMs, and G^T M G is 5x5.

@_inner
def _gw_block(gof, xf, acc, scratch, zeros, p, nhwc, blk, beta):
    """acc[xi] := beta*acc[xi] + the products of block blk: (R, K) per xi in NHWC, (K, R) in
    NCHW."""
    q0, q1 = _block_rows(p, blk)
    T = (q1 - q0) * p.tW
    v, qb, stage, _ = _scratch_parts(scratch, p)
    R, Kg, K = p.R, p.Kg, p.K
    for gi in range(p.G):
        _input_tiles(xf, v, stage, zeros, p, nhwc, gi * p.Cg, q0, q1)
        _grad_tiles(gof, qb, stage, zeros, p, nhwc, gi * Kg, q0, q1)
        for xi in range(p.npos):
            if nhwc:    # (R, Kg) += V[xi]^T (R, T) @ Q[xi] (T, Kg)
                _gemm(True, False, R, Kg, T, v[xi * p.vstride:], R, qb[xi * p.mstride:], Kg,
                      beta, acc[xi * R * K + gi * Kg:], K)
            else:       # (Kg, R) += Q[xi]^T (Kg, T) @ V[xi] (T, R)
                _gemm(True, False, Kg, R, T, qb[xi * p.mstride:], Kg, v[xi * p.vstride:], R,
                      beta, acc[(xi * K + gi * Kg) * R:], R)


@_inner
def _add_shares(accumulators, p, first, n):
    """Adds the other shares' sums of entries [first, first + n) of each product into the first
    share's accumulator."""
    for xi in range(p.npos):
        start = xi * p.R * p.K + first
        total = accumulators[start:start + n]
        for share in range(1, p.threads):
            part = accumulators[share * p.weights + start:share * p.weights + start + n]
            for e in range(n):
                total[e] += part[e]


@_inner
def _sub_kernel_side(p):
    """(taps of a sub-kernel across, rows and columns of the kernel padded to whole ones)."""
    side = p.alpha - 1
    return side, side * p.Sh, side * p.Sw


@_inner
def _gradient_row(accumulators, padded, p, nhwc, row):
    """The taps that one row of the summed products gives (G^T M G: a 3x3 block of the kernel
    gradient, or the 5x5 kernel's, into padded, the gradient of the kernel zero-padded to whole
    sub-kernels, in gw's layout). NHWC row s*Cg + c of (R, K), along k; NCHW row k*S + s of
    (K, R), along c.
    """
    side, height, width = _sub_kernel_side(p)
    if nhwc:
        s, c = row // p.Cg, row % p.Cg
        first, n = row * p.K, p.K
        corner = ((side * (s // p.Sw) * width + side * (s % p.Sw)) * p.Cg + c) * p.K
        row_step, column_step, step = width * p.Cg * p.K, p.Cg * p.K, 1
    else:
        k, s = row // p.S, row % p.S
        first, n = k * p.R + s * p.Cg, p.Cg
        corner = (k * p.Cg * height + side * (s // p.Sw)) * width + side * (s % p.Sw)
        row_step, column_step, step = width, 1, height * width
    _add_shares(accumulators, p, first, n)
    if p.alpha == 6:
        _kernel_gradient_transform6(_streams36(accumulators, first, p.R * p.K),
                                    _grid(padded, corner, row_step, column_step, 5), n, step)
    else:
        _kernel_gradient_transform(_streams(accumulators, first, p.R * p.K),
                                   _grid(padded, corner, row_step, column_step, 3), n, step,
                                   padded.dtype.type(0.5))


@_inner
def _crop_kernel(padded, gwf, p, nhwc):
    """gw := the kernel's taps of the padded gradient."""
    _, height, width = _sub_kernel_side(p)
    if nhwc:    # (height, width, Cg, K) -> (kh, kw, Cg, K)
        taps = p.Cg * p.K
        for i in range(p.kh):
            for j in range(p.kw):
                gwf[(i * p.kw + j) * taps:(i * p.kw + j + 1) * taps] = \
                    padded[(i * width + j) * taps:(i * width + j + 1) * taps]
        return
    for kc in range(p.K * p.Cg):    # (K, Cg, height, width) -> (K, Cg, kh, kw)
        for i in range(p.kh):
            gwf[(kc * p.kh + i) * p.kw:(kc * p.kh + i + 1) * p.kw] = \
                padded[(kc * height + i) * width:(kc * height + i) * width + p.kw]


@_parallel
def _grad_weight(gout, x, gw, workspace, p, nhwc):
    """gw := dL/dW; workspace: one accumulator per share, the padded kernel gradient, the
    shares' scratch, zeros."""
    gof, xf, gwf = gout.reshape(gout.size), x.reshape(x.size), gw.reshape(gw.size)
    sums, scratch, zeros = _split_workspace(workspace, p, p.threads * p.weights + p.padded)
    accumulators = sums[:p.threads * p.weights]
    padded = sums[p.threads * p.weights:] if p.padded else gwf
    for share in prange(p.threads):     # the same blocks per share each call: the same bits
        acc = accumulators[share * p.weights:(share + 1) * p.weights]
        mine = scratch[share * p.per_thread:(share + 1) * p.per_thread]
        first, last = _part(p.blocks, share, p.threads)
        for blk in range(first, last):      # the first block's products set the sums
            _gw_block(gof, xf, acc, mine, zeros, p, nhwc, blk, 0.0 if blk == first else 1.0)
    rows = p.R if nhwc else p.K * p.S
    for share in prange(p.threads):
        for row in range(*_part(rows, share, p.threads)):
            _gradient_row(accumulators, padded, p, nhwc, row)
    if p.padded:
        _crop_kernel(padded, gwf, p, nhwc)


# --------------------------------------------------------------------------- Python boundary

def _nchw_shape(a, nhwc):
    """(N, C, H, W) of an NCHW or NHWC array."""
    if nhwc:
        return a.shape[0], a.shape[3], a.shape[1], a.shape[2]
    return a.shape


def _checked_plan(x, kh, kw, K, y, workspace, pad_top, pad_left, groups, num_threads, nhwc,
                  elements):
    """The plan of a layer with input x, K outputs y (or grad_output), after checking that the
    workspace holds elements(plan)."""
    N, C, H, W = _nchw_shape(x, nhwc)
    oH, oW = _nchw_shape(y, nhwc)[2:]
    p = _plan(N, C, H, W, K, kh, kw, oH, oW, pad_top, pad_left, groups, num_threads)
    need = elements(p)
    if workspace.shape[0] < need:
        raise ValueError(f"workspace too small: {workspace.shape[0]} elements, need {need}")
    return p


def workspace_elements(N, C, H, W, K, kh, kw, oH, oW, pad_top, pad_left, groups, num_threads):
    """Scratch elements the forward needs: U, each thread's V, M and staging, a zero vector."""
    return _forward_elements(_plan(N, C, H, W, K, kh, kw, oH, oW, pad_top, pad_left, groups,
                                   num_threads))


def grad_weight_workspace_elements(N, C, H, W, K, kh, kw, oH, oW, pad_top, pad_left, groups,
                                   num_threads):
    """Scratch elements grad_weight needs: one 16 x R x K accumulator per thread, each thread's
    V, transformed grad_output and staging, and a zero vector."""
    return _grad_weight_elements(_plan(N, C, H, W, K, kh, kw, oH, oW, pad_top, pad_left, groups,
                                       num_threads))


def _forward_checked(x, weight, bias, out, workspace, pad_top, pad_left, groups, num_threads,
                     nhwc):
    if x.shape[0] == 0:
        return False
    kh, kw, _, K = weight.shape
    p = _checked_plan(x, kh, kw, K, out, workspace, pad_top, pad_left, groups, num_threads, nhwc,
                      _forward_elements)
    _use_threads(p.threads)
    return _forward(x, weight, bias, out, workspace, np.zeros(1, np.int64), p, nhwc) > 0


def forward_nchw(x, weight, bias, out, workspace, pad_top, pad_left, groups, num_threads):
    """out := bias + conv2d(x, weight), stride 1: x (N, C, H, W), weight (kh, kw, C/G, K) -
    in Keras's HWIO layout for both data layouts (its transform reads K contiguously).

    Returns True when some output is not finite: an infinity or NaN in the input spreads over
    the whole 4x4 patch in Winograd's transform, so the caller must recompute such a result
    with a direct sum to get the same NaN and infinity positions.
    """
    return _forward_checked(x, weight, bias, out, workspace, pad_top, pad_left, groups,
                            num_threads, False)


def forward_nhwc(x, weight, bias, out, workspace, pad_top, pad_left, groups, num_threads):
    """As forward_nchw, for x (N, H, W, C) and out (N, oH, oW, K)."""
    return _forward_checked(x, weight, bias, out, workspace, pad_top, pad_left, groups,
                            num_threads, True)


def _grad_weight_checked(grad_output, x, grad_weight, workspace, pad_top, pad_left, groups,
                         num_threads, nhwc):
    if nhwc:
        kh, kw, _, K = grad_weight.shape
    else:
        K, _, kh, kw = grad_weight.shape
    p = _checked_plan(x, kh, kw, K, grad_output, workspace, pad_top, pad_left, groups,
                      num_threads, nhwc, _grad_weight_elements)
    if x.shape[0] == 0:
        grad_weight[...] = 0
        return
    _use_threads(p.threads)
    _grad_weight(grad_output, x, grad_weight, workspace, p, nhwc)


def grad_weight_nchw(grad_output, x, grad_weight, workspace, pad_top, pad_left, groups,
                     num_threads):
    """grad_weight := dL/dW of a stride-1 convolution, NCHW: x (N, C, H, W), weight
    (K, C/G, kh, kw). May hold infinities or NaN where a direct sum would not; the caller checks."""
    _grad_weight_checked(grad_output, x, grad_weight, workspace, pad_top, pad_left, groups,
                         num_threads, False)


def grad_weight_nhwc(grad_output, x, grad_weight, workspace, pad_top, pad_left, groups,
                     num_threads):
    """As grad_weight_nchw for x (N, H, W, C) and weight (kh, kw, C/G, K)."""
    _grad_weight_checked(grad_output, x, grad_weight, workspace, pad_top, pad_left, groups,
                         num_threads, True)
