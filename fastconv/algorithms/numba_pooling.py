"""2-D max and average pooling kernels in Numba, forward and backward, NCHW and NHWC.

Drop-in replacement for ``fastconv._ext._pooling`` (same names, same positional arguments,
same semantics).

Legend:
    N       batch
    C       channels
    H, W    input height, width
    oH, oW  output height, width (taken from the output array; ceil_mode is already reflected there)
    kh, kw  window size;  sh, sw  stride;  dh, dw  dilation (max pooling only)
    pt, pb, pl, pr  padding top, bottom, left, right

Window of output (oh, ow): input rows ih = oh*sh - pt + i*dh (i < kh), columns iw = ow*sw - pl + j*dw.
Positions outside [0, H) x [0, W) are skipped (max) or count as padding (avg).

Semantics are those of PyTorch's CPU kernels:
- max: start at -inf with index = first in-bounds position of the window; take a value when it is
  greater than the running max or NaN. Ties keep the FIRST maximum; with NaNs the index of the LAST
  NaN (scan order) wins. Indices are flat positions ih*W + iw within the H x W plane (both layouts).
- avg: hend = min(hstart + kh, H + pb), pool_size = (hend - hstart)*(wend - wstart) before clipping
  to the input; divisor = divisor_override or pool_size (count_include_pad) or the clipped window
  area. A window with no input element gives 0. Sums are accumulated in the data type in row-major
  window order, as PyTorch does.

All kernels overwrite their outputs completely. No fastmath: NaN comparisons must work.
numba.prange over disjoint output regions (planes for NCHW, (n, oh) rows or (n, channel block)
for NHWC): results are bitwise reproducible and do not depend on the number of threads.
"""
import numba
import numpy as np
from numba import njit, prange


def _use_threads(n):
    """Set Numba's thread count for the calling thread (clamped to the pool); return it."""
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


_inner = njit(cache=True)
_parallel = njit(parallel=True, cache=True)


@_inner
def _first_in(start, step):
    """Smallest start + k*step >= 0 (k >= 0)."""
    if start < 0:
        start += ((step - 1 - start) // step) * step
    return start


@_inner
def _out_range(off, stride, W, oW):
    """(lo, hi) := range of ow in [0, oW) with 0 <= ow*stride + off < W."""
    a = 0
    if off < 0:
        a = (stride - 1 - off) // stride
    if W - 1 - off < 0:
        b = 0
    else:
        b = min((W - 1 - off) // stride + 1, oW)
    return a, (b if b > a else a)


def _channel_block(N, C, nt):
    """Channel block for NHWC backward: enough (n, block) tasks for the threads, multiple of 16."""
    if C <= 16 or N <= 0 or N >= 4 * nt:
        return max(C, 1)
    nblk = (4 * nt + N - 1) // N
    cb = (C + nblk - 1) // nblk
    cb = ((cb + 15) // 16) * 16
    return min(cb, C)


# ------------------------------------------------------------------------------------ max pooling

@_inner
def _max_fwd_plane(x, out, ind, kh, kw, sh, sw, pt, pl, dh, dw):
    """out[oh, ow] := max_{i,j} x[oh*sh - pt + i*dh, ow*sw - pl + j*dw]; ind := its flat position."""
    H, W = x.shape
    oH, oW = out.shape
    for oh in range(oH):
        h0 = oh * sh - pt
        h1 = min(h0 + (kh - 1) * dh + 1, H)
        h0 = _first_in(h0, dh)
        orow = out[oh]
        irow = ind[oh]
        for ow in range(oW):
            orow[ow] = -np.inf
            irow[ow] = h0 * W + _first_in(ow * sw - pl, dw)
        ih = h0
        while ih < h1:
            xrow = x[ih]
            for j in range(kw):
                off = j * dw - pl
                lo, hi = _out_range(off, sw, W, oW)
                base = ih * W + off
                for ow in range(lo, hi):
                    v = xrow[ow * sw + off]
                    if v > orow[ow] or v != v:
                        orow[ow] = v
                        irow[ow] = base + ow * sw
            ih += dh


@_parallel
def _max_fwd_nchw(x, out, indices, kh, kw, sh, sw, pt, pl, dh, dw):
    N, C = x.shape[0], x.shape[1]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        _max_fwd_plane(x[n, c], out[n, c], indices[n, c], kh, kw, sh, sw, pt, pl, dh, dw)


@_parallel
def _max_fwd_nhwc(x, out, indices, kh, kw, sh, sw, pt, pl, dh, dw):
    N, H, W, C = x.shape
    oH, oW = out.shape[1], out.shape[2]
    for p in prange(N * oH):
        n = p // oH
        oh = p - n * oH
        h0 = oh * sh - pt
        h1 = min(h0 + (kh - 1) * dh + 1, H)
        h0 = _first_in(h0, dh)
        for ow in range(oW):
            w0 = ow * sw - pl
            w1 = min(w0 + (kw - 1) * dw + 1, W)
            w0 = _first_in(w0, dw)
            o = out[n, oh, ow]
            q = indices[n, oh, ow]
            idx = h0 * W + w0
            for c in range(C):
                o[c] = -np.inf
                q[c] = idx
            ih = h0
            while ih < h1:
                iw = w0
                while iw < w1:
                    xp = x[n, ih, iw]
                    idx = ih * W + iw
                    for c in range(C):
                        v = xp[c]
                        if v > o[c] or v != v:
                            o[c] = v
                            q[c] = idx
                    iw += dw
                ih += dh


def max_pool2d_forward_nchw(x, out, indices, kernel_h, kernel_w, stride_h, stride_w,
                            pad_top, pad_left, dilation_h, dilation_w, num_threads):
    """out[n, c] := max-pool(x[n, c]); indices[n, c] := flat ih*W + iw of each max."""
    if x.shape[0] * x.shape[1] == 0 or out.shape[2] * out.shape[3] == 0:
        return
    _use_threads(num_threads)
    if indices is None:     # not kept: the kernel still writes them
        indices = np.empty(out.shape, dtype=np.int64)
    _max_fwd_nchw(x, out, indices, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
                  dilation_h, dilation_w)


def max_pool2d_forward_nhwc(x, out, indices, kernel_h, kernel_w, stride_h, stride_w,
                            pad_top, pad_left, dilation_h, dilation_w, num_threads):
    """out[n, :, :, c] := max-pool(x[n, :, :, c]); indices[n, oh, ow, c] := flat ih*W + iw of each max."""
    if x.shape[0] == 0 or x.shape[3] == 0 or out.shape[1] * out.shape[2] == 0:
        return
    _use_threads(num_threads)
    if indices is None:     # not kept: the kernel still writes them
        indices = np.empty(out.shape, dtype=np.int64)
    _max_fwd_nhwc(x, out, indices, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
                  dilation_h, dilation_w)


@_parallel
def _max_bwd_nchw(grad_output, indices, grad_input):
    N, C, H, W = grad_input.shape
    HW = H * W
    oHW = grad_output.shape[2] * grad_output.shape[3]
    outside = 0
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        g = grad_input[n, c].reshape(HW)
        o = grad_output[n, c].reshape(oHW)
        q = indices[n, c].reshape(oHW)
        g[:] = 0
        for k in range(oHW):
            j = q[k]
            if 0 <= j < HW:
                g[j] += o[k]
            else:
                outside += 1
    return outside


@_parallel
def _max_bwd_nhwc(grad_output, indices, grad_input, cb):
    N, H, W, C = grad_input.shape
    HW = H * W
    oHW = grad_output.shape[1] * grad_output.shape[2]
    nblk = (C + cb - 1) // cb
    outside = 0
    for t in prange(N * nblk):
        n = t // nblk
        b = t - n * nblk
        c0 = b * cb
        c1 = min(c0 + cb, C)
        g = grad_input[n].reshape(HW, C)
        o = grad_output[n].reshape(oHW, C)
        q = indices[n].reshape(oHW, C)
        g[:, c0:c1] = 0
        for k in range(oHW):
            ok = o[k]
            qk = q[k]
            for c in range(c0, c1):
                j = qk[c]
                if 0 <= j < HW:
                    g[j, c] += ok[c]
                else:
                    outside += 1
    return outside


def max_pool2d_backward_nchw(grad_output, indices, grad_input, num_threads):
    """grad_input[n, c].flat := 0; grad_input[n, c].flat[indices[n, c, oh, ow]] += grad_output[n, c, oh, ow].

    Returns whether every index lay in its plane: one outside is counted, never followed."""
    if grad_input.shape[0] * grad_input.shape[1] == 0:
        return True
    if grad_output.shape[2] * grad_output.shape[3] == 0:
        grad_input[...] = 0
        return True
    _use_threads(num_threads)
    return _max_bwd_nchw(grad_output, indices, grad_input) == 0


def max_pool2d_backward_nhwc(grad_output, indices, grad_input, num_threads):
    """grad_input[n, :, :, c].flat := 0, then += grad_output[n, oh, ow, c] at indices[n, oh, ow, c].

    Returns whether every index lay in its plane, as max_pool2d_backward_nchw."""
    N, C = grad_input.shape[0], grad_input.shape[3]
    if N == 0 or C == 0:
        return True
    if grad_output.shape[1] * grad_output.shape[2] == 0:
        grad_input[...] = 0
        return True
    nt = _use_threads(num_threads)
    return _max_bwd_nhwc(grad_output, indices, grad_input, _channel_block(N, C, nt)) == 0


@_parallel
def _max_bwd_tiles_nhwc(grad_output, indices, grad_input, kh, kw):
    N, H, W, C = grad_input.shape
    oH, oW = grad_output.shape[1], grad_output.shape[2]
    found = 0
    for row in prange(N * oH):
        n = row // oH
        oh = row - n * oH
        g = grad_input[n].reshape(H * W, C)
        for ow in range(oW):
            o = grad_output[n, oh, ow]
            q = indices[n, oh, ow]
            for i in range(kh):
                for j in range(kw):
                    pos = (oh * kh + i) * W + ow * kw + j
                    for c in range(C):
                        hit = q[c] == pos
                        g[pos, c] = (0 + o[c]) if hit else 0
                        found += hit
    return found


def max_pool2d_backward_tiles_nhwc(grad_output, indices, grad_input, kernel_h, kernel_w, num_threads):
    """max_pool2d_backward_nhwc where the windows tile the plane: each element written once
    (0 + grad_output at its window's index, else 0); False if an index lies outside its window."""
    N, H, W, C = grad_input.shape
    oH, oW = grad_output.shape[1], grad_output.shape[2]
    if H != oH * kernel_h or W != oW * kernel_w:
        raise ValueError(f"the windows must tile the plane. Received: H={H}, W={W}, "
                         f"{kernel_h}x{kernel_w} windows, output {oH}x{oW}")
    if N * oH * oW * C == 0:
        return True
    _use_threads(num_threads)
    return _max_bwd_tiles_nhwc(grad_output, indices, grad_input, kernel_h, kernel_w) == N * oH * oW * C


# ------------------------------------------------------------------------------------ avg pooling

@_inner
def _avg_divisor(h0, hpad_end, H, w0, wpad_end, W, kh, kw, count_include_pad, divisor_override):
    """PyTorch's divide_factor for the window starting at (h0, w0); 0 if the window holds no input."""
    h1 = min(h0 + kh, hpad_end)
    w1 = min(w0 + kw, wpad_end)
    pool_size = (h1 - h0) * (w1 - w0)
    h0 = max(h0, 0)
    w0 = max(w0, 0)
    h1 = min(h1, H)
    w1 = min(w1, W)
    if h0 >= h1 or w0 >= w1:
        return 0
    if divisor_override != 0:
        return divisor_override
    if count_include_pad:
        return pool_size
    return (h1 - h0) * (w1 - w0)


@_parallel
def _avg_fwd_nchw(x, out, kh, kw, sh, sw, pt, pb, pl, pr, count_include_pad, divisor_override):
    N, C, H, W = x.shape
    oH, oW = out.shape[2], out.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        xp = x[n, c]
        op = out[n, c]
        dv = np.empty(1, dtype=x.dtype)     # the divisor in the data type
        for oh in range(oH):
            h0 = oh * sh - pt
            h1 = min(min(h0 + kh, H + pb), H)
            orow = op[oh]
            orow[:] = 0
            for ih in range(max(h0, 0), h1):
                xrow = xp[ih]
                for j in range(kw):
                    off = j - pl
                    lo, hi = _out_range(off, sw, W, oW)
                    for ow in range(lo, hi):
                        orow[ow] = orow[ow] + xrow[ow * sw + off]
            for ow in range(oW):
                d = _avg_divisor(h0, H + pb, H, ow * sw - pl, W + pr, W, kh, kw,
                                 count_include_pad, divisor_override)
                if d != 0:
                    dv[0] = d
                    orow[ow] = orow[ow] / dv[0]
                else:
                    orow[ow] = 0


@_parallel
def _avg_fwd_nhwc(x, out, kh, kw, sh, sw, pt, pb, pl, pr, count_include_pad, divisor_override):
    N, H, W, C = x.shape
    oH, oW = out.shape[1], out.shape[2]
    for p in prange(N * oH):
        n = p // oH
        oh = p - n * oH
        dv = np.empty(1, dtype=x.dtype)
        h0 = oh * sh - pt
        h1 = min(min(h0 + kh, H + pb), H)
        for ow in range(oW):
            w0 = ow * sw - pl
            w1 = min(min(w0 + kw, W + pr), W)
            o = out[n, oh, ow]
            o[:] = 0
            d = _avg_divisor(h0, H + pb, H, w0, W + pr, W, kh, kw, count_include_pad,
                             divisor_override)
            if d == 0:
                continue
            for ih in range(max(h0, 0), h1):
                for iw in range(max(w0, 0), w1):
                    xp = x[n, ih, iw]
                    for c in range(C):
                        o[c] = o[c] + xp[c]
            dv[0] = d
            for c in range(C):
                o[c] = o[c] / dv[0]


def avg_pool2d_forward_nchw(x, out, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_bottom,
                            pad_left, pad_right, count_include_pad, divisor_override, num_threads):
    """out[n, c] := avg-pool(x[n, c]) (PyTorch divisor rules; divisor_override 0 = none)."""
    if x.shape[0] * x.shape[1] == 0 or out.shape[2] * out.shape[3] == 0:
        return
    _use_threads(num_threads)
    _avg_fwd_nchw(x, out, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_bottom, pad_left,
                  pad_right, bool(count_include_pad), divisor_override)


def avg_pool2d_forward_nhwc(x, out, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_bottom,
                            pad_left, pad_right, count_include_pad, divisor_override, num_threads):
    """out[n, :, :, c] := avg-pool(x[n, :, :, c]) (PyTorch divisor rules; divisor_override 0 = none)."""
    if x.shape[0] == 0 or x.shape[3] == 0 or out.shape[1] * out.shape[2] == 0:
        return
    _use_threads(num_threads)
    _avg_fwd_nhwc(x, out, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_bottom, pad_left,
                  pad_right, bool(count_include_pad), divisor_override)


@_parallel
def _avg_bwd_nchw(grad_output, grad_input, kh, kw, sh, sw, pt, pb, pl, pr, count_include_pad,
                  divisor_override):
    N, C, H, W = grad_input.shape
    oH, oW = grad_output.shape[2], grad_output.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        go = grad_output[n, c]
        gi = grad_input[n, c]
        g = np.empty(oW, dtype=grad_input.dtype)
        dv = np.empty(1, dtype=grad_input.dtype)
        gi[:, :] = 0
        for oh in range(oH):
            h0 = oh * sh - pt
            h1 = min(min(h0 + kh, H + pb), H)
            for ow in range(oW):
                d = _avg_divisor(h0, H + pb, H, ow * sw - pl, W + pr, W, kh, kw,
                                 count_include_pad, divisor_override)
                if d != 0:
                    dv[0] = d
                    g[ow] = go[oh, ow] / dv[0]
                else:
                    g[ow] = 0
            for ih in range(max(h0, 0), h1):
                girow = gi[ih]
                # j descending: every element receives its contributions in (oh, ow) order
                for j in range(kw - 1, -1, -1):
                    off = j - pl
                    lo, hi = _out_range(off, sw, W, oW)
                    for ow in range(lo, hi):
                        girow[ow * sw + off] = girow[ow * sw + off] + g[ow]


@_parallel
def _avg_bwd_nhwc(grad_output, grad_input, kh, kw, sh, sw, pt, pb, pl, pr, count_include_pad,
                  divisor_override, cb):
    N, H, W, C = grad_input.shape
    oH, oW = grad_output.shape[1], grad_output.shape[2]
    nblk = (C + cb - 1) // cb
    for t in prange(N * nblk):
        n = t // nblk
        b = t - n * nblk
        c0 = b * cb
        c1 = min(c0 + cb, C)
        g = grad_input[n]
        gv = np.empty(c1 - c0, dtype=grad_input.dtype)
        dv = np.empty(1, dtype=grad_input.dtype)
        g[:, :, c0:c1] = 0
        for oh in range(oH):
            h0 = oh * sh - pt
            h1 = min(min(h0 + kh, H + pb), H)
            for ow in range(oW):
                w0 = ow * sw - pl
                w1 = min(min(w0 + kw, W + pr), W)
                d = _avg_divisor(h0, H + pb, H, w0, W + pr, W, kh, kw, count_include_pad,
                                 divisor_override)
                if d == 0:
                    continue
                dv[0] = d
                o = grad_output[n, oh, ow]
                for c in range(c0, c1):
                    gv[c - c0] = o[c] / dv[0]
                for ih in range(max(h0, 0), h1):
                    for iw in range(max(w0, 0), w1):
                        gp = g[ih, iw]
                        for c in range(c0, c1):
                            gp[c] = gp[c] + gv[c - c0]


def avg_pool2d_backward_nchw(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w,
                             pad_top, pad_bottom, pad_left, pad_right, count_include_pad,
                             divisor_override, num_threads):
    """grad_input[n, c] := sum over windows containing each position of grad_output / divisor."""
    if grad_input.shape[0] * grad_input.shape[1] == 0:
        return
    if grad_output.shape[2] * grad_output.shape[3] == 0:
        grad_input[...] = 0
        return
    _use_threads(num_threads)
    _avg_bwd_nchw(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, pad_top,
                  pad_bottom, pad_left, pad_right, bool(count_include_pad), divisor_override)


def avg_pool2d_backward_nhwc(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w,
                             pad_top, pad_bottom, pad_left, pad_right, count_include_pad,
                             divisor_override, num_threads):
    """grad_input[n, :, :, c] := sum over windows containing each position of grad_output / divisor."""
    N, C = grad_input.shape[0], grad_input.shape[3]
    if N == 0 or C == 0:
        return
    if grad_output.shape[1] * grad_output.shape[2] == 0:
        grad_input[...] = 0
        return
    nt = _use_threads(num_threads)
    _avg_bwd_nhwc(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, pad_top,
                  pad_bottom, pad_left, pad_right, bool(count_include_pad), divisor_override,
                  _channel_block(N, C, nt))
