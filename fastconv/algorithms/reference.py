"""The NumPy reference: short, obviously correct, slow. The oracle of every test.

Convolution is written once, in NCHW, as a sum over kernel offsets (i, j):

    out[n, k, :, :] += w[k, c, i, j] * xpad[n, c, i*dh : : sh, j*dw : : sw]   (c in k's group)

so each gradient is the same loop with the roles swapped. NHWC goes through
transposes. Pooling is a loop over window offsets of gathered, masked values.
"""
import numpy as np


# --------------------------------------------------------------------------- layout helpers
def to_nchw(array, geom):
    return array.transpose(0, 3, 1, 2) if geom.channels_last else array


def from_nchw(array, geom):
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1) if geom.channels_last else array)


def weight_to_kcij(weight, geom):
    """(K, C/G, kh, kw) view of either weight layout."""
    return weight.transpose(3, 2, 0, 1) if geom.channels_last else weight


def weight_from_kcij(weight, geom):
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0) if geom.channels_last else weight)


# --------------------------------------------------------------------------- convolution
def _padded_size(geom):
    """Rows and columns of the zero-padded input that the output's windows cover."""
    (top, _), (left, _) = geom.padding
    rows = (geom.out_h - 1) * geom.stride[0] + (geom.kernel_h - 1) * geom.dilation[0] + 1
    cols = (geom.out_w - 1) * geom.stride[1] + (geom.kernel_w - 1) * geom.dilation[1] + 1
    return max(rows, top + geom.in_h), max(cols, left + geom.in_w)


def _window(geom, i, j):
    """Slices of the padded input that kernel offset (i, j) multiplies, for every output."""
    sh, sw = geom.stride
    r0, c0 = i * geom.dilation[0], j * geom.dilation[1]
    return (slice(r0, r0 + sh * (geom.out_h - 1) + 1, sh),
            slice(c0, c0 + sw * (geom.out_w - 1) + 1, sw))


def _grouped(array, groups):
    """(N, C, ...) -> (N, G, C/G, ...)."""
    return array.reshape(array.shape[0], groups, array.shape[1] // groups, *array.shape[2:])


def _pad_input(x, geom):
    rows, cols = _padded_size(geom)
    (top, _), (left, _) = geom.padding
    xpad = np.zeros(x.shape[:2] + (rows, cols), dtype=x.dtype)
    xpad[:, :, top:top + geom.in_h, left:left + geom.in_w] = x
    return xpad


def conv2d_forward(x, weight, bias, geom):
    x, w = to_nchw(x, geom), weight_to_kcij(weight, geom)
    g = geom.groups
    xpad = _grouped(_pad_input(x, geom), g)
    wg = w.reshape(g, geom.out_channels // g, *w.shape[1:])
    out = np.zeros((geom.batch, g, geom.out_channels // g, geom.out_h, geom.out_w), x.dtype)
    for i in range(geom.kernel_h):
        for j in range(geom.kernel_w):
            rows, cols = _window(geom, i, j)
            out += np.einsum("ngchw,gkc->ngkhw", xpad[..., rows, cols], wg[..., i, j])
    out = out.reshape(geom.batch, geom.out_channels, geom.out_h, geom.out_w)
    if bias is not None:
        out += bias[:, None, None]
    return from_nchw(out, geom)


def conv2d_grad_input(grad_output, weight, geom):
    go, w = to_nchw(grad_output, geom), weight_to_kcij(weight, geom)
    g = geom.groups
    gog = _grouped(go, g)
    wg = w.reshape(g, geom.out_channels // g, *w.shape[1:])
    rows_total, cols_total = _padded_size(geom)
    gxpad = np.zeros((geom.batch, g, geom.in_channels // g, rows_total, cols_total), go.dtype)
    for i in range(geom.kernel_h):
        for j in range(geom.kernel_w):
            rows, cols = _window(geom, i, j)
            gxpad[..., rows, cols] += np.einsum("ngkhw,gkc->ngchw", gog, wg[..., i, j])
    (top, _), (left, _) = geom.padding
    gx = gxpad.reshape(geom.batch, geom.in_channels, rows_total, cols_total)
    return from_nchw(gx[:, :, top:top + geom.in_h, left:left + geom.in_w], geom)


def conv2d_grad_weight(grad_output, x, geom):
    go, x = to_nchw(grad_output, geom), to_nchw(x, geom)
    g = geom.groups
    gog = _grouped(go, g)
    xpad = _grouped(_pad_input(x, geom), g)
    cg = geom.in_channels // g
    gw = np.zeros((g, geom.out_channels // g, cg, geom.kernel_h, geom.kernel_w), go.dtype)
    for i in range(geom.kernel_h):
        for j in range(geom.kernel_w):
            rows, cols = _window(geom, i, j)
            gw[..., i, j] = np.einsum("ngkhw,ngchw->gkc", gog, xpad[..., rows, cols])
    return weight_from_kcij(gw.reshape(geom.out_channels, cg, geom.kernel_h, geom.kernel_w), geom)


# --------------------------------------------------------------------------- pooling
def _window_positions(geom, i, j):
    """Input rows/cols of window offset (i, j) for every output, and which are inside."""
    (top, _), (left, _) = geom.padding
    ih = np.arange(geom.out_h) * geom.stride[0] - top + i * geom.dilation[0]
    iw = np.arange(geom.out_w) * geom.stride[1] - left + j * geom.dilation[1]
    inside = ((ih >= 0) & (ih < geom.in_h))[:, None] & ((iw >= 0) & (iw < geom.in_w))[None, :]
    ih, iw = np.clip(ih, 0, geom.in_h - 1), np.clip(iw, 0, geom.in_w - 1)
    return ih, iw, inside


def max_pool2d_forward(x, geom):
    """PyTorch's rule: scan the window in order, take a value if it is greater or NaN."""
    x = to_nchw(x, geom)
    shape = (geom.batch, geom.channels, geom.out_h, geom.out_w)
    best = np.full(shape, -np.inf, dtype=x.dtype)
    index = np.full(shape, -1, dtype=np.int64)
    for i in range(geom.kernel[0]):
        for j in range(geom.kernel[1]):
            ih, iw, inside = _window_positions(geom, i, j)
            value = x[:, :, ih][:, :, :, iw]
            flat = ih[:, None] * geom.in_w + iw[None, :]
            first = inside & (index < 0)
            take = inside & ((value > best) | np.isnan(value))
            index = np.where(first | take, flat, index)
            best = np.where(take, value, best)
    return from_nchw(best, geom), from_nchw(index, geom)


def max_pool2d_backward(grad_output, indices, geom):
    go, idx = to_nchw(grad_output, geom), to_nchw(indices, geom)
    n, c = geom.batch, geom.channels
    grad = np.zeros((n * c, geom.in_h * geom.in_w), dtype=go.dtype)
    rows = np.repeat(np.arange(n * c), geom.out_h * geom.out_w)
    np.add.at(grad, (rows, idx.reshape(-1)), go.reshape(-1))
    return from_nchw(grad.reshape(n, c, geom.in_h, geom.in_w), geom)


def avg_pool2d_divisor(geom, count_include_pad, divisor_override):
    """(oH, oW) divisors by PyTorch's rules, with separate before/after padding."""
    if divisor_override:
        return np.full((geom.out_h, geom.out_w), float(divisor_override))
    (top, bottom), (left, right) = geom.padding

    def spans(out, size, k, s, before, after):
        start = np.arange(out) * s - before
        end = np.minimum(start + k, size + after)
        padded = end - start
        inside = np.minimum(end, size) - np.maximum(start, 0)
        return padded, inside

    ph, ih = spans(geom.out_h, geom.in_h, geom.kernel[0], geom.stride[0], top, bottom)
    pw, iw = spans(geom.out_w, geom.in_w, geom.kernel[1], geom.stride[1], left, right)
    return np.outer(ph, pw) if count_include_pad else np.outer(ih, iw)


def avg_pool2d_forward(x, geom, count_include_pad=True, divisor_override=None):
    x = to_nchw(x, geom)
    total = np.zeros((geom.batch, geom.channels, geom.out_h, geom.out_w), dtype=x.dtype)
    for i in range(geom.kernel[0]):
        for j in range(geom.kernel[1]):
            ih, iw, inside = _window_positions(geom, i, j)
            total += np.where(inside, x[:, :, ih][:, :, :, iw], 0)
    divisor = avg_pool2d_divisor(geom, count_include_pad, divisor_override)
    return from_nchw(total / divisor.astype(x.dtype), geom)


def avg_pool2d_backward(grad_output, geom, count_include_pad=True, divisor_override=None):
    go = to_nchw(grad_output, geom)
    divisor = avg_pool2d_divisor(geom, count_include_pad, divisor_override)
    share = go / divisor.astype(go.dtype)
    grad = np.zeros((geom.batch, geom.channels, geom.in_h, geom.in_w), dtype=go.dtype)
    for i in range(geom.kernel[0]):
        for j in range(geom.kernel[1]):
            ih, iw, inside = _window_positions(geom, i, j)
            # np.add.at accumulates where windows overlap the same input pixel.
            r, c = np.nonzero(inside)
            np.add.at(grad, (slice(None), slice(None), ih[r], iw[c]), share[:, :, r, c])
    return from_nchw(grad, geom)


class ReferenceConv:
    """The reference as an algorithm: accepts every case."""

    name = "reference"

    def supports(self, geom, dtype):
        return True

    def forward(self, x, weight, bias, geom):
        return conv2d_forward(x, weight, bias, geom)

    def grad_input(self, grad_output, weight, geom):
        return conv2d_grad_input(grad_output, weight, geom)

    def grad_weight(self, grad_output, x, geom):
        return conv2d_grad_weight(grad_output, x, geom)
