"""The compiled algorithms behind the common interface: Cython's "direct" and
"im2col", and the same two as Numba kernels, "numba_direct" and "numba_im2col".

The Numba modules share the Cython modules' function names and arguments, so one
adapter serves both; they are imported on first use (importing numba takes ~0.4 s).
"""
import importlib

import numpy as np

from .. import _config, _ext


def _bias_or_zeros(bias, geom, dtype):
    # The kernels always add a bias (it is fused into the output pass).
    return bias if bias is not None else np.zeros(geom.out_channels, dtype=dtype)


class DirectConv:
    """Loops straight over the input, no column buffer; OpenMP over samples/rows."""

    name = "direct"
    _module = "conv_direct"

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

    def _extra(self, geom, dtype):
        return ()

    def _call(self, op, geom, dtype, *arrays):
        kernel = getattr(self._kernels, f"{op}_{self._suffix(geom)}")
        threads = _config.threads_for(geom.flops, _config.SERIAL_FLOPS)
        kernel(*arrays, *self._extra(geom, dtype), *geom.kernel_args, threads)

    def forward(self, x, weight, bias, geom):
        out = np.empty(geom.output_shape, dtype=x.dtype)
        self._call("forward", geom, x.dtype, x, weight, _bias_or_zeros(bias, geom, x.dtype), out)
        return out

    def grad_input(self, grad_output, weight, geom):
        grad_input = np.empty(geom.input_shape, dtype=grad_output.dtype)
        self._call("grad_input", geom, grad_output.dtype, grad_output, weight, grad_input)
        return grad_input

    def grad_weight(self, grad_output, x, geom):
        grad_weight = np.empty(geom.weight_shape, dtype=x.dtype)
        self._call("grad_weight", geom, x.dtype, grad_output, x, grad_weight)
        return grad_weight


class Im2colConv(DirectConv):
    """im2col / col2im into a bounded workspace, then one BLAS GEMM per tile."""

    name = "im2col"
    _module = "conv_im2col"

    def supports(self, geom, dtype):
        # BLAS takes 32-bit dimensions: the GEMM sizes must fit.
        limit = 2**31 - 1
        return max(geom.reduction_length, geom.out_channels, geom.in_channels,
                   geom.out_h * geom.out_w) <= limit

    def _extra(self, geom, dtype):
        itemsize = np.dtype(dtype).itemsize
        elements = self._kernels.workspace_elements(
            geom.batch, geom.in_channels, geom.in_h, geom.in_w, geom.out_channels,
            geom.kernel_h, geom.kernel_w, geom.out_h, geom.out_w, geom.groups,
            _config.get_workspace_limit() // itemsize, geom.channels_last)
        return (np.empty(max(elements, 1), dtype=dtype),)


class NumbaDirectConv(DirectConv):
    name = "numba_direct"
    _module = "fastconv.algorithms.numba_direct"

    def supports(self, geom, dtype):
        # Its forward copies zero-padded input rows into a per-task buffer of at least
        # C/G x (one kernel's height) x (padded row width) elements; decline cases where
        # that alone would exceed the workspace limit (huge padding or strides).
        padded_width = (geom.out_w - 1) * geom.stride[1] + (geom.kernel_w - 1) * geom.dilation[1] + 1
        rows = (geom.kernel_h - 1) * geom.dilation[0] + 1
        scratch = (geom.in_channels // geom.groups) * rows * padded_width * np.dtype(dtype).itemsize
        return scratch <= _config.get_workspace_limit()


class NumbaIm2colConv(Im2colConv):
    name = "numba_im2col"
    _module = "fastconv.algorithms.numba_im2col"
