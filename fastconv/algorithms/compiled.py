"""The compiled algorithms behind the common interface: Cython's "direct" (its NHWC
narrow-group layers on _conv_grouped's kernels), "im2col" and "winograd", and Numba's
"numba_direct", "numba_im2col" and "numba_winograd".

The Numba modules share the Cython modules' function names and arguments, so one
adapter serves both; they are imported on first use (importing numba takes ~0.4 s).
"""
import contextlib
import dataclasses
import importlib

import numpy as np

from .. import _aligned, _config, _ext


def _bias_or_zeros(bias, geom, dtype):
    # The kernels always add a bias (it is fused into the output pass).
    return bias if bias is not None else np.zeros(geom.out_channels, dtype=dtype)


class DirectConv:
    """Loops straight over the input, no column buffer; OpenMP over samples/rows."""

    name = "direct"
    _module = "conv_direct"
    _narrow_groups = True   # NHWC float32 groups of 2-16 channels: _conv_grouped's kernels
    _narrow_transposed = True   # NHWC narrow layers' input gradient: the transposed forward
    _channels_last_weight_gradient = True   # NCHW narrow layers' weight gradient: NHWC's kernel

    @property
    def _kernels(self):
        # The Cython modules are attributes of fastconv._ext (the CPU variant it loaded);
        # the Numba modules are imported on first use.
        if "." not in self._module:
            return getattr(_ext, self._module)
        return importlib.import_module(self._module)

    def supports(self, geom, dtype):
        return True

    def _suffix(self, geom):
        return "nhwc" if geom.channels_last else "nchw"

    def _extra(self, geom, dtype, op, threads):
        return ()

    def _threading(self, op, blas_threads):
        """Context the kernel runs in: BLAS limited to blas_threads for its duration."""
        return contextlib.nullcontext()

    def _thread_split(self, op, geom, threads):
        """(threads of the kernel's own loops, BLAS threads) for a call on `threads` cores."""
        return threads, threads

    def _grouped(self, op, geom, dtype):
        return (self._narrow_groups and geom.channels_last and dtype == np.float32
                and _ext.conv_grouped.supports(geom.in_channels, geom.out_channels,
                                               geom.groups, op))

    def _kernel(self, op, geom, dtype):
        module = _ext.conv_grouped if self._grouped(op, geom, dtype) else self._kernels
        return getattr(module, f"{op}_{self._suffix(geom)}")

    def _call(self, op, geom, dtype, *arrays):
        kernel = self._kernel(op, geom, dtype)
        threads = _config.threads_for(geom.flops, _config.SERIAL_FLOPS)
        kernel_threads, blas_threads = self._thread_split(op, geom, threads)
        extra = self._extra(geom, dtype, op, kernel_threads)
        with self._threading(op, blas_threads):
            kernel(*arrays, *extra, *geom.kernel_args, kernel_threads)

    def forward(self, x, weight, bias, geom):
        out = _aligned.empty(geom.output_shape, x.dtype)
        self._call("forward", geom, x.dtype, x, weight, _bias_or_zeros(bias, geom, x.dtype), out)
        return out

    def _transposes_input_gradient(self, geom, dtype):
        """Whether a stride-1 input gradient runs as the forward of the transposed
        convolution: NHWC narrow groups (C = K, so the transposed layer has the same
        groups), and NHWC single-group layers of 8 or more input and at most 32 output
        channels, whose transposed forward runs on the few-channel broadcast kernels (16
        channels dilated: 3.7x the rows gathered per input pixel)."""
        if self._grouped("forward", geom, dtype):
            return True
        return (self._narrow_transposed and geom.channels_last and geom.groups == 1
                and geom.in_channels >= 8 and geom.out_channels <= 32)

    def grad_input(self, grad_output, weight, geom):
        transposed = (_transposed_geometry(geom)
                      if self._transposes_input_gradient(geom, grad_output.dtype) else None)
        if transposed is not None:
            return self.forward(grad_output, _transposed_weight(weight, geom), None, transposed)
        grad_input = _aligned.empty(geom.input_shape, grad_output.dtype)
        self._call("grad_input", geom, grad_output.dtype, grad_output, weight, grad_input)
        return grad_input

    def _weight_gradient_channels_last(self, geom):
        """Whether an NCHW weight gradient runs on channels-last copies: single-group layers
        of 5-32 input channels, whose NHWC kernel sums whole images in registers, runs of up
        to 12 taps x 32 output channels, where the NCHW plane kernels sum a tap's products
        over flat runs and im2col's GEMM is a sliver (copies included: 16 channels dilated
        0.54 ms against 0.74-0.78, 32 -> 64 at stride 2 1.13 against im2col's 1.46; more
        with auto's rule in auto._narrow_direct). First layers keep the planes (an RGB 3x3
        0.65 against 0.72 through copies), and so do layers of fewer than 16 output
        channels, which NHWC's kernel sums one channel at a time."""
        cg = geom.in_channels // geom.groups
        return (self._channels_last_weight_gradient and not geom.channels_last
                and geom.groups == 1 and 4 < cg <= 32 and geom.out_channels >= 16)

    def grad_weight(self, grad_output, x, geom):
        if self._weight_gradient_channels_last(geom):
            nhwc = dataclasses.replace(geom, data_format="NHWC")
            hwio = self.grad_weight(_channels_last(grad_output), _channels_last(x), nhwc)
            return _oihw_weight(hwio)
        grad_weight = _aligned.empty(geom.weight_shape, x.dtype)
        self._call("grad_weight", geom, x.dtype, grad_output, x, grad_weight)
        return grad_weight


class Im2colConv(DirectConv):
    """im2col / col2im into a bounded workspace, then one BLAS GEMM per tile."""

    name = "im2col"
    _module = "conv_im2col"
    _narrow_groups = False
    _channels_last_weight_gradient = False

    def supports(self, geom, dtype):
        # BLAS takes 32-bit dimensions: the GEMM sizes must fit.
        limit = 2**31 - 1
        return max(geom.reduction_length, geom.out_channels, geom.in_channels,
                   geom.out_h * geom.out_w) <= limit

    def _extra(self, geom, dtype, op, threads):
        elements = self._workspace_elements(
            geom, _config.get_workspace_limit() // np.dtype(dtype).itemsize, op, threads)
        return (np.empty(max(elements, 1), dtype=dtype),)

    def _workspace_elements(self, geom, max_elements, op, threads):
        return self._kernels.workspace_elements(
            geom.batch, geom.in_channels, geom.in_h, geom.in_w, geom.out_channels,
            geom.kernel_h, geom.kernel_w, geom.out_h, geom.out_w, geom.groups,
            max_elements, geom.channels_last, op, threads)

    def _threading(self, op, blas_threads):
        return _config.kernel_blas_threads(blas_threads)

    # Whether the kernels split a GEMM over their OpenMP threads themselves where the tiles
    # run in turn (the Cython im2col does); else BLAS's threads do it.
    _splits_gemms = True

    def _thread_split(self, op, geom, threads):
        # Tiles (or samples) run on OpenMP threads, each calling single-threaded BLAS. But
        # where a thread's share of the columns is smaller than the weights (few pixels, many
        # channels: 512 at 7x7), each tile's GEMM would mostly repack the weights; there the
        # tiles run in turn, each GEMM on all cores: the kernel's OpenMP threads, or BLAS's.
        if threads > 1 and weights_outweigh_columns(geom, threads) and not self._splits_gemms:
            return 1, threads
        return threads, 1

    def grad_input(self, grad_output, weight, geom):
        # col2im runs a sample per thread: one GEMM (R, P) = W^T (R, Kg) @ grad_output (Kg, P)
        # and a scatter per sample. Measured, it beats the transposed forward (whose GEMM has
        # only C_in/groups rows: 5-13x slower on first layers) wherever every thread gets a
        # sample. With fewer samples than threads, the forward's tiles keep all cores busy;
        # and where the weights outweigh the columns (512 channels at 7x7, batch 8: GEMMs of
        # 49 columns per sample), the forward's one GEMM on all cores is 1.2-1.3x col2im.
        threads = _config.get_num_threads()
        wanted = geom.batch < threads or weights_outweigh_columns(geom, threads)
        transposed = _transposed_geometry(geom) if wanted else None
        if transposed is None:
            return super().grad_input(grad_output, weight, geom)
        # Stride 1: grad_input is the forward convolution of grad_output with the weights
        # flipped in space and transposed in channels, padded by (k - 1)*d - pad.
        return self.forward(grad_output, _transposed_weight(weight, geom), None, transposed)


_IM2COL = Im2colConv()


def weights_outweigh_columns(geom, threads):
    """Fewer output pixels than threads x output channels per group: a thread's share of
    im2col's columns is smaller than the weights (512 channels at 7x7, batch 8)."""
    return geom.batch * geom.out_h * geom.out_w < threads * (geom.out_channels // geom.groups)


def _transposed_geometry(geom):
    """The forward convolution that computes geom's grad_input, or None if there is none.

    It exists for stride 1 when no padding exceeds the dilated kernel's extent (k - 1)*d.
    """
    if geom.stride != (1, 1):
        return None
    extent_h = (geom.kernel_h - 1) * geom.dilation[0]
    extent_w = (geom.kernel_w - 1) * geom.dilation[1]
    (top, bottom), (left, right) = geom.padding
    if max(top, bottom) > extent_h or max(left, right) > extent_w:
        return None
    return dataclasses.replace(
        geom, in_channels=geom.out_channels, in_h=geom.out_h, in_w=geom.out_w,
        out_channels=geom.in_channels, out_h=geom.in_h, out_w=geom.in_w,
        padding=((extent_h - top, extent_h - bottom), (extent_w - left, extent_w - right)))


def _transposed_weight(weight, geom):
    """Weights of the transposed convolution: each group's (in, out) swapped, kernel flipped.

    Flipping both spatial axes reverses the taps t = i*kw + j, so each layout is one blocked
    transpose (_ext.layout; NumPy's strided copy took 3.3 ms for 512 x 512 3x3 weights): NHWC
    (taps, Cg, K) -> (taps, K, Cg) in reversed tap order (one group; several groups interleave
    their channels there and stay on NumPy), NCHW (G, Kg, Cg, taps) -> (G, Cg, Kg, taps)
    with each run of taps reversed."""
    G = geom.groups
    threads = _config.threads_for(weight.nbytes, _config.SERIAL_BYTES)
    if geom.channels_last:   # (kh, kw, Cg, K) -> (kh, kw, Kg, C)
        kh, kw, cg, k = weight.shape
        if G > 1:
            flipped = weight[::-1, ::-1].reshape(kh, kw, cg, G, k // G)
            return np.ascontiguousarray(flipped.transpose(0, 1, 4, 3, 2)).reshape(
                kh, kw, k // G, G * cg)
        out = np.empty((kh, kw, k, cg), dtype=weight.dtype)
        _ext.layout.flip_transpose(weight.reshape(kh * kw, cg, k, 1),
                                   out.reshape(kh * kw, k, cg, 1), True, False, threads)
        return out
    k, cg, kh, kw = weight.shape   # (K, Cg, kh, kw) -> (C, Kg, kh, kw)
    out = np.empty((G * cg, k // G, kh, kw), dtype=weight.dtype)
    _ext.layout.flip_transpose(weight.reshape(G, k // G, cg, kh * kw),
                               out.reshape(G, cg, k // G, kh * kw), False, True, threads)
    return out


def _channels_last(array):
    """An NCHW array's NHWC copy: one blocked transpose (_ext.layout) of (C, H*W) per sample."""
    n, c, h, w = array.shape
    out = np.empty((n, h, w, c), dtype=array.dtype)
    threads = _config.threads_for(array.nbytes, _config.SERIAL_BYTES)
    _ext.layout.flip_transpose(np.ascontiguousarray(array).reshape(n, c, h * w, 1),
                               out.reshape(n, h * w, c, 1), False, False, threads)
    return out


def _oihw_weight(hwio):
    """HWIO weights (kh, kw, Cg, K) in NCHW's layout (K, Cg, kh, kw): (taps, Cg*K) -> (Cg*K,
    taps), then (Cg, K, taps) -> (K, Cg, taps), the reverse of _hwio_weight."""
    kh, kw, cg, k = hwio.shape
    threads = _config.threads_for(hwio.nbytes, _config.SERIAL_BYTES)
    swapped = np.empty((cg, k, kh * kw), dtype=hwio.dtype)
    _ext.layout.flip_transpose(hwio.reshape(1, kh * kw, cg * k, 1),
                               swapped.reshape(1, cg * k, kh * kw, 1), False, False, threads)
    out = np.empty((k, cg, kh, kw), dtype=hwio.dtype)
    _ext.layout.flip_transpose(swapped.reshape(1, cg, k, kh * kw),
                               out.reshape(1, k, cg, kh * kw), False, False, threads)
    return out


def _hwio_weight(weight):
    """NCHW weights (K, Cg, kh, kw) in Keras's HWIO layout (kh, kw, Cg, K), which Winograd's
    weight transform reads (K contiguous): two blocked transposes (_ext.layout), (K, Cg, taps)
    -> (Cg, K, taps) in runs of taps, then (Cg*K, taps) -> (taps, Cg*K). NumPy's strided copy
    took 0.74 ms for 256 x 256 3x3 weights (these 0.19), 4.2 ms for 512 x 512 (1.7)."""
    k, cg, kh, kw = weight.shape
    threads = _config.threads_for(weight.nbytes, _config.SERIAL_BYTES)
    swapped = np.empty((cg, k, kh * kw), dtype=weight.dtype)
    _ext.layout.flip_transpose(weight.reshape(1, k, cg, kh * kw),
                               swapped.reshape(1, cg, k, kh * kw), False, False, threads)
    hwio = np.empty((kh, kw, cg, k), dtype=weight.dtype)
    _ext.layout.flip_transpose(swapped.reshape(1, cg * k, kh * kw, 1),
                               hwio.reshape(1, kh * kw, cg * k, 1), False, False, threads)
    return hwio


class WinogradConv(Im2colConv):
    """Winograd F(2x2, 3x3) for stride-1, undilated layers with 3x3 or 5x5 kernels (a 5x5
    kernel as four 3x3 sub-kernels, zero-padded to 6x6): forward, grad_input as the forward
    of the transposed convolution, and grad_weight by F(3x3, 2x2). 2.25x fewer multiplies
    than a GEMM over im2col columns for 3x3 kernels, 1.56x for 5x5."""

    name = "winograd"
    _module = "conv_winograd"
    _splits_gemms = False
    _fallback = _IM2COL     # where Winograd's result would differ from a direct sum

    def supports(self, geom, dtype):
        return (geom.kernel_h in (3, 5) and geom.kernel_w in (3, 5) and geom.stride == (1, 1)
                and geom.dilation == (1, 1) and super().supports(geom, dtype))

    def _run(self, op, geom, dtype, result, *arrays):
        """Run the kernel for op with a workspace of the size the module asks for."""
        threads = _config.threads_for(geom.flops, _config.SERIAL_FLOPS)
        kernel_threads, blas_threads = self._thread_split(op, geom, threads)
        sizes = (self._kernels.workspace_elements if op == "forward"
                 else self._kernels.grad_weight_workspace_elements)
        workspace = np.empty(sizes(
            geom.batch, geom.in_channels, geom.in_h, geom.in_w, geom.out_channels,
            geom.kernel_h, geom.kernel_w, geom.out_h, geom.out_w, geom.padding[0][0],
            geom.padding[1][0], geom.groups, kernel_threads), dtype=dtype)
        kernel = getattr(self._kernels, f"{op}_{self._suffix(geom)}")
        with self._threading(op, blas_threads):
            return kernel(*arrays, result, workspace, geom.padding[0][0], geom.padding[1][0],
                          geom.groups, kernel_threads)

    def forward(self, x, weight, bias, geom):
        out = _aligned.empty(geom.output_shape, x.dtype)
        hwio = weight if geom.channels_last else _hwio_weight(weight)
        nonfinite = self._run("forward", geom, x.dtype, out, x, hwio,
                              _bias_or_zeros(bias, geom, x.dtype))
        if nonfinite:
            # An infinity or NaN spreads over Winograd's whole 4x4 patch (and inf - inf is
            # NaN): recompute so that they land where a direct sum puts them.
            return self._fallback.forward(x, weight, bias, geom)
        return out

    def grad_input(self, grad_output, weight, geom):
        transposed = _transposed_geometry(geom)
        if transposed is None:   # padding beyond the kernel's reach: no transposed forward
            return self._fallback.grad_input(grad_output, weight, geom)
        return self.forward(grad_output, _transposed_weight(weight, geom), None, transposed)

    def grad_weight(self, grad_output, x, geom):
        grad_weight = _aligned.empty(geom.weight_shape, x.dtype)
        self._run("grad_weight", geom, x.dtype, grad_weight, grad_output, x)
        if not np.isfinite(grad_weight).all():   # as in forward: recompute with a direct sum
            return self._fallback.grad_weight(grad_output, x, geom)
        return grad_weight


class NumbaDirectConv(DirectConv):
    name = "numba_direct"
    _module = "fastconv.algorithms.numba_direct"
    _narrow_groups = False
    _narrow_transposed = False
    _channels_last_weight_gradient = False

    def supports(self, geom, dtype):
        # Its forward copies zero-padded input rows into a per-task buffer of at least
        # C/G x (one kernel's height) x (padded row width) elements; decline cases where
        # that alone would exceed the workspace limit (huge padding or strides).
        padded_width = (geom.out_w - 1) * geom.stride[1] + (geom.kernel_w - 1) * geom.dilation[1] + 1
        rows = (geom.kernel_h - 1) * geom.dilation[0] + 1
        scratch = (geom.in_channels // geom.groups) * rows * padded_width * np.dtype(dtype).itemsize
        return scratch <= _config.get_workspace_limit()


class NumbaIm2colConv(Im2colConv):
    """The Cython im2col's tiles, threads and workspace, in Numba: its adapter as it is."""

    name = "numba_im2col"
    _module = "fastconv.algorithms.numba_im2col"
    _splits_gemms = False


class NumbaWinogradConv(WinogradConv):
    """Winograd's algorithm as Numba kernels; where an infinity or NaN appears, numba_im2col
    computes the result."""

    name = "numba_winograd"
    _module = "fastconv.algorithms.numba_winograd"
    _fallback = NumbaIm2colConv()
