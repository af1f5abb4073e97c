"""Direct 2-D convolution kernels in Numba: loops straight over the input, no column buffer.

Drop-in replacement for ``fastconv._ext._conv_direct`` (same function names, same positional
arguments, same semantics).

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
zero outside [0, H) x [0, W).  Cross-correlation, as torch.nn.functional.conv2d.  pad_bottom and
pad_right are implied by the output shape.

How the loops are written, so that LLVM vectorises them and nothing else costs more:
  * inner loops run over a contiguous last index from 0, or over unsigned offsets (a signed
    index ``a[o + t]`` keeps Numba's negative-index wraparound and does not vectorise);
  * hot-loop helpers are inlined in Numba's IR (``_inlined``), and no array views are made
    per pixel: a call or a view passes arrays with atomic reference counting, shared by the
    threads, which costs as much as a short loop;
  * short sums (a block of 4 rows of output channels) stay in a stack array
    (``_stack_array``): LLVM knows it overlaps no argument, so a loop over 32 channels needs
    no runtime overlap checks.  Numba runs no SLP vectoriser, but a block of sums of
    constant size (e.g. 8 pixels x 32 channels) in a stack array, updated by an inner loop
    of constant length under a runtime loop over the taps, is vectorised and then kept in
    registers over all the taps, as Cython's vector kernels keep theirs: the last block of
    a row overlaps the one before (recomputed, or its shared lanes skipped where it adds).
    Those kernels are compiled without reassociation, so that a short loop's fused sum
    keeps its tree of independent products (LLVM would re-chain it into serial FMAs).

Parallelism (numba.prange over disjoint output regions or fixed sample chunks summed in
order afterwards, so results are bitwise reproducible and do not depend on the number of
threads; where tasks need scratch they are dealt to one worker a thread):
    forward_nchw      stride 1, few C/G (first, narrow, depthwise layers): (n, group, block of
                      4 output channels) over the group's zero-padded planes (first layers:
                      kw column-shifted copies at the output's pitch), every tap one flat
                      run, runs of 64 x 4 channels (128 x 1) summed over all taps in
                      registers, contiguous task ranges a worker.  Otherwise (n, block of
                      output rows), the window's rows staged zero padded, 4 channels x 4 taps.
    forward_nhwc      groups == 1: (n, block of output rows) over staged rows, 8 pixels x 32
                      channels in registers, one input value a tap broadcast over the output
                      channels.  Depthwise: (n, oh) read in place, 8 pixels x 32 channels in
                      registers (fewer than 32 channels: 4 pixels x 4 taps a pass).
                      Otherwise (n, oh) output rows.
    grad_input_nchw   stride 1: forward_nchw of grad_output with the flipped, transposed kernel.
                      Otherwise (n, ih) rows, all C per row.
    grad_input_nhwc   depthwise, stride 1: forward_nhwc with the flipped kernel.  Otherwise
                      (n, ih) input-gradient rows (gather form)
    grad_weight_nchw  C/G == 1, stride 1: (sample chunk, block of 4 output channels), flat dot
                      products over staged planes, 4 channels x 5 taps.  Otherwise (group,
                      block of 4 output channels, block of input channels)
    grad_weight_nhwc  groups == 1: sample chunks over staged images, 5 taps x 32 channels
                      summed over an image in registers.  Depthwise: sample chunks, the
                      input read in place, 3 taps x 32 channels summed along each row (fewer
                      than 32 channels: staged images, 4 taps x 4 pixels a pass).  Otherwise
                      (i, j, block of input channels, block of groups)

Float reductions use fastmath reassociation flags (no "nnan"/"ninf": NaN and inf propagate).
"""
import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from llvmlite import ir as llvmlite_ir
from numba.np.arrayobj import make_array, populate_array

_FASTMATH = {"reassoc", "nsz", "arcp", "contract"}
# Without reassociation: LLVM keeps a fused sum's tree (independent products, short
# dependency chains) instead of re-chaining it into one FMA after another.
_TREE_FASTMATH = {"nsz", "arcp", "contract"}


def _use_threads(n):
    """Set Numba's thread count for the calling thread (clamped to the pool); return it."""
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


def _ceil_div(a, b):
    return (a + b - 1) // b


# --------------------------------------------------------------------------- helpers

_inner = njit(cache=True, fastmath=_FASTMATH)
# Hot-loop helpers: inlined in Numba's IR, since an LLVM-level call passes arrays with
# atomic reference counting around it (shared by the threads: as slow as the loop itself).
_inlined = njit(cache=True, fastmath=_TREE_FASTMATH, inline="always")


@_inner
def _valid_range(n_out, n_in, stride, offset):
    """(lo, hi) := range of o in [0, n_out) with 0 <= o*stride + offset < n_in"""
    a = 0
    if offset < 0:
        a = (-offset + stride - 1) // stride
    t = n_in - 1 - offset
    b = 0 if t < 0 else t // stride + 1
    if b > n_out:
        b = n_out
    if a > b:
        a = b
    return a, b


@_inner
def _axpy1(d, a, wa, m):
    """d[t] += wa*a[t]"""
    for t in range(m):
        d[t] += wa * a[t]


@_inner
def _axpy4(d, a, b, c, e, wa, wb, wc, we, m):
    """d[t] += wa*a[t] + wb*b[t] + wc*c[t] + we*e[t]"""
    for t in range(m):
        d[t] += (wa * a[t] + wb * b[t]) + (wc * c[t] + we * e[t])


@_inner
def _axpy4x4(d0, d1, d2, d3, a, b, c, e, w, m):
    """d_r[t] += sum_q w[4r + q] * src_q[t]  (4 destination rows, 4 source rows)"""
    w00 = w[0]
    w01 = w[1]
    w02 = w[2]
    w03 = w[3]
    w10 = w[4]
    w11 = w[5]
    w12 = w[6]
    w13 = w[7]
    w20 = w[8]
    w21 = w[9]
    w22 = w[10]
    w23 = w[11]
    w30 = w[12]
    w31 = w[13]
    w32 = w[14]
    w33 = w[15]
    for t in range(m):
        va = a[t]
        vb = b[t]
        vc = c[t]
        ve = e[t]
        d0[t] += (w00 * va + w01 * vb) + (w02 * vc + w03 * ve)
        d1[t] += (w10 * va + w11 * vb) + (w12 * vc + w13 * ve)
        d2[t] += (w20 * va + w21 * vb) + (w22 * vc + w23 * ve)
        d3[t] += (w30 * va + w31 * vb) + (w32 * vc + w33 * ve)


@_inner
def _mul1(d, a, b, m):
    """d[t] += a[t]*b[t]"""
    for t in range(m):
        d[t] += a[t] * b[t]


@_inner
def _dot1(a, b, m, zero):
    """sum_t a[t]*b[t]"""
    s = zero
    for t in range(m):
        s += a[t] * b[t]
    return s


@_inner
def _dot4(a0, a1, a2, a3, b, m, zero):
    """(sum_t a_q[t]*b[t]) for q < 4"""
    s0 = zero
    s1 = zero
    s2 = zero
    s3 = zero
    for t in range(m):
        v = b[t]
        s0 += a0[t] * v
        s1 += a1[t] * v
        s2 += a2[t] * v
        s3 += a3[t] * v
    return s0, s1, s2, s3


@_inner
def _fill_padded_row(row, src, lead, n_src):
    """row[u] := src[u - lead] where 0 <= u - lead < n_src, else 0"""
    width = row.shape[0]
    a = min(max(lead, 0), width)
    b = min(max(lead + n_src, a), width)
    row[:a] = 0
    if b > a:
        row[a:b] = src[a - lead:b - lead]
    row[b:] = 0


@_inner
def _apply_taps(acc, nk, buf, offs, wv, cnt, s, rows, src_pitch, dst_pitch, m):
    """acc[r, row*dst_pitch + t] += sum_q wv[r, q] * buf[offs[q] + row*src_pitch + t*s]

    for r < nk, q < cnt, row < rows, t < m (4 taps fused when cnt == 4)."""
    for row in range(rows):
        o = row * src_pitch
        p = row * dst_pitch
        if cnt == 4 and s == 1:
            a = buf[offs[0] + o:offs[0] + o + m]
            b = buf[offs[1] + o:offs[1] + o + m]
            c = buf[offs[2] + o:offs[2] + o + m]
            e = buf[offs[3] + o:offs[3] + o + m]
            if nk == 4:
                _axpy4x4(acc[0, p:p + m], acc[1, p:p + m], acc[2, p:p + m], acc[3, p:p + m],
                         a, b, c, e, wv.ravel(), m)
            else:
                for r in range(nk):
                    _axpy4(acc[r, p:p + m], a, b, c, e, wv[r, 0], wv[r, 1], wv[r, 2], wv[r, 3], m)
        elif cnt == 4:
            a = buf[offs[0] + o:offs[0] + o + (m - 1) * s + 1:s]
            b = buf[offs[1] + o:offs[1] + o + (m - 1) * s + 1:s]
            c = buf[offs[2] + o:offs[2] + o + (m - 1) * s + 1:s]
            e = buf[offs[3] + o:offs[3] + o + (m - 1) * s + 1:s]
            for r in range(nk):
                _axpy4(acc[r, p:p + m], a, b, c, e, wv[r, 0], wv[r, 1], wv[r, 2], wv[r, 3], m)
        else:
            for q in range(cnt):
                if s == 1:
                    a = buf[offs[q] + o:offs[q] + o + m]
                    for r in range(nk):
                        _axpy1(acc[r, p:p + m], a, wv[r, q], m)
                else:
                    a2 = buf[offs[q] + o:offs[q] + o + (m - 1) * s + 1:s]
                    for r in range(nk):
                        _axpy1(acc[r, p:p + m], a2, wv[r, q], m)


@_inlined
def _sum4(src, s0, t, c):
    """sum_{u < 4} c[u] * src[s0 + u, t] as a tree of independent products"""
    return ((c[0] * src[s0, t] + c[1] * src[s0 + 1, t])
            + (c[2] * src[s0 + 2, t] + c[3] * src[s0 + 3, t]))


@_inlined
def _rows_axpy4x4(d, di, src, s0, c0, c1, c2, c3, m):
    """d[di + r, t] += sum_{u < 4} c_r[u] * src[s0 + u, t]  for r < 4 (c_r: 4 scalars,
    broadcast): each load of src serves the 4 destination rows (4 pixels x 4 taps, or
    4 taps x 4 pixels)"""
    for t in range(m):
        d[di, t] += _sum4(src, s0, t, c0)
        d[di + 1, t] += _sum4(src, s0, t, c1)
        d[di + 2, t] += _sum4(src, s0, t, c2)
        d[di + 3, t] += _sum4(src, s0, t, c3)


@_inlined
def _rows_axpy1(d, di, src, s, c, m):
    """d[di, t] += c * src[s, t]"""
    for t in range(m):
        d[di, t] += c * src[s, t]


@_inlined
def _rows_mul4x4(acc, a, ra0, ra1, ra2, ra3, b, rb, c0, m):
    """acc[r, t] += sum_{u < 4} a[ra_r[u], c0 + t] * b[rb + u, c0 + t]  for r < 4, t < m
    (ra_r: 4 row indices): each load of b serves the 4 rows (depthwise: 4 pixels x 4 taps
    with b the weights, or 4 taps x 4 pixels with b grad_output)"""
    for t in range(np.uint64(m)):
        c = c0 + t
        b0 = b[rb, c]
        b1 = b[rb + 1, c]
        b2 = b[rb + 2, c]
        b3 = b[rb + 3, c]
        acc[0, t] = _chain4(acc[0, t], a, ra0, c, b0, b1, b2, b3)
        acc[1, t] = _chain4(acc[1, t], a, ra1, c, b0, b1, b2, b3)
        acc[2, t] = _chain4(acc[2, t], a, ra2, c, b0, b1, b2, b3)
        acc[3, t] = _chain4(acc[3, t], a, ra3, c, b0, b1, b2, b3)


@_inlined
def _chain4(s, a, ra, c, b0, b1, b2, b3):
    """s + sum_{u < 4} a[ra[u], c] * b_u, one FMA after another"""
    return s + a[ra[0], c] * b0 + a[ra[1], c] * b1 + a[ra[2], c] * b2 + a[ra[3], c] * b3


# --------------------------------------------------------------------------- NCHW forward

@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _forward_nchw(x, weight, bias, out, sh, sw, pt, pl, dh, dw, G, R):
    """out := bias + conv2d(x, weight)  (NCHW), tasks (n, block of R output rows)"""
    N, C, H, W = x.shape
    K, oH, oW = out.shape[1], out.shape[2], out.shape[3]
    Cg, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    Kg = K // G
    S = Cg * kh * kw
    wf = weight.reshape(K, S)
    Wp = (oW - 1) * sw + (kw - 1) * dw + 1
    Hr = (R - 1) * sh + (kh - 1) * dh + 1
    flat = sh == 1 and sw == 1
    L = (R - 1) * Wp + oW if flat else R * oW
    nrb = (oH + R - 1) // R
    for t in prange(N * nrb):
        n = t // nrb
        oh0 = (t - n * nrb) * R
        Rr = min(R, oH - oh0)
        buf = np.empty(Cg * Hr * Wp, dtype=x.dtype)
        acc = np.empty((4, L), dtype=x.dtype)
        wv = np.empty((4, 4), dtype=x.dtype)
        offs = np.empty(4, dtype=np.int64)
        wi = np.empty(4, dtype=np.int64)
        if flat:
            Lr = (Rr - 1) * Wp + oW
            rows = 1
            m = Lr
        else:
            Lr = Rr * oW
            rows = Rr
            m = oW
        for g in range(G):
            for c in range(Cg):
                for r in range(Hr):
                    ih = oh0 * sh - pt + r
                    row = buf[(c * Hr + r) * Wp:(c * Hr + r + 1) * Wp]
                    if ih < 0 or ih >= H:
                        row[:] = 0
                    else:
                        _fill_padded_row(row, x[n, g * Cg + c, ih], pl, W)
            for k0 in range(g * Kg, (g + 1) * Kg, 4):
                nk = min(4, (g + 1) * Kg - k0)
                for kk in range(nk):
                    acc[kk, :Lr] = bias[k0 + kk]
                cnt = 0
                for c in range(Cg):
                    for i in range(kh):
                        for j in range(kw):
                            offs[cnt] = (c * Hr + i * dh) * Wp + j * dw
                            wi[cnt] = (c * kh + i) * kw + j
                            cnt += 1
                            if cnt == 4:
                                for r in range(nk):
                                    for q in range(4):
                                        wv[r, q] = wf[k0 + r, wi[q]]
                                _apply_taps(acc, nk, buf, offs, wv, 4, sw, rows, sh * Wp, oW, m)
                                cnt = 0
                if cnt > 0:
                    for r in range(nk):
                        for q in range(cnt):
                            wv[r, q] = wf[k0 + r, wi[q]]
                    _apply_taps(acc, nk, buf, offs, wv, cnt, sw, rows, sh * Wp, oW, m)
                for kk in range(nk):
                    for r in range(Rr):
                        p = r * Wp if flat else r * oW
                        out[n, k0 + kk, oh0 + r, :] = acc[kk, p:p + oW]


def _rows_per_block(N, oH, width, nthreads):
    """Output rows per task: about 1024 outputs, and enough tasks for the threads."""
    R = max(1, min(oH, 1024 // max(width, 1)))
    while R > 1 and N * _ceil_div(oH, R) < 4 * nthreads:
        R = _ceil_div(R, 2)
    return R


@njit(parallel=True, cache=True, fastmath=_TREE_FASTMATH)
def _forward_nchw_pointwise(x, weight, bias, out, off, run, workers):
    """out[n, k, t] := bias[k] + sum_c w[k, c] * x[n, c, t]: a 1x1, stride-1, unpadded,
    single-group layer, whose input planes are already flat runs of the output's pixels
    (off[c] = c*H*W). Tasks are (sample, run of pixels), a contiguous range a worker; the
    run's C input rows stay in cache while every block of 4 output channels sums over them
    (_plane_taps) and the output is written once, where BLAS would clear it first and add."""
    N, C = x.shape[0], x.shape[1]
    K = out.shape[1]
    HW = x.shape[2] * x.shape[3]
    P = x.reshape(N * C * HW)
    results = out.reshape(N * K, HW)
    w = weight.reshape(K, C)
    nruns = (HW + run - 1) // run
    ntasks = N * nruns
    for worker in prange(workers):
        at = np.empty(C, dtype=np.uint64)     # off, moved to the task's sample
        blk4 = _stack_array(4, _RUN4, x.dtype)
        blk1 = _stack_array(1, _BLOCK1, x.dtype)
        for task in range(worker * ntasks // workers, (worker + 1) * ntasks // workers):
            n = task // nruns
            t0 = (task % nruns) * run
            m = min(run, HW - t0)
            for c in range(C):
                at[c] = off[c] + np.uint64(n * C * HW)
            for k0 in range(0, K, 4):
                _plane_taps(results, n * K + k0, t0, min(4, K - k0), P, at, w, k0, bias, m,
                            blk4, blk1)


def forward_nchw(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left,
                 dilation_h, dilation_w, groups, num_threads):
    """out := conv2d(x, weight) + bias  (NCHW)"""
    N, oH, oW = out.shape[0], out.shape[2], out.shape[3]
    if N == 0:
        return
    nt = _use_threads(num_threads)
    K, Cg, kh, kw = weight.shape
    if (kh == kw == 1 and stride_h == stride_w == 1 and groups == 1
            and (oH, oW) == x.shape[2:]):
        # runs whose C input rows fill about 32 KB, whole blocks of _plane_taps
        run = max(_RUN4, 32768 // (Cg * x.itemsize) // _RUN4 * _RUN4)
        _forward_nchw_pointwise(x, weight, bias, out, _plane_offsets(Cg, 1, 1, 1, 1, oH, oW),
                                min(run, oH * oW), nt)
        return
    Hp = oH + (kh - 1) * dilation_h
    Kg = K // groups
    # a task copies its Kg planes of sums out, or stages (kw - 1)*Cg more planes: the
    # fewer copies win (measured both ways, first layers gain 15-30%)
    if Kg >= 4 and Kg > (kw - 1) * Cg:
        copies, pitch = kw, oW
    else:
        copies, pitch = 1, oW + (kw - 1) * dilation_w
    staged = Cg * copies * Hp * pitch + (0 if pitch == oW else 4 * ((oH - 1) * pitch + oW))
    if stride_h == 1 and stride_w == 1 and _planes_fit(Cg, Kg, staged):
        _forward_nchw_planes(x, weight, bias, out, pad_top, pad_left, groups, Hp, pitch, copies,
                             dilation_w, _plane_offsets(Cg, kh, kw, dilation_h, dilation_w,
                                                        Hp, pitch, copies),
                             _ceil_div(4 * nt, N * groups) if N * groups < 4 * nt else 1, nt)
        return
    if stride_h == 1 and stride_w == 1:
        width = (oW - 1) + (weight.shape[3] - 1) * dilation_w + 1
    else:
        width = oW
    R = _rows_per_block(N, oH, width, nt)
    _forward_nchw(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left,
                  dilation_h, dilation_w, groups, R)


# --------------------------------------------------------------------------- NCHW staged planes
#
# Stride 1, few input channels per group (first, narrow and depthwise layers).  A group's
# input planes are staged zero padded, so that every tap is one flat run over them:
#   * kw copies of each plane, each shifted by a kernel column and cut to the output's
#     width (copy (c, j): S[c, j, r, ow] = padded plane c at (r, ow + j*dw), Hp rows of
#     pitch oW).  Output (oh, ow) at flat index t = oh*oW + ow reads tap (c, i, j) at
#     S[off[q] + t], off[q] = ((c*kw + j)*Hp + i*dh)*oW: the runs of sums are the output
#     planes themselves, written once, bias added, from registers.
#   * Or one copy of each plane at pitch Wp = oW + (kw - 1)*dw, off[q] = (c*Hp + i*dh)*Wp
#     + j*dw: the runs of sums have kw - 1 scratch columns a row and are copied out row by
#     row.  That costs a task Kg plane copies where the shifted copies cost (kw - 1)*Cg
#     more planes staged; forward_nchw takes the fewer, and this for Kg < 4 (depthwise 3x3
#     ran 1.2x slower on shifted copies).
# Offsets and run indices are unsigned, which spares Numba's negative-index wraparound, so
# the offset runs vectorise.

_PLANE_ELEMENTS = 65536     # staged planes + runs of sums a task: at most this many
# Blocks of sums held in registers span at least two float32 vectors a row: with rows of
# one vector (16 elements) LLVM left the sums in memory and ran 2-4x slower (measured).
_BLOCK = 32                 # channels a row of a register-held block of sums (NHWC)
_RUN4 = 64                  # elements a row of a block of 4 rows of sums (staged planes)
_BLOCK1 = 128               # ... and of a block of one row (8 float32 vectors)


def _plane_offsets(Cg, kh, kw, dh, dw, Hp, pitch, copies=1):
    """off[(c*kh + i)*kw + j]: where tap (c, i, j) of output 0 lies in planes staged as
    `copies` (1, or kw shifted by a column: see above) copies of Hp rows at `pitch`; for
    one copy c*Hp*pitch + i*dh*pitch + j*dw"""
    c, i, j = np.meshgrid(np.arange(Cg), np.arange(kh), np.arange(kw), indexing="ij")
    copy, column = (j, 0 * j) if copies > 1 else (0 * j, j * dw)
    return (((c * copies + copy) * Hp + i * dh) * pitch + column).ravel().astype(np.uint64)


@_inlined
def _stage_plane(P, po, planes, plane, H, W, top, left, Hp, Wp):
    """P[po + r*Wp + u] := planes[plane, (r - top)*W + u - left] inside the H x W plane,
    else 0, for r < Hp, u < Wp: zeros in one run, then the rows' inside parts"""
    for t in range(np.uint64(Hp * Wp)):
        P[np.uint64(po) + t] = 0
    _copy_inside(P, po, planes, plane, H, W, top, left, Hp, Wp)


@_inlined
def _copy_inside(P, po, planes, plane, H, W, top, left, Hp, Wp):
    """_stage_plane without the zeros: P[po + r*Wp + u] := planes[plane, (r - top)*W + u - left]
    inside the H x W plane (the rest of P left as it is)"""
    lo = min(max(left, 0), Wp)
    hi = min(max(left + W, lo), Wp)
    for r in range(max(top, 0), min(top + H, Hp)):
        row = np.uint64(po + r * Wp + lo)
        src = np.uint64((r - top) * W + lo - left)
        for u in range(np.uint64(hi - lo)):
            P[row + u] = planes[plane, src + u]


@_inlined
def _copy_row(dst, d, do, src, s, so, width, vl):
    """dst[d, do + u] := src[s, so + u]  for u < width, in whole runs of vl elements (one
    vector) where width >= vl, the last run overlapping the one before: short rows would
    otherwise end in scalar remainder loops"""
    n = width - width % vl if width >= vl else width
    for u in range(np.uint64(n)):
        dst[d, np.uint64(do) + u] = src[s, np.uint64(so) + u]
    if n < width:
        tail = width - vl
        for u in range(np.uint64(vl)):
            dst[d, np.uint64(do + tail) + u] = src[s, np.uint64(so + tail) + u]


@_inlined
def _runs_at(P, o, t):
    """P[o[u] + t] for u < 4"""
    return P[o[0] + t], P[o[1] + t], P[o[2] + t], P[o[3] + t]


@_inlined
def _block_taps4(dst, d, do, P, off, w, k0, bias, blk):
    """dst[d + r, do + t] := bias[k0 + r] + sum_q w[k0 + r, q] * P[off[q] + do + t]
    for r < 4, t < _RUN4

    The sums stay in blk, a (4, _RUN4) stack array: with the taps in the outer loop and
    a constant-length inner loop, LLVM keeps its vectors in registers over all the taps
    (16 accumulators, each load of P serving the 4 output channels), and the block is
    written once, bias added, straight to its output rows."""
    B = np.uint64(_RUN4)
    for r in range(4):
        for t in range(B):
            blk[r, t] = 0
    for q in range(off.shape[0]):
        o = off[q] + np.uint64(do)
        w0, w1, w2, w3 = w[k0, q], w[k0 + 1, q], w[k0 + 2, q], w[k0 + 3, q]
        for t in range(B):
            v = P[o + t]
            blk[0, t] += w0 * v
            blk[1, t] += w1 * v
            blk[2, t] += w2 * v
            blk[3, t] += w3 * v
    for r in range(4):
        b = bias[k0 + r]
        for t in range(B):
            dst[d + r, np.uint64(do) + t] = blk[r, t] + b


@_inlined
def _block_taps1(dst, d, do, P, off, w, k, bias, blk):
    """dst[d, do + t] := bias[k] + sum_q w[k, q] * P[off[q] + do + t]  for t < _BLOCK1:
    one output channel, its sums in blk ((1, _BLOCK1): 8 vector accumulators in registers)"""
    B = np.uint64(_BLOCK1)
    for t in range(B):
        blk[0, t] = 0
    for q in range(off.shape[0]):
        o = off[q] + np.uint64(do)
        c = w[k, q]
        for t in range(B):
            blk[0, t] += c * P[o + t]
    b = bias[k]
    for t in range(B):
        dst[d, np.uint64(do) + t] = blk[0, t] + b


@_inlined
def _plane_taps(dst, d, do, nk, P, off, w, k0, bias, m, blk4, blk1):
    """dst[d + r, do + t] := bias[k0 + r] + sum_q w[k0 + r, q] * P[off[q] + do + t]
    for r < nk <= 4, t < m: runs of the output planes, where tap q of output t reads
    P[off[q] + t]

    In blocks of constant length (_block_taps4, _block_taps1), the last one overlapping
    the one before (the same sums, computed twice); runs shorter than a block tap by tap,
    summed in place and the bias added last, as in the blocks."""
    if nk == 4 and m >= _RUN4:
        for t0 in range(0, m, _RUN4):
            _block_taps4(dst, d, do + min(t0, m - _RUN4), P, off, w, k0, bias, blk4)
    elif m >= _BLOCK1:
        for r in range(nk):
            for t0 in range(0, m, _BLOCK1):
                _block_taps1(dst, d + r, do + min(t0, m - _BLOCK1), P, off, w, k0 + r, bias,
                             blk1)
    else:
        for r in range(nk):
            row = dst[d + r, do:do + m]
            row[:] = 0
            for q in range(off.shape[0]):
                for t in range(np.uint64(m)):
                    row[t] += w[k0 + r, q] * P[off[q] + np.uint64(do) + t]
            row += bias[k0 + r]


@_inlined
def _prefetch_part(a, row, part, parts):
    """Ask for the cache lines of part `part` of `parts` of a[row]: a task's planes are
    short streams the hardware prefetcher has barely locked on to when they end, so the
    next task's are asked for a part at a time while this one's are summed"""
    n = a.shape[1]
    for c in range(part * n // parts, (part + 1) * n // parts, _LINE_ELEMENTS):
        _prefetch(a, row, c)


@njit(parallel=True, cache=True, fastmath=_TREE_FASTMATH)
def _forward_nchw_planes(x, weight, bias, out, pt, pl, G, Hp, pitch, copies, dw, off, nsplit,
                         workers):
    """out := bias + conv2d(x, weight)  (NCHW, stride 1); tasks (n, group, part of the
    group's output channels: nsplit parts of whole blocks of 4), the group's input planes
    staged once a task (see above), each of `workers` (one a thread: the scratch is
    allocated once a worker, not a task) taking a contiguous range of tasks, so that it
    streams through memory as the hardware prefetcher expects.

    Which staged positions a copy writes depends on the geometry alone, so the copies are
    zeroed once a worker and only their insides staged: the zeros around them stay."""
    N, C, H, W = x.shape
    K, oH, oW = out.shape[1], out.shape[2], out.shape[3]
    Cg = weight.shape[1]
    Kg = K // G
    blocks = (Kg + 3) // 4
    per_part = (blocks + nsplit - 1) // nsplit
    w = weight.reshape(K, off.shape[0])
    planes = x.reshape(N * C, H * W)
    group_planes = x.reshape(N * G, Cg * H * W)
    results = out.reshape(N * K, oH * oW)
    ntasks = N * G * nsplit
    L = (oH - 1) * pitch + oW      # a run of sums: the output plane where pitch == oW
    vl = 64 // x.itemsize          # an AVX-512 vector: the runs of _copy_row
    for worker in prange(workers):
        S = np.zeros(Cg * copies * Hp * pitch, dtype=x.dtype)
        acc = np.empty((0 if pitch == oW else 4, L), dtype=x.dtype)
        blk4 = _stack_array(4, _RUN4, x.dtype)
        blk1 = _stack_array(1, _BLOCK1, x.dtype)
        last = (worker + 1) * ntasks // workers
        for task in range(worker * ntasks // workers, last):
            n = task // (G * nsplit)
            g = (task // nsplit) % G
            part = task % nsplit
            for c in range(Cg):
                for j in range(copies):
                    _copy_inside(S, (c * copies + j) * Hp * pitch, planes, n * C + g * Cg + c,
                                 H, W, pt, pl - j * dw, Hp, pitch)
            ahead = (task + 1) // nsplit   # (n, g) of the worker's next task
            kb0, kb1 = part * per_part, min(blocks, (part + 1) * per_part)
            for kb in range(kb0, kb1):
                k0 = g * Kg + kb * 4
                nk = min(4, (g + 1) * Kg - k0)
                if pitch == oW:
                    _plane_taps(results, n * K + k0, 0, nk, S, off, w, k0, bias, L, blk4, blk1)
                else:
                    _plane_taps(acc, 0, 0, nk, S, off, w, k0, bias, L, blk4, blk1)
                    for r in range(nk):
                        for oh in range(oH):
                            _copy_row(results, n * K + k0 + r, oh * oW, acc, r, oh * pitch, oW,
                                      vl)
                            if r == 0 and task + 1 < last:
                                _prefetch_part(group_planes, ahead, oh, oH)
                if pitch == oW and task + 1 < last:
                    _prefetch_part(group_planes, ahead, kb - kb0, kb1 - kb0)


@_inlined
def _runs_dot4(g, P, o, m):
    """(sum_t g[t] * P[o[u] + t]) for u < 4: each load of g serves the 4 taps"""
    s0 = s1 = s2 = s3 = g[0] * 0
    for t in range(np.uint64(m)):
        v = g[t]
        p0, p1, p2, p3 = _runs_at(P, o, t)
        s0 += v * p0
        s1 += v * p1
        s2 += v * p2
        s3 += v * p3
    return s0, s1, s2, s3


@_inlined
def _plane_dots(sums, g, P, off, m):
    """sums[q] += sum_{t < m} g[t] * P[off[q] + t]  for every tap q"""
    T = off.shape[0]
    q = 0
    while q + 4 <= T:
        s0, s1, s2, s3 = _runs_dot4(g, P, (off[q], off[q + 1], off[q + 2], off[q + 3]), m)
        sums[q] += s0
        sums[q + 1] += s1
        sums[q + 2] += s2
        sums[q + 3] += s3
        q += 4
    for q in range(q, T):
        s = g[0] * 0
        for t in range(np.uint64(m)):
            s += g[t] * P[off[q] + t]
        sums[q] += s


@_inlined
def _runs_dots4x5(acc, g, go, P, o, m):
    """acc[r, u] += sum_t g[go[r] + t] * P[o[u] + t]  for r < 4, u < 5: 4 output channels x
    5 taps (20 vector sums), each load of g serving 5 taps and each load of P 4 channels"""
    for t in range(np.uint64(m)):
        p0, p1, p2, p3 = _runs_at(P, o, t)
        p4 = P[o[4] + t]
        for r in range(4):
            v = g[go[r] + t]
            acc[r, 0] += v * p0
            acc[r, 1] += v * p1
            acc[r, 2] += v * p2
            acc[r, 3] += v * p3
            acc[r, 4] += v * p4


@_inlined
def _plane_dots4(sums, k0, g, Gs, P, off, m, acc):
    """sums[k0 + r, q] += sum_{t < m} g[r*Gs + t] * P[off[q] + t]  for r < 4, every tap q

    Blocks of 5 taps (a 5x5 kernel a row at a time), the last block's missing taps
    repeating its last (computed and dropped)."""
    T = off.shape[0]
    go = (np.uint64(0), np.uint64(Gs), np.uint64(2 * Gs), np.uint64(3 * Gs))
    for q in range(0, T, 5):
        o = (off[q], off[min(q + 1, T - 1)], off[min(q + 2, T - 1)], off[min(q + 3, T - 1)],
             off[min(q + 4, T - 1)])
        acc[:, :] = 0
        _runs_dots4x5(acc, g, go, P, o, m)
        for r in range(4):
            for u in range(min(5, T - q)):
                sums[k0 + r, q + u] += acc[r, u]


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _grad_weight_nchw_planes(grad_output, x, part, pt, pl, G, Hp, Wp, off, nbs, workers):
    """part[chunk, k, q] := sum over the chunk's samples of grad_weight[k, 0, i, j]
    (C/G == 1, stride 1); tasks (sample chunk, group, block of <= 4 output channels), each
    of `workers` taking a contiguous range of them and going through a chunk's samples
    outermost, so that it streams through the planes of each sample (every sum still runs
    over the samples in order, whatever the split)

    The input plane is staged as in the forward and the grad_output planes at the same
    pitch Wp, zero beyond oW, so every tap is one flat dot product; the staging buffers
    are zeroed once a worker, and only the planes' insides copied."""
    N, C, H, W = x.shape
    K, oH, oW = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    Kg = K // G
    nkb = (Kg + 3) // 4
    m = (oH - 1) * Wp + oW
    Gs = oH * Wp
    planes = x.reshape(N * C, H * W)
    grads = grad_output.reshape(N * K, oH * oW)
    inside = pt >= 0 and pl >= 0 and pt + H <= Hp and pl + W <= Wp
    per_chunk = G * nkb
    ntasks = part.shape[0] * per_chunk
    for worker in prange(workers):
        P = np.zeros(Hp * Wp, dtype=x.dtype)   # the zeros around the planes stay
        gs = np.zeros(4 * Gs, dtype=x.dtype)
        acc = _stack_array(4, 5, x.dtype)
        lo, hi = worker * ntasks // workers, (worker + 1) * ntasks // workers
        for chunk in range(lo // per_chunk, (hi + per_chunk - 1) // per_chunk):
            t0, t1 = max(lo, chunk * per_chunk), min(hi, (chunk + 1) * per_chunk)
            sums = part[chunk]
            for task in range(t0, t1):
                k0 = (task % per_chunk) // nkb * Kg + (task % nkb) * 4
                sums[k0:min(k0 + 4, (k0 // Kg + 1) * Kg)] = 0
            for n in range(chunk * nbs, min(N, (chunk + 1) * nbs)):
                for task in range(t0, t1):
                    g = (task % per_chunk) // nkb
                    k0 = g * Kg + (task % nkb) * 4
                    nk = min(4, (g + 1) * Kg - k0)
                    if inside:
                        _copy_inside(P, 0, planes, n * C + g, H, W, pt, pl, Hp, Wp)
                    else:
                        _stage_plane(P, 0, planes, n * C + g, H, W, pt, pl, Hp, Wp)
                    for r in range(nk):
                        _copy_inside(gs, r * Gs, grads, n * K + k0 + r, oH, oW, 0, 0, oH, Wp)
                    if nk == 4:
                        _plane_dots4(sums, k0, gs, Gs, P, off, m, acc)
                    else:
                        for r in range(nk):
                            _plane_dots(sums[k0 + r], gs[r * Gs:], P, off, m)


def _planes_fit(Cg, Kg, staged):
    """Few input channels a group, and a task's staged planes and runs of sums (`staged`
    elements) small (depthwise always)"""
    return Cg <= 32 and (Cg == 1 and Kg < 4 or staged <= _PLANE_ELEMENTS)


# --------------------------------------------------------------------------- NCHW grad_input

@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _grad_input_nchw(grad_output, weight, grad_input, sh, sw, pt, pl, dh, dw, G):
    """grad_input[n, c, ih, :] := sum_{k, i, j} w[k, c, i, j] * grad_output[n, k, oh, ow]"""
    N, C, H, W = grad_input.shape
    K, oH, oW = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    Cg, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    Kg = K // G
    for t in prange(N * H):
        n = t // H
        ih = t - n * H
        for c in range(C):
            g = c // Cg
            cc = c - g * Cg
            dst = grad_input[n, c, ih]
            dst[:] = 0
            for i in range(kh):
                num = ih + pt - i * dh
                if num < 0:
                    break
                if num % sh != 0:
                    continue
                oh = num // sh
                if oh >= oH:
                    continue
                for j in range(kw):
                    off = j * dw - pl
                    lo, hi = _valid_range(oW, W, sw, off)
                    m = hi - lo
                    if m <= 0:
                        continue
                    d = dst[lo * sw + off:(hi - 1) * sw + off + 1:sw]
                    for k in range(g * Kg, (g + 1) * Kg):
                        _axpy1(d, grad_output[n, k, oh, lo:hi], weight[k, cc, i, j], m)


def grad_input_nchw(grad_output, weight, grad_input, stride_h, stride_w, pad_top, pad_left,
                    dilation_h, dilation_w, groups, num_threads):
    """grad_input := conv2d_input adjoint of grad_output  (NCHW)"""
    N = grad_input.shape[0]
    if N == 0:
        return
    K, Cg, kh, kw = weight.shape
    if stride_h == 1 and stride_w == 1:
        # The adjoint is a forward correlation of grad_output with the flipped, group-transposed
        # kernel w'[c, k, i, j] = w[k, c, kh-1-i, kw-1-j] and padding (k-1)*d - pad (may be < 0).
        w_t = np.ascontiguousarray(
            weight.reshape(groups, K // groups, Cg, kh, kw)
            .transpose(0, 2, 1, 3, 4)[:, :, :, ::-1, ::-1]
        ).reshape(groups * Cg, K // groups, kh, kw)
        forward_nchw(grad_output, w_t, np.zeros(groups * Cg, dtype=w_t.dtype), grad_input,
                     1, 1, (kh - 1) * dilation_h - pad_top, (kw - 1) * dilation_w - pad_left,
                     dilation_h, dilation_w, groups, num_threads)
        return
    _use_threads(num_threads)
    _grad_input_nchw(grad_output, weight, grad_input, stride_h, stride_w, pad_top, pad_left,
                     dilation_h, dilation_w, groups)


# --------------------------------------------------------------------------- NCHW grad_weight

@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _grad_weight_nchw(grad_output, x, grad_weight, sh, sw, pt, pl, dh, dw, G, ncb, zero):
    """grad_weight[k, c, i, j] := sum_{n, oh, ow} grad_output[n, k, oh, ow] * x[n, c, ih, iw]

    Tasks (group, block of 4 output channels, block of input channels); the sum order of every
    entry is (n, oh, ow) whatever the split."""
    N, C, H, W = x.shape
    K, oH, oW = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    Cg, kh, kw = grad_weight.shape[1], grad_weight.shape[2], grad_weight.shape[3]
    Kg = K // G
    nkb = (Kg + 3) // 4
    cbs = (Cg + ncb - 1) // ncb
    for t in prange(G * nkb * ncb):
        g = t // (nkb * ncb)
        kb = (t // ncb) % nkb
        cb = t % ncb
        k0 = g * Kg + kb * 4
        k1 = min(k0 + 4, (g + 1) * Kg)
        c0 = cb * cbs
        c1 = min(c0 + cbs, Cg)
        grad_weight[k0:k1, c0:c1] = 0
        for n in range(N):
            for c in range(c0, c1):
                xc = x[n, g * Cg + c]
                for oh in range(oH):
                    ih0 = oh * sh - pt
                    i_lo, i_hi = _valid_range(kh, H, dh, ih0)
                    for i in range(i_lo, i_hi):
                        xr = xc[ih0 + i * dh]
                        for j in range(kw):
                            off = j * dw - pl
                            lo, hi = _valid_range(oW, W, sw, off)
                            m = hi - lo
                            if m <= 0:
                                continue
                            if sw == 1:
                                xs = xr[lo + off:hi + off]
                                if k1 - k0 == 4:
                                    s0, s1, s2, s3 = _dot4(
                                        grad_output[n, k0, oh, lo:hi], grad_output[n, k0 + 1, oh, lo:hi],
                                        grad_output[n, k0 + 2, oh, lo:hi], grad_output[n, k0 + 3, oh, lo:hi],
                                        xs, m, zero)
                                    grad_weight[k0, c, i, j] += s0
                                    grad_weight[k0 + 1, c, i, j] += s1
                                    grad_weight[k0 + 2, c, i, j] += s2
                                    grad_weight[k0 + 3, c, i, j] += s3
                                else:
                                    for k in range(k0, k1):
                                        grad_weight[k, c, i, j] += _dot1(
                                            grad_output[n, k, oh, lo:hi], xs, m, zero)
                            else:
                                xs2 = xr[lo * sw + off:(hi - 1) * sw + off + 1:sw]
                                for k in range(k0, k1):
                                    grad_weight[k, c, i, j] += _dot1(
                                        grad_output[n, k, oh, lo:hi], xs2, m, zero)


def grad_weight_nchw(grad_output, x, grad_weight, stride_h, stride_w, pad_top, pad_left,
                     dilation_h, dilation_w, groups, num_threads):
    """grad_weight := sum_n correlation of x with grad_output  (NCHW); zeros when N == 0"""
    nt = _use_threads(num_threads)
    K, Cg = grad_weight.shape[0], grad_weight.shape[1]
    N = x.shape[0]
    if Cg == 1 and stride_h == 1 and stride_w == 1 and N > 0:
        # Sample chunks fixed by the shape, their sums added in order afterwards.
        kh, kw = grad_weight.shape[2], grad_weight.shape[3]
        oH, oW = grad_output.shape[2], grad_output.shape[3]
        Hp, Wp = oH + (kh - 1) * dilation_h, oW + (kw - 1) * dilation_w
        nbs = _ceil_div(N, min(N, _ceil_div(64, groups * _ceil_div(K // groups, 4))))
        part = np.empty((_ceil_div(N, nbs), K, kh * kw), dtype=x.dtype)
        _grad_weight_nchw_planes(grad_output, x, part, pad_top, pad_left, groups, Hp, Wp,
                                 _plane_offsets(1, kh, kw, dilation_h, dilation_w, Hp, Wp), nbs,
                                 nt)
        grad_weight.reshape(K, -1)[...] = part.sum(axis=0)
        return
    nkb = _ceil_div(K // groups, 4)
    ncb = 1
    if groups * nkb < 8 * nt:
        ncb = min(Cg, _ceil_div(8 * nt, groups * nkb))
    ncb = _ceil_div(Cg, _ceil_div(Cg, ncb))
    _grad_weight_nchw(grad_output, x, grad_weight, stride_h, stride_w, pad_top, pad_left,
                      dilation_h, dilation_w, groups, ncb, x.dtype.type(0))


# --------------------------------------------------------------------------- NHWC staged rows
#
# First, narrow (groups == 1) and depthwise layers.  An image's input rows are staged zero
# padded to Wp pixels, so every output pixel has every tap: the value of tap q for the
# pixel staged at base[p] is at base[p] + off[q].  The zero padding takes part in the
# products (0 * inf is NaN there, as in Cython's kernels).
#
# The sums of a block of 4 rows (4 pixels x the output channels, or 4 taps x the output
# channels) stay in a stack array: LLVM knows it overlaps no argument, so the loops over
# the channels need no runtime overlap checks, and short rows (32 channels: two vectors)
# do not pay for them on every pass.

_STAGE_ELEMENTS = 65536     # staged rows per forward task: at most this many elements
_STACK_CHANNELS = 256       # channels a stack accumulator row holds
_TILE_ELEMENTS = 65536      # grad_output elements a pixel tile of the NHWC grad_weight
_PREFETCH_PIXELS = 16       # how far ahead the depthwise forward asks for input rows
_ROWS8_CHANNELS = 16        # channels of a block of 8 pixels x 3-wide kernel rows
_LINE_ELEMENTS = 16         # float32 elements a cache line (float64: every other line)


@intrinsic(prefer_literal=True)
def _stack_array(typingctx, rows, cols, dtype):
    """A (rows, cols) C-contiguous scratch array in the calling function's stack frame;
    rows and cols are constants"""
    if not isinstance(rows, types.IntegerLiteral) or not isinstance(cols, types.IntegerLiteral):
        return None
    shape = (rows.literal_value, cols.literal_value)
    array_type = types.Array(dtype.dtype, 2, "C")

    def codegen(context, builder, signature, args):
        element = context.get_data_type(dtype.dtype)
        itemsize = context.get_abi_sizeof(element)
        data = cgutils.alloca_once(builder, element, size=shape[0] * shape[1])
        array = make_array(array_type)(context, builder)
        intp = (lambda v: context.get_constant(types.intp, v))
        populate_array(array, data=data, shape=[intp(shape[0]), intp(shape[1])],
                       strides=[intp(shape[1] * itemsize), intp(itemsize)],
                       itemsize=intp(itemsize), meminfo=None)
        return array._getvalue()
    return array_type(rows, cols, dtype), codegen


def _prefetch_intrinsic(write):
    """An intrinsic asking for the cache line of array[row, col] (a hint: no fault, no
    effect on results), to read or (write = 1) to write"""
    return intrinsic(lambda typingctx, array, row, col: _prefetch_typed(array, row, col, write))


def _prefetch_typed(array, row, col, write):
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        ary = make_array(array_type)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, array_type, ary, args[1:],
                                       wraparound=False)
        i8p = cgutils.voidptr_t
        i32 = lambda v: context.get_constant(types.int32, v)
        fn = cgutils.get_or_insert_function(
            builder.module, llvmlite_ir.FunctionType(llvmlite_ir.VoidType(),
                                                     [i8p] + [llvmlite_ir.IntType(32)] * 3),
            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(write), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.none(array, row, col), codegen


_prefetch = _prefetch_intrinsic(0)
_prefetch_write = _prefetch_intrinsic(1)


def _tap_offsets(kh, kw, unit, dh, dw, Wp):
    """off[(i*kw + j)*unit + c] := (i*dh*Wp + j*dw)*unit + c: the taps in rows of Wp pixels
    of `unit` elements (the flat order of the NHWC weight (kh, kw, unit, K))"""
    i, j, c = np.meshgrid(np.arange(kh), np.arange(kw), np.arange(unit), indexing="ij")
    return ((i * dh * Wp + j * dw) * unit + c).ravel().astype(np.uint64)


def _pixel_bases(rows, oW, sh, sw, Wp, unit):
    """base[oh*oW + ow] := (oh*sh*Wp + ow*sw)*unit: where output pixel (oh, ow) of a block
    starting at staged row 0 finds its first tap"""
    oh, ow = np.meshgrid(np.arange(rows), np.arange(oW), indexing="ij")
    return ((oh * sh * Wp + ow * sw) * unit).ravel().astype(np.uint64)


@_inlined
def _taps4(st, b, off, q):
    """the 4 taps q.. of the pixel staged at b"""
    return (st[b + off[q]], st[b + off[q + 1]], st[b + off[q + 2]], st[b + off[q + 3]])


@_inlined
def _pixels4(st, base, p, o):
    """tap o of the 4 pixels p.. (staged at base[p:p + 4])"""
    return (st[base[p] + o], st[base[p + 1] + o], st[base[p + 2] + o], st[base[p + 3] + o])


@_inlined
def _broadcast_forward4(pixels, px, bias, w, st, base, off, acc):
    """pixels[px[r], :] := bias + sum_q st[base[px[r]] + off[q]] * w[q, :]  for r < 4

    One input value a tap, broadcast over the output channels; each load of w serves the
    4 pixels, 4 taps a pass."""
    K = pixels.shape[1]
    for r in range(4):
        for t in range(K):
            acc[r, t] = bias[t]
    T = off.shape[0]
    q = 0
    while q + 4 <= T:
        _rows_axpy4x4(acc, 0, w, q, _taps4(st, base[px[0]], off, q),
                      _taps4(st, base[px[1]], off, q), _taps4(st, base[px[2]], off, q),
                      _taps4(st, base[px[3]], off, q), K)
        q += 4
    for q in range(q, T):
        for r in range(4):
            _rows_axpy1(acc, r, w, q, st[base[px[r]] + off[q]], K)
    for r in range(4):
        for t in range(K):
            pixels[px[r], t] = acc[r, t]


@_inlined
def _broadcast_block8(pixels, px, bias, w, st, base, off, k0, blk):
    """pixels[px[r], k0 + t] := bias[k0 + t] + sum_q st[base[px[r]] + off[q]] * w[q, k0 + t]
    for r < 8, t < _BLOCK

    8 pixels x _BLOCK output channels of sums in blk (a (8, _BLOCK) stack array, held in
    registers over all the taps): each tap one input value a pixel, broadcast, and each
    load of w serving the 8 pixels."""
    B = np.uint64(_BLOCK)
    ku = np.uint64(k0)
    for r in range(8):
        for t in range(B):
            blk[r, t] = bias[ku + t]
    b0, b1, b2, b3 = base[px[0]], base[px[1]], base[px[2]], base[px[3]]
    b4, b5, b6, b7 = base[px[4]], base[px[5]], base[px[6]], base[px[7]]
    for q in range(off.shape[0]):
        o = off[q]
        x0, x1, x2, x3 = st[b0 + o], st[b1 + o], st[b2 + o], st[b3 + o]
        x4, x5, x6, x7 = st[b4 + o], st[b5 + o], st[b6 + o], st[b7 + o]
        for t in range(B):
            v = w[q, ku + t]
            blk[0, t] += x0 * v
            blk[1, t] += x1 * v
            blk[2, t] += x2 * v
            blk[3, t] += x3 * v
            blk[4, t] += x4 * v
            blk[5, t] += x5 * v
            blk[6, t] += x6 * v
            blk[7, t] += x7 * v
    for r in range(8):
        for t in range(B):
            pixels[px[r], ku + t] = blk[r, t]


@_inlined
def _block8(p, last):
    """the 8 pixels p.., the ones past `last` replaced by it (computed twice, same values)"""
    return (min(p, last), min(p + 1, last), min(p + 2, last), min(p + 3, last),
            min(p + 4, last), min(p + 5, last), min(p + 6, last), min(p + 7, last))


@_inlined
def _broadcast_dots5(part, q0, g, p0, p1, st, base, off, k0, lo, blk):
    """part[q0 + u, k0 + t] += sum_{p0 <= p < p1} st[base[p] + off[q0 + u]] * g[p, k0 + t]
    for u < 5 (taps past the last computed and dropped), lo <= t < _BLOCK

    5 taps x _BLOCK output channels of sums in blk (a (5, _BLOCK) stack array), held in
    registers over the pixels: each load of g serves the 5 taps, each input value (one a
    tap, broadcast) the _BLOCK channels.  lo > 0 skips the lanes a channel block shares
    with the one before."""
    T = off.shape[0]
    B = np.uint64(_BLOCK)
    ku = np.uint64(k0)
    o0, o1, o2 = off[min(q0, T - 1)], off[min(q0 + 1, T - 1)], off[min(q0 + 2, T - 1)]
    o3, o4 = off[min(q0 + 3, T - 1)], off[min(q0 + 4, T - 1)]
    for u in range(5):
        for t in range(B):
            blk[u, t] = 0
    for p in range(p0, p1):
        b = base[p]
        x0, x1, x2, x3, x4 = st[b + o0], st[b + o1], st[b + o2], st[b + o3], st[b + o4]
        for t in range(B):
            v = g[p, ku + t]
            blk[0, t] += x0 * v
            blk[1, t] += x1 * v
            blk[2, t] += x2 * v
            blk[3, t] += x3 * v
            blk[4, t] += x4 * v
    for u in range(min(5, T - q0)):
        for t in range(lo, _BLOCK):
            part[q0 + u, k0 + t] += blk[u, t]


@_inlined
def _broadcast_grad_weight(part, g, st, base, off, acc, blk):
    """part[q, :] += sum_p st[base[p] + off[q]] * g[p, :]  over the pixels p of an image

    At least _BLOCK output channels: blocks of 5 taps x _BLOCK channels (_broadcast_dots5),
    the last channel block overlapping the one before, over tiles of pixels whose rows of g
    (_TILE_ELEMENTS) stay in cache over all the blocks.  Otherwise 4 taps at a time, summed
    in acc over the image, each load of g serving the 4 taps, 4 pixels a pass (the pixels
    left over one by one)."""
    T, K = part.shape
    P = g.shape[0]
    if K >= _BLOCK:
        tile = max(1, _TILE_ELEMENTS // K)
        for p0 in range(0, P, tile):
            for q0 in range(0, T, 5):
                for k0 in range(0, K, _BLOCK):
                    kb = min(k0, K - _BLOCK)
                    _broadcast_dots5(part, q0, g, p0, min(P, p0 + tile), st, base, off, kb,
                                     k0 - kb, blk)
        return
    for q0 in range(0, T, 4):
        nq = min(4, T - q0)
        for r in range(4):
            for t in range(K):
                acc[r, t] = 0
        p = 0
        if nq == 4:
            while p + 4 <= P:
                _rows_axpy4x4(acc, 0, g, p, _pixels4(st, base, p, off[q0]),
                              _pixels4(st, base, p, off[q0 + 1]),
                              _pixels4(st, base, p, off[q0 + 2]),
                              _pixels4(st, base, p, off[q0 + 3]), K)
                p += 4
        for r in range(nq):
            for pp in range(p, P):
                _rows_axpy1(acc, r, g, pp, st[base[pp] + off[q0 + r]], K)
            for t in range(K):
                part[q0 + r, t] += acc[r, t]


@_inlined
def _tap_rows4(b, off, q):
    """the staged rows of the 4 taps q.. of the pixel staged at row b"""
    return (b + off[q], b + off[q + 1], b + off[q + 2], b + off[q + 3])


@_inlined
def _depthwise_forward4(pixels, px, bias, w, x, xb, off, acc):
    """pixels[px[r], :] := bias + sum_q x[xb[r] + off[q], :] * w[q, :]  for r < 4 (xb: the
    pixels' rows in x, off: the taps' row offsets, all taps valid)

    Channels in blocks of the stack accumulator's width, each weight load shared by the
    4 pixels, 4 taps a pass."""
    C = pixels.shape[1]
    T = off.shape[0]
    b0, b1, b2, b3 = xb
    for c0 in range(0, C, _STACK_CHANNELS):
        m = min(_STACK_CHANNELS, C - c0)
        cu = np.uint64(c0)
        for t in range(np.uint64(m)):   # 4 rows a loop: not a memcpy call each
            acc[0, t] = acc[1, t] = acc[2, t] = acc[3, t] = bias[cu + t]
        q = 0
        while q + 4 <= T:
            _rows_mul4x4(acc, x, _tap_rows4(b0, off, q), _tap_rows4(b1, off, q),
                         _tap_rows4(b2, off, q), _tap_rows4(b3, off, q), w, q, cu, m)
            q += 4
        for q in range(q, T):
            for r in range(4):
                row = xb[r] + off[q]
                for t in range(np.uint64(m)):
                    acc[r, t] += x[row, cu + t] * w[q, cu + t]
        for r in range(4):
            for t in range(np.uint64(m)):
                pixels[px[r], cu + t] = acc[r, t]


@_inlined
def _prefetch_pixels8(dst, p, x, row, sw, c0):
    """Ask for channels [c0, c0 + _BLOCK) of the 8 output pixels dst[p:p + 8] (to write)
    and of the input rows row + r*sw (r < 8) that the last tap of a pixel block ahead reads
    first: a channel block at a time, so that the requests do not queue up"""
    for r in range(8):
        for c in range(c0, c0 + _BLOCK, _LINE_ELEMENTS):
            if p + r < dst.shape[0]:
                _prefetch_write(dst, p + r, c)
            if row + r * sw < x.shape[0]:
                _prefetch(x, row + r * sw, c)


@_inlined
def _depthwise_block8(pixels, px, bias, w, x, row0, sw, off, c0, blk):
    """pixels[px[r], c0 + t] := bias[c0 + t] + sum_q x[row0 + px[r]*sw + off[q], c0 + t] * w[q, c0 + t]
    for r < 8, t < _BLOCK (off: the taps' row offsets, all taps valid)

    8 pixels x _BLOCK channels of sums in blk (a (8, _BLOCK) stack array), held in
    registers over all the taps, each weight load serving the 8 pixels."""
    B = np.uint64(_BLOCK)
    cu = np.uint64(c0)
    for r in range(8):
        for t in range(B):
            blk[r, t] = bias[cu + t]
    b0, b1, b2, b3 = row0 + px[0] * sw, row0 + px[1] * sw, row0 + px[2] * sw, row0 + px[3] * sw
    b4, b5, b6, b7 = row0 + px[4] * sw, row0 + px[5] * sw, row0 + px[6] * sw, row0 + px[7] * sw
    for q in range(off.shape[0]):
        o = off[q]
        r0, r1, r2, r3 = np.uint64(b0) + o, np.uint64(b1) + o, np.uint64(b2) + o, np.uint64(b3) + o
        r4, r5, r6, r7 = np.uint64(b4) + o, np.uint64(b5) + o, np.uint64(b6) + o, np.uint64(b7) + o
        for t in range(B):
            c = cu + t
            v = w[q, c]
            blk[0, t] += x[r0, c] * v
            blk[1, t] += x[r1, c] * v
            blk[2, t] += x[r2, c] * v
            blk[3, t] += x[r3, c] * v
            blk[4, t] += x[r4, c] * v
            blk[5, t] += x[r5, c] * v
            blk[6, t] += x[r6, c] * v
            blk[7, t] += x[r7, c] * v
    for r in range(8):
        for t in range(B):
            pixels[px[r], cu + t] = blk[r, t]


@_inlined
def _depthwise_pixel(pixels, p, bias, w, x, rows, qs, nt, c0, blk):
    """pixels[p, c0 + t] := bias[c0 + t] + sum_{u < nt} x[rows[u], c0 + t] * w[qs[u], c0 + t]
    for t < _BLOCK: one pixel's valid taps (an edge column), its sums in blk's first row"""
    B = np.uint64(_BLOCK)
    cu = np.uint64(c0)
    for t in range(B):
        blk[0, t] = bias[cu + t]
    for u in range(nt):
        r = rows[u]
        q = qs[u]
        for t in range(B):
            blk[0, t] += x[r, cu + t] * w[q, cu + t]
    for t in range(B):
        pixels[p, cu + t] = blk[0, t]


@_inlined
def _row3_mul4(acc, x, r0, w, q, c0, m):
    """acc[r, t] += sum_{j < 3} x[r0 + r + j, c0 + t] * w[q + j, c0 + t]  for r < 4: a 3-wide
    kernel row over 4 consecutive pixels (stride 1), each of the 6 input rows loaded once
    for all the products it takes part in"""
    one = np.uint64(1)
    rows = (r0, r0 + one, r0 + 2 * one, r0 + 3 * one, r0 + 4 * one, r0 + 5 * one)
    for t in range(np.uint64(m)):
        c = c0 + t
        x0, x1, x2 = x[rows[0], c], x[rows[1], c], x[rows[2], c]
        x3, x4, x5 = x[rows[3], c], x[rows[4], c], x[rows[5], c]
        w0, w1, w2 = w[q, c], w[q + 1, c], w[q + 2, c]
        acc[0, t] = acc[0, t] + x0 * w0 + x1 * w1 + x2 * w2
        acc[1, t] = acc[1, t] + x1 * w0 + x2 * w1 + x3 * w2
        acc[2, t] = acc[2, t] + x2 * w0 + x3 * w1 + x4 * w2
        acc[3, t] = acc[3, t] + x3 * w0 + x4 * w1 + x5 * w2


@_inlined
def _row3_mul8_s1(blk, x, r0, w, q, c0):
    """blk[r, t] += sum_{j < 3} x[r0 + r + j, c0 + t] * w[q + j, c0 + t]  for r < 8,
    t < _ROWS8_CHANNELS: a 3-wide kernel row over 8 consecutive pixels at stride 1, each of the 10
    input rows loaded once for the (up to 3) products it takes part in"""
    one = np.uint64(1)
    for t in range(np.uint64(_ROWS8_CHANNELS)):
        c = c0 + t
        x0, x1, x2, x3, x4 = (x[r0, c], x[r0 + one, c], x[r0 + 2 * one, c], x[r0 + 3 * one, c],
                              x[r0 + 4 * one, c])
        x5, x6, x7, x8, x9 = (x[r0 + 5 * one, c], x[r0 + 6 * one, c], x[r0 + 7 * one, c],
                              x[r0 + 8 * one, c], x[r0 + 9 * one, c])
        w0, w1, w2 = w[q, c], w[q + 1, c], w[q + 2, c]
        blk[0, t] = blk[0, t] + x0 * w0 + x1 * w1 + x2 * w2
        blk[1, t] = blk[1, t] + x1 * w0 + x2 * w1 + x3 * w2
        blk[2, t] = blk[2, t] + x2 * w0 + x3 * w1 + x4 * w2
        blk[3, t] = blk[3, t] + x3 * w0 + x4 * w1 + x5 * w2
        blk[4, t] = blk[4, t] + x4 * w0 + x5 * w1 + x6 * w2
        blk[5, t] = blk[5, t] + x5 * w0 + x6 * w1 + x7 * w2
        blk[6, t] = blk[6, t] + x6 * w0 + x7 * w1 + x8 * w2
        blk[7, t] = blk[7, t] + x7 * w0 + x8 * w1 + x9 * w2


@_inlined
def _row3_mul8_s2(blk, x, r0, w, q, c0):
    """the same at stride 2: pixel r reads input rows r0 + 2r + j, 17 rows in all, the even
    ones shared by neighbouring pixels"""
    one = np.uint64(1)
    for t in range(np.uint64(_ROWS8_CHANNELS)):
        c = c0 + t
        e0, e1, e2, e3, e4 = (x[r0, c], x[r0 + 2 * one, c], x[r0 + 4 * one, c],
                              x[r0 + 6 * one, c], x[r0 + 8 * one, c])
        e5, e6, e7, e8 = (x[r0 + 10 * one, c], x[r0 + 12 * one, c], x[r0 + 14 * one, c],
                          x[r0 + 16 * one, c])
        w0, w1, w2 = w[q, c], w[q + 1, c], w[q + 2, c]
        blk[0, t] = blk[0, t] + e0 * w0 + x[r0 + one, c] * w1 + e1 * w2
        blk[1, t] = blk[1, t] + e1 * w0 + x[r0 + 3 * one, c] * w1 + e2 * w2
        blk[2, t] = blk[2, t] + e2 * w0 + x[r0 + 5 * one, c] * w1 + e3 * w2
        blk[3, t] = blk[3, t] + e3 * w0 + x[r0 + 7 * one, c] * w1 + e4 * w2
        blk[4, t] = blk[4, t] + e4 * w0 + x[r0 + 9 * one, c] * w1 + e5 * w2
        blk[5, t] = blk[5, t] + e5 * w0 + x[r0 + 11 * one, c] * w1 + e6 * w2
        blk[6, t] = blk[6, t] + e6 * w0 + x[r0 + 13 * one, c] * w1 + e7 * w2
        blk[7, t] = blk[7, t] + e7 * w0 + x[r0 + 15 * one, c] * w1 + e8 * w2


@_inlined
def _depthwise_rows8(pixels, p0, bias, w, x, b, off, sw, c0, blk):
    """pixels[p0 + r, c0 + t] := bias[c0 + t] + sum_q x[b + r*sw + off[q], c0 + t] * w[q, c0 + t]
    for r < 8, t < _ROWS8_CHANNELS: 8 consecutive pixels of 3-wide kernel rows at dilation 1 (the
    taps in threes, a kernel row each), stride 1 or 2, a kernel row a pass"""
    B = np.uint64(_ROWS8_CHANNELS)
    cu = np.uint64(c0)
    for r in range(8):
        for t in range(B):
            blk[r, t] = bias[cu + t]
    for q in range(0, off.shape[0], 3):
        if sw == 1:
            _row3_mul8_s1(blk, x, np.uint64(b) + off[q], w, q, cu)
        else:
            _row3_mul8_s2(blk, x, np.uint64(b) + off[q], w, q, cu)
    for r in range(8):
        for t in range(B):
            pixels[p0 + r, cu + t] = blk[r, t]


@_inlined
def _depthwise_forward4_3wide(pixels, p0, bias, w, x, b, off, acc):
    """pixels[p0 + r, :] := bias + sum_q x[b + r + off[q], :] * w[q, :]  for r < 4: the
    4 consecutive pixels of a stride-1 layer with 3-wide kernel rows, a kernel row a pass"""
    C = pixels.shape[1]
    ahead = b + off[off.shape[0] - 1] + np.uint64(_PREFETCH_PIXELS)
    for r in range(4):   # the rows only the last kernel row reads, and the output rows,
        for c in range(0, C, _LINE_ELEMENTS):   # some pixels ahead
            if ahead + np.uint64(r) < np.uint64(x.shape[0]):
                _prefetch(x, ahead + np.uint64(r), c)
            if p0 + _PREFETCH_PIXELS + r < pixels.shape[0]:
                _prefetch(pixels, p0 + _PREFETCH_PIXELS + r, c)
    for c0 in range(0, C, _STACK_CHANNELS):
        m = min(_STACK_CHANNELS, C - c0)
        cu = np.uint64(c0)
        for t in range(np.uint64(m)):   # 4 rows a loop: not a memcpy call each
            acc[0, t] = acc[1, t] = acc[2, t] = acc[3, t] = bias[cu + t]
        for q in range(0, off.shape[0], 3):
            _row3_mul4(acc, x, b + off[q], w, q, cu, m)
        for r in range(4):
            for t in range(np.uint64(m)):
                pixels[p0 + r, cu + t] = acc[r, t]


@_inlined
def _depthwise_grad_weight(sums, g, st, base, off, acc):
    """sums[q, :] += sum_p st[base[p] + off[q], :] * g[p, :]  over the pixels p of an image

    Blocks of 4 taps (the last one's missing taps repeat its last, computed and dropped)
    summed in acc over 4 pixels a pass, each load of g shared by the 4 taps."""
    T, C = sums.shape
    P = g.shape[0]
    for c0 in range(0, C, _STACK_CHANNELS):
        m = min(_STACK_CHANNELS, C - c0)
        cu = np.uint64(c0)
        for q0 in range(0, T, 4):
            q = (off[min(q0, T - 1)], off[min(q0 + 1, T - 1)], off[min(q0 + 2, T - 1)],
                 off[min(q0 + 3, T - 1)])
            acc[:, :] = 0
            p = 0
            while p + 4 <= P:
                _rows_mul4x4(acc, st, _pixel_rows4(base, p, q[0]), _pixel_rows4(base, p, q[1]),
                             _pixel_rows4(base, p, q[2]), _pixel_rows4(base, p, q[3]), g, p, cu, m)
                p += 4
            for r in range(min(4, T - q0)):
                for pp in range(p, P):
                    row = base[pp] + q[r]
                    for t in range(np.uint64(m)):
                        acc[r, t] += st[row, cu + t] * g[pp, cu + t]
                for t in range(np.uint64(m)):
                    sums[q0 + r, cu + t] += acc[r, t]


@_inlined
def _pixel_rows4(base, p, o):
    """the staged rows of tap o of the 4 pixels p.."""
    return (base[p] + o, base[p + 1] + o, base[p + 2] + o, base[p + 3] + o)


@_inlined
def _block4(p, last):
    """the 4 pixels p.., the ones past `last` replaced by it (computed twice, same values)"""
    return (min(p, last), min(p + 1, last), min(p + 2, last), min(p + 3, last))


@njit(parallel=True, cache=True, fastmath=_TREE_FASTMATH)
def _forward_nhwc_staged(x, weight, bias, out, sh, pt, pl, R, Hs, Wp, off, base, workers):
    """out[.., k] := bias[k] + sum_q tap_q * w[q, k] for groups == 1; tasks (n, block of R
    output rows), the block's Hs input rows staged once, dealt round-robin to `workers`
    (one a thread: the scratch is allocated once a worker, not a task)"""
    N, H, W, C = x.shape
    oH, oW, K = out.shape[1], out.shape[2], out.shape[3]
    w = weight.reshape(off.shape[0], K)
    images = x.reshape(N, H * W * C)
    nrb = (oH + R - 1) // R
    for worker in prange(workers):
        stage = np.empty(Hs * Wp * C, dtype=x.dtype)
        acc = _stack_array(4, _STACK_CHANNELS, x.dtype)
        blk = _stack_array(8, _BLOCK, x.dtype)
        for task in range(worker, N * nrb, workers):
            n = task // nrb
            oh0 = (task - n * nrb) * R
            npix = min(R, oH - oh0) * oW
            _stage_plane(stage, 0, images, n, H, W * C, pt - oh0 * sh, pl * C, Hs, Wp * C)
            pixels = out[n].reshape(oH * oW, K)[oh0 * oW:]
            if K >= _BLOCK:   # the last channel block overlaps the one before
                for p in range(0, npix, 8):
                    for k0 in range(0, K, _BLOCK):
                        _broadcast_block8(pixels, _block8(p, npix - 1), bias, w, stage, base,
                                          off, min(k0, K - _BLOCK), blk)
                continue
            for p in range(0, npix, 4):
                _broadcast_forward4(pixels, _block4(p, npix - 1), bias, w, stage, base, off,
                                    acc)


def _forward_nhwc_staged_call(x, weight, bias, out, sh, sw, pt, pl, dh, dw, nt):
    """Blocks of output rows: whole images unless too few for the threads or the staged
    rows would exceed _STAGE_ELEMENTS."""
    N, oH, oW = out.shape[0], out.shape[1], out.shape[2]
    kh, kw, C = weight.shape[0], weight.shape[1], x.shape[3]
    Wp = (oW - 1) * sw + (kw - 1) * dw + 1
    R = _ceil_div(oH, min(oH, _ceil_div(4 * nt, N)))
    R = max(1, min(R, (_STAGE_ELEMENTS // (Wp * C) - (kh - 1) * dh - 1) // sh + 1))
    Hs = (R - 1) * sh + (kh - 1) * dh + 1
    _forward_nhwc_staged(x, weight, bias, out, sh, pt, pl, R, Hs, Wp,
                         _tap_offsets(kh, kw, C, dh, dw, Wp),
                         _pixel_bases(R, oW, sh, sw, Wp, C), nt)


@njit(parallel=True, cache=True, fastmath=_TREE_FASTMATH)
def _forward_nhwc_depthwise(x, weight, bias, out, sh, sw, pt, pl, dh, dw, workers):
    """out[n, oh, ow, c] := bias[c] + sum_{i, j} x[n, ih, iw, c] * w[i, j, 0, c]  (depthwise)

    The input read in place, tasks (n, oh) in a contiguous range a worker (of `workers`),
    so that the input rows an output row shares with the one before are in the worker's own
    cache.  In the columns where every kernel column is valid, blocks of 8 pixels x 32
    channels (fewer channels: 4 pixels) share each weight load, and with 3-wide kernel rows
    at stride 1 or 2 each input load too (_depthwise_rows8, 16 channels a block, as
    Cython's _dw_rows: mobilenet_dw 1.15x); the edge columns sum their valid taps only."""
    N, H, W, C = x.shape
    oH, oW = out.shape[1], out.shape[2]
    kh, kw = weight.shape[0], weight.shape[1]
    w = weight.reshape(kh * kw, C)
    pixels = x.reshape(N * H * W, C)
    lo, hi = 0, oW   # output columns where all kernel columns are valid
    for j in range(kw):
        a, b = _valid_range(oW, W, sw, j * dw - pl)
        lo, hi = max(lo, a), min(hi, b)
    hi = max(hi, lo)
    sliding = kw == 3 and sw == 1 and dw == 1 and hi - lo >= 4
    rows8 = kw == 3 and sw <= 2 and dw == 1 and hi - lo >= 8 and C >= _ROWS8_CHANNELS
    off = np.empty(kh * kw, dtype=np.uint64)   # row offset of tap (i, j) from (i = 0, j = 0)
    for q in range(kh * kw):
        off[q] = np.uint64((q // kw) * dh * W + (q % kw) * dw)
    for worker in prange(workers):
        acc = _stack_array(4, _STACK_CHANNELS, x.dtype)
        blk = _stack_array(8, _BLOCK, x.dtype)
        rows = np.empty(kh * kw, dtype=np.uint64)
        qs = np.empty(kh * kw, dtype=np.int64)
        for task in range(worker * N * oH // workers, (worker + 1) * N * oH // workers):
            n = task // oH
            oh = task - n * oH
            ih0 = oh * sh - pt
            i_lo, i_hi = _valid_range(kh, H, dh, ih0)
            dst = out[n, oh]
            row0 = (n * H + ih0) * W - pl   # pixel row of tap (0, 0) for ow = 0
            taps = off[i_lo * kw:i_hi * kw]
            wi = w[i_lo * kw:i_hi * kw]
            last = np.int64(taps[taps.shape[0] - 1]) if i_hi > i_lo else 0
            for ow in range(lo, hi if rows8 else lo, 8):
                p0 = min(ow, hi - 8)   # the last block overlaps the one before
                for c0 in range(0, C, _ROWS8_CHANNELS):
                    cb = min(c0, C - _ROWS8_CHANNELS)
                    if c0 % _BLOCK == 0:   # it asks for _BLOCK channels
                        _prefetch_pixels8(dst, p0 + _PREFETCH_PIXELS, pixels,
                                          row0 + (p0 + _PREFETCH_PIXELS) * sw + last, sw, cb)
                    _depthwise_rows8(dst, p0, bias, wi, pixels, row0 + p0 * sw, taps, sw, cb,
                                     blk)
            for ow in range(lo, hi, 8):
                if C < _BLOCK or rows8:
                    break
                # blocks of 8 pixels and of _BLOCK channels, the last ones overlapping the
                # ones before (fewer than 8 interior pixels: the last one repeated)
                px = _block8(min(ow, max(lo, hi - 8)), hi - 1)
                for c0 in range(0, C, _BLOCK):
                    cb = min(c0, C - _BLOCK)
                    _prefetch_pixels8(dst, px[0] + _PREFETCH_PIXELS, pixels,
                                      row0 + (px[0] + _PREFETCH_PIXELS) * sw + last, sw, cb)
                    _depthwise_block8(dst, px, bias, wi, pixels, row0, sw, taps, cb, blk)
            for ow in range(lo, hi if C < _BLOCK else lo, 4):
                if sliding:   # the last block of 4 overlaps the one before
                    p0 = min(ow, hi - 4)
                    _depthwise_forward4_3wide(dst, p0, bias, wi, pixels, np.uint64(row0 + p0),
                                              taps, acc)
                    continue
                px = _block4(ow, hi - 1)
                xb = (np.uint64(row0 + px[0] * sw), np.uint64(row0 + px[1] * sw),
                      np.uint64(row0 + px[2] * sw), np.uint64(row0 + px[3] * sw))
                _depthwise_forward4(dst, px, bias, wi, pixels, xb, taps, acc)
            for ow in range(oW):
                if lo <= ow < hi:
                    continue
                nt = 0   # the edge pixel's valid taps: input rows and weight rows
                for i in range(i_lo, i_hi):
                    for j in range(kw):
                        iw = ow * sw - pl + j * dw
                        if 0 <= iw < W:
                            rows[nt] = (n * H + ih0 + i * dh) * W + iw
                            qs[nt] = i * kw + j
                            nt += 1
                for c0 in range(0, C if C >= _BLOCK else 0, _BLOCK):
                    _depthwise_pixel(dst, ow, bias, w, pixels, rows, qs, nt,
                                     min(c0, C - _BLOCK), blk)
                if C < _BLOCK:
                    for c in range(C):
                        dst[ow, c] = bias[c]
                    for q in range(nt):
                        for c in range(C):
                            dst[ow, c] += pixels[rows[q], c] * w[qs[q], c]


@njit(parallel=True, cache=True, fastmath=_TREE_FASTMATH)
def _grad_weight_nhwc_staged(grad_output, x, part, sh, pt, pl, Hs, Wp, off, base, nbs,
                             depthwise):
    """part[chunk] := sum over the chunk's samples of grad_weight (taps x output channels),
    for groups == 1 or depthwise; tasks are the chunks of nbs samples, each image staged
    whole once

    groups == 1: part[.., q, k] = sum_p tap_q(p) * g[p, k];
    depthwise: part[.., q, c] = sum_p x_q(p)[c] * g[p, c]."""
    N, H, W, C = x.shape
    oH, oW, K = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    images = x.reshape(N, H * W * C)
    for chunk in prange(part.shape[0]):
        sums = part[chunk]
        sums[:] = 0
        stage = np.empty(Hs * Wp * C, dtype=x.dtype)
        acc = _stack_array(4, _STACK_CHANNELS, x.dtype)
        blk = _stack_array(5, _BLOCK, x.dtype)
        staged = stage.reshape(Hs * Wp, C)   # depthwise: rows of channels
        for n in range(chunk * nbs, min(N, (chunk + 1) * nbs)):
            _stage_plane(stage, 0, images, n, H, W * C, pt, pl * C, Hs, Wp * C)
            g = grad_output[n].reshape(oH * oW, K)
            if depthwise:
                _depthwise_grad_weight(sums, g, staged, base, off, acc)
            else:
                _broadcast_grad_weight(sums, g, stage, base, off, acc, blk)


@_inlined
def _dw_row_dots3(sums, q0, kw, j0, g, gr, oW, x, xr, W, sw, pl, dw, blk):
    """sums[q0 + j, c] += sum_ow x[xr + ow*sw - pl + j*dw, c] * g[gr + ow, c]  over the valid
    ow, for the taps j0 <= j < j0 + 3 of a kernel row (depthwise, one input row against one
    grad_output row, read in place)

    Over the columns valid for all 3 taps, channels in blocks of _BLOCK whose 3 x _BLOCK
    sums stay in registers along the row (blk; a tap past the row's last is computed and
    dropped, the last block overlaps the one before and adds only its own lanes); the
    edge columns tap by tap."""
    C = x.shape[1]
    B = np.uint64(_BLOCK)
    nj = min(3, kw - j0)
    j1, j2 = min(j0 + 1, kw - 1), min(j0 + 2, kw - 1)
    lo, hi = 0, oW   # columns where the 3 taps are valid
    for j in (j0, j1, j2):
        a, b = _valid_range(oW, W, sw, j * dw - pl)
        lo, hi = max(lo, a), min(hi, b)
    for c0 in range(0, C if hi > lo else 0, _BLOCK):
        cb = min(c0, C - _BLOCK)
        cu = np.uint64(cb)
        for u in range(3):
            for t in range(B):
                blk[u, t] = 0
        for ow in range(lo, hi):
            xi = xr + ow * sw - pl
            a0, a1, a2 = np.uint64(xi + j0 * dw), np.uint64(xi + j1 * dw), np.uint64(xi + j2 * dw)
            gi = np.uint64(gr + ow)
            for t in range(B):
                v = g[gi, cu + t]
                blk[0, t] += x[a0, cu + t] * v
                blk[1, t] += x[a1, cu + t] * v
                blk[2, t] += x[a2, cu + t] * v
        for u in range(nj):
            for t in range(c0 - cb, _BLOCK):
                sums[q0 + j0 + u, cb + t] += blk[u, t]
    for j in range(j0, j0 + nj):
        a, b = _valid_range(oW, W, sw, j * dw - pl)
        for ow in range(a, b):
            if lo <= ow < hi:
                continue
            xi = xr + ow * sw - pl + j * dw
            for c in range(C):
                sums[q0 + j, c] += x[xi, c] * g[gr + ow, c]


@njit(parallel=True, cache=True, fastmath=_TREE_FASTMATH)
def _grad_weight_nhwc_depthwise(grad_output, x, part, kh, kw, sh, sw, pt, pl, dh, dw, nbs):
    """part[chunk, i*kw + j, c] := sum over the chunk's samples n and the pixels (oh, ow) of
    x[n, ih, iw, c] * grad_output[n, oh, ow, c]  (depthwise, C >= _BLOCK); tasks are the
    chunks of nbs samples, the input read in place a row at a time"""
    N, H, W, C = x.shape
    oH, oW = grad_output.shape[1], grad_output.shape[2]
    pixels = x.reshape(N * H * W, C)
    grads = grad_output.reshape(N * oH * oW, C)
    for chunk in prange(part.shape[0]):
        sums = part[chunk]
        sums[:] = 0
        blk = _stack_array(3, _BLOCK, x.dtype)
        for n in range(chunk * nbs, min(N, (chunk + 1) * nbs)):
            for oh in range(oH):
                ih0 = oh * sh - pt
                i_lo, i_hi = _valid_range(kh, H, dh, ih0)
                for i in range(i_lo, i_hi):
                    for j0 in range(0, kw, 3):
                        _dw_row_dots3(sums, i * kw, kw, j0, grads, (n * oH + oh) * oW, oW,
                                      pixels, (n * H + ih0 + i * dh) * W, W, sw, pl, dw, blk)


def _grad_weight_nhwc_staged_call(grad_output, x, grad_weight, sh, sw, pt, pl, dh, dw,
                                  depthwise):
    """Sample chunks fixed by the shape (as Cython's), their sums added in order afterwards:
    bitwise the same for any number of threads."""
    N, oH, oW = grad_output.shape[0], grad_output.shape[1], grad_output.shape[2]
    kh, kw, C = grad_weight.shape[0], grad_weight.shape[1], x.shape[3]
    nbs = _ceil_div(N, min(N, 16))
    Wp = (oW - 1) * sw + (kw - 1) * dw + 1
    Hs = (oH - 1) * sh + (kh - 1) * dh + 1
    unit = 1 if depthwise else C
    T = kh * kw * unit
    part = np.empty((_ceil_div(N, nbs), T, grad_weight.shape[3]), dtype=x.dtype)
    if depthwise and C >= _BLOCK:
        _grad_weight_nhwc_depthwise(grad_output, x, part, kh, kw, sh, sw, pt, pl, dh, dw, nbs)
        grad_weight.reshape(T, -1)[...] = part.sum(axis=0)
        return
    _grad_weight_nhwc_staged(grad_output, x, part, sh, pt, pl, Hs, Wp,
                             _tap_offsets(kh, kw, unit, dh, dw, Wp),
                             _pixel_bases(oH, oW, sh, sw, Wp, unit), nbs, depthwise)
    grad_weight.reshape(T, -1)[...] = part.sum(axis=0)


# --------------------------------------------------------------------------- NHWC forward

@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _forward_nhwc(x, weight, bias, out, sh, sw, pt, pl, dh, dw, G):
    """out[n, oh, ow, :] := bias + sum_{i, j, c} x[n, ih, iw, c] * w[i, j, c, :]"""
    N, H, W, C = x.shape
    oH, oW, K = out.shape[1], out.shape[2], out.shape[3]
    kh, kw, Cg = weight.shape[0], weight.shape[1], weight.shape[2]
    Kg = K // G
    for t in prange(N * oH):
        n = t // oH
        oh = t - n * oH
        ih0 = oh * sh - pt
        i_lo, i_hi = _valid_range(kh, H, dh, ih0)
        for ow in range(oW):
            dst = out[n, oh, ow]
            dst[:] = bias
            for i in range(i_lo, i_hi):
                xrow = x[n, ih0 + i * dh]
                for j in range(kw):
                    iw = ow * sw - pl + j * dw
                    if iw < 0 or iw >= W:
                        continue
                    xp = xrow[iw]
                    wij = weight[i, j]
                    for g in range(G):
                        d = dst[g * Kg:(g + 1) * Kg]
                        cc = 0
                        while cc + 4 <= Cg:
                            _axpy4(d, wij[cc, g * Kg:(g + 1) * Kg], wij[cc + 1, g * Kg:(g + 1) * Kg],
                                   wij[cc + 2, g * Kg:(g + 1) * Kg], wij[cc + 3, g * Kg:(g + 1) * Kg],
                                   xp[g * Cg + cc], xp[g * Cg + cc + 1], xp[g * Cg + cc + 2],
                                   xp[g * Cg + cc + 3], Kg)
                            cc += 4
                        while cc < Cg:
                            _axpy1(d, wij[cc, g * Kg:(g + 1) * Kg], xp[g * Cg + cc], Kg)
                            cc += 1


def forward_nhwc(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left,
                 dilation_h, dilation_w, groups, num_threads):
    """out := conv2d(x, weight) + bias  (NHWC)"""
    if out.shape[0] == 0:
        return
    nt = _use_threads(num_threads)
    Cg, K = weight.shape[2], weight.shape[3]
    if Cg == 1 and K == groups:
        _forward_nhwc_depthwise(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left,
                                dilation_h, dilation_w, nt)
        return
    if groups == 1 and K <= _STACK_CHANNELS:
        _forward_nhwc_staged_call(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left,
                                  dilation_h, dilation_w, nt)
        return
    _forward_nhwc(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left,
                  dilation_h, dilation_w, groups)


# --------------------------------------------------------------------------- NHWC grad_input

@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _grad_input_nhwc(grad_output, weight, grad_input, sh, sw, pt, pl, dh, dw, G, zero):
    """grad_input[n, ih, iw, c] := sum_{i, j, k} grad_output[n, oh, ow, k] * w[i, j, c, k]"""
    N, H, W, C = grad_input.shape
    oH, oW, K = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    kh, kw, Cg = weight.shape[0], weight.shape[1], weight.shape[2]
    Kg = K // G
    depthwise = Cg == 1 and Kg == 1
    for t in prange(N * H):
        n = t // H
        ih = t - n * H
        for iw in range(W):
            dst = grad_input[n, ih, iw]
            dst[:] = 0
            for i in range(kh):
                num = ih + pt - i * dh
                if num < 0:
                    break
                if num % sh != 0:
                    continue
                oh = num // sh
                if oh >= oH:
                    continue
                for j in range(kw):
                    num = iw + pl - j * dw
                    if num < 0:
                        break
                    if num % sw != 0:
                        continue
                    ow = num // sw
                    if ow >= oW:
                        continue
                    gp = grad_output[n, oh, ow]
                    wij = weight[i, j]
                    if depthwise:
                        _mul1(dst, gp, wij[0], C)
                        continue
                    for g in range(G):
                        gg = gp[g * Kg:(g + 1) * Kg]
                        cc = 0
                        while cc + 4 <= Cg:
                            s0, s1, s2, s3 = _dot4(
                                wij[cc, g * Kg:(g + 1) * Kg], wij[cc + 1, g * Kg:(g + 1) * Kg],
                                wij[cc + 2, g * Kg:(g + 1) * Kg], wij[cc + 3, g * Kg:(g + 1) * Kg],
                                gg, Kg, zero)
                            dst[g * Cg + cc] += s0
                            dst[g * Cg + cc + 1] += s1
                            dst[g * Cg + cc + 2] += s2
                            dst[g * Cg + cc + 3] += s3
                            cc += 4
                        while cc < Cg:
                            dst[g * Cg + cc] += _dot1(wij[cc, g * Kg:(g + 1) * Kg], gg, Kg, zero)
                            cc += 1


def grad_input_nhwc(grad_output, weight, grad_input, stride_h, stride_w, pad_top, pad_left,
                    dilation_h, dilation_w, groups, num_threads):
    """grad_input := conv2d_input adjoint of grad_output  (NHWC)"""
    if grad_input.shape[0] == 0:
        return
    kh, kw, Cg, K = weight.shape
    if stride_h == 1 and stride_w == 1 and Cg == 1 and K == groups:
        # Depthwise, stride 1: the adjoint is the forward correlation with the flipped kernel
        # and padding (k-1)*d - pad (as in grad_input_nchw).
        forward_nhwc(grad_output, np.ascontiguousarray(weight[::-1, ::-1]),
                     np.zeros(K, dtype=weight.dtype), grad_input, 1, 1,
                     (kh - 1) * dilation_h - pad_top, (kw - 1) * dilation_w - pad_left,
                     dilation_h, dilation_w, groups, num_threads)
        return
    if (kh == kw == 1 and stride_h == stride_w == 1 and groups == 1
            and grad_input.shape[1:3] == grad_output.shape[1:3]):
        # 1x1: the forward with the weights transposed, (1, 1, K, C), as Cython's direct
        forward_nhwc(grad_output, np.ascontiguousarray(weight.transpose(0, 1, 3, 2)),
                     np.zeros(Cg, dtype=weight.dtype), grad_input, 1, 1, 0, 0, 1, 1, 1, num_threads)
        return
    _use_threads(num_threads)
    _grad_input_nhwc(grad_output, weight, grad_input, stride_h, stride_w, pad_top, pad_left,
                     dilation_h, dilation_w, groups, grad_input.dtype.type(0))


# --------------------------------------------------------------------------- NHWC grad_weight

@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _grad_weight_nhwc(grad_output, x, grad_weight, sh, sw, pt, pl, dh, dw, G, ncb, ngb):
    """grad_weight[i, j, c, k] := sum_{n, oh, ow} x[n, ih, iw, g*Cg + c] * grad_output[n, oh, ow, k]

    Tasks (i, j, block of input channels, block of groups); per entry the sum order is
    (n, oh, ow) in fixed groups of four pixels whatever the split."""
    N, H, W, C = x.shape
    oH, oW, K = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    kh, kw, Cg = grad_weight.shape[0], grad_weight.shape[1], grad_weight.shape[2]
    Kg = K // G
    cbs = (Cg + ncb - 1) // ncb
    gbs = (G + ngb - 1) // ngb
    for t in prange(kh * kw * ncb * ngb):
        ij = t // (ncb * ngb)
        r = t - ij * (ncb * ngb)
        i = ij // kw
        j = ij - i * kw
        cb = r // ngb
        gb = r - cb * ngb
        c0 = cb * cbs
        c1 = min(c0 + cbs, Cg)
        g0 = gb * gbs
        g1 = min(g0 + gbs, G)
        gw = grad_weight[i, j]
        gw[c0:c1, g0 * Kg:g1 * Kg] = 0
        off = j * dw - pl
        lo, hi = _valid_range(oW, W, sw, off)
        if lo >= hi:
            continue
        for n in range(N):
            for oh in range(oH):
                ih = oh * sh - pt + i * dh
                if ih < 0 or ih >= H:
                    continue
                xrow = x[n, ih]
                grow = grad_output[n, oh]
                ow = lo
                while ow < hi:
                    q = min(4, hi - ow)
                    if q == 4:
                        g_0 = grow[ow]
                        g_1 = grow[ow + 1]
                        g_2 = grow[ow + 2]
                        g_3 = grow[ow + 3]
                        x_0 = xrow[ow * sw + off]
                        x_1 = xrow[(ow + 1) * sw + off]
                        x_2 = xrow[(ow + 2) * sw + off]
                        x_3 = xrow[(ow + 3) * sw + off]
                        for cc in range(c0, c1):
                            for g in range(g0, g1):
                                a = g * Kg
                                b = a + Kg
                                ci = g * Cg + cc
                                _axpy4(gw[cc, a:b], g_0[a:b], g_1[a:b], g_2[a:b], g_3[a:b],
                                       x_0[ci], x_1[ci], x_2[ci], x_3[ci], Kg)
                    else:
                        for u in range(q):
                            g_u = grow[ow + u]
                            x_u = xrow[(ow + u) * sw + off]
                            for cc in range(c0, c1):
                                for g in range(g0, g1):
                                    a = g * Kg
                                    _axpy1(gw[cc, a:a + Kg], g_u[a:a + Kg], x_u[g * Cg + cc], Kg)
                    ow += q


def grad_weight_nhwc(grad_output, x, grad_weight, stride_h, stride_w, pad_top, pad_left,
                     dilation_h, dilation_w, groups, num_threads):
    """grad_weight := sum_n correlation of x with grad_output  (NHWC); zeros when N == 0"""
    nt = _use_threads(num_threads)
    kh, kw, Cg, K = grad_weight.shape
    depthwise = Cg == 1 and K == groups
    if x.shape[0] == 0:
        grad_weight[...] = 0
        return
    if depthwise or groups == 1 and K <= _STACK_CHANNELS:
        _grad_weight_nhwc_staged_call(grad_output, x, grad_weight, stride_h, stride_w, pad_top,
                                      pad_left, dilation_h, dilation_w, depthwise)
        return
    target = 8 * nt
    ncb = ngb = 1
    if kh * kw < target:
        if Cg == 1:
            ngb = min(groups, _ceil_div(target, kh * kw))
        else:
            ncb = min(Cg, _ceil_div(target, kh * kw))
    ncb = _ceil_div(Cg, _ceil_div(Cg, ncb))
    ngb = _ceil_div(groups, _ceil_div(groups, ngb))
    _grad_weight_nhwc(grad_output, x, grad_weight, stride_h, stride_w, pad_top, pad_left,
                      dilation_h, dilation_w, groups, ncb, ngb)
