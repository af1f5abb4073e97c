"""One table of convolution and pooling cases (PyTorch's OpInfo idea).

Shapes are given in NCHW terms; `conv_inputs` / `pool_input` build arrays in
either layout. The tests run every algorithm on CONV_CASES; the benchmarks run
SUITE_LAYERS, the public layer suite.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvCase:
    id: str
    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: tuple
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


CONV_CASES = [
    ConvCase("basic_3x3", 2, 3, 8, 8, 4, (3, 3)),
    ConvCase("padded_3x3", 2, 4, 7, 7, 5, (3, 3), padding=1),
    ConvCase("strided", 2, 3, 9, 9, 4, (3, 3), stride=2, padding=1),
    ConvCase("stride_hw", 1, 2, 11, 10, 3, (3, 2), stride=(3, 2), padding=(1, 0)),
    ConvCase("dilated", 2, 3, 10, 9, 4, (3, 3), dilation=2, padding=2),
    ConvCase("dilated_strided", 1, 2, 13, 12, 3, (3, 3), stride=2, dilation=(2, 3)),
    ConvCase("asymmetric_padding", 2, 3, 6, 7, 4, (3, 3), padding=((0, 2), (1, 0))),
    ConvCase("same", 2, 3, 7, 6, 4, (3, 3), padding="same"),
    ConvCase("same_stride2", 2, 3, 7, 8, 4, (4, 3), stride=2, padding="same"),
    ConvCase("same_even_kernel", 1, 2, 6, 6, 3, (2, 2), padding="same"),
    ConvCase("valid", 1, 2, 6, 5, 3, (3, 3), padding="valid"),
    ConvCase("non_square_kernel", 2, 3, 8, 9, 4, (2, 5), padding=(1, 2)),
    ConvCase("h_ne_w", 2, 2, 5, 12, 3, (3, 3), padding=1),
    ConvCase("grouped", 2, 6, 7, 7, 4, (3, 3), padding=1, groups=2),
    ConvCase("grouped_3", 1, 6, 6, 6, 9, (3, 3), groups=3),
    ConvCase("depthwise", 2, 5, 8, 8, 5, (3, 3), padding=1, groups=5),
    ConvCase("depthwise_multiplier", 2, 4, 7, 6, 8, (3, 3), padding=1, groups=4),
    ConvCase("depthwise_strided", 1, 6, 9, 9, 6, (3, 3), stride=2, padding=1, groups=6),
    ConvCase("batch_1", 1, 4, 6, 6, 3, (3, 3)),
    ConvCase("one_by_one_output", 2, 3, 3, 3, 4, (3, 3)),
    ConvCase("kernel_1x1", 2, 8, 5, 5, 6, (1, 1)),
    ConvCase("kernel_1x1_strided_padded", 2, 4, 6, 5, 3, (1, 1), stride=2, padding=1),
    ConvCase("single_channel_5x5", 3, 1, 12, 12, 6, (5, 5), padding=2),
    ConvCase("wide_channels", 1, 40, 5, 5, 36, (3, 3), padding=1),
    ConvCase("no_bias", 2, 3, 6, 6, 4, (3, 3), padding=1, bias=False),
    ConvCase("kernel_equals_input", 2, 3, 4, 5, 2, (4, 5)),
]


@dataclass(frozen=True)
class PoolCase:
    id: str
    batch: int
    channels: int
    height: int
    width: int
    kernel: object
    stride: object = None
    padding: object = 0
    dilation: object = 1
    ceil_mode: bool = False
    kind: str = "max"  # for the benchmark suite: "max", "avg" or "global_avg"

    @property
    def kwargs(self):
        return dict(kernel_size=self.kernel, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode)


POOL_CASES = [
    PoolCase("2x2", 2, 3, 8, 8, 2),
    PoolCase("3x3_stride2_pad1", 2, 3, 9, 9, 3, 2, 1),
    PoolCase("overlapping", 1, 2, 7, 7, 3, 1),
    PoolCase("non_square", 2, 2, 9, 8, (2, 3), (2, 1), (1, 0)),
    PoolCase("ceil_mode", 2, 3, 7, 7, 2, 2, 0, ceil_mode=True),
    PoolCase("ceil_mode_padded", 1, 2, 8, 7, 3, 2, 1, ceil_mode=True),
    PoolCase("same", 2, 3, 7, 6, 2, 2, "same"),
    PoolCase("same_stride1", 1, 2, 5, 5, 3, 1, "same"),
    PoolCase("valid", 1, 2, 7, 5, 3, 2, "valid"),
    PoolCase("h_ne_w", 1, 3, 4, 10, 2),
    PoolCase("dilated", 2, 2, 10, 9, 3, 1, 1, dilation=2),
    PoolCase("global_window", 2, 4, 5, 5, 5),
]

# The public layer suite of the benchmarks (issue: benchmark suite).
SUITE_LAYERS = [
    ConvCase("mnist_conv2", 64, 32, 26, 26, 64, (3, 3)),
    ConvCase("cifar_res20", 128, 16, 32, 32, 16, (3, 3), padding=1),
    ConvCase("fmnist_conv1", 128, 1, 28, 28, 32, (5, 5), padding=2),
    ConvCase("fmnist_conv2", 128, 32, 14, 14, 64, (5, 5), padding=2),
    ConvCase("resnet_3x3", 8, 64, 56, 56, 64, (3, 3), padding=1),
    ConvCase("resnet_1x1", 8, 64, 56, 56, 256, (1, 1)),
    ConvCase("resnet_res4", 8, 256, 14, 14, 256, (3, 3), padding=1),
    ConvCase("vgg_conv1_2_n1", 1, 64, 224, 224, 64, (3, 3), padding=1),
    ConvCase("mobilenet_dw", 8, 144, 56, 56, 144, (3, 3), padding=1, groups=144),
]

# The pooling suite of the benchmarks.
POOL_SUITE_LAYERS = [
    PoolCase("mnist_maxpool", 64, 64, 24, 24, 2, 2),
    PoolCase("resnet_stem_maxpool", 8, 64, 112, 112, 3, 2, 1),
    PoolCase("fmnist_avgpool", 128, 32, 16, 16, 2, 2, kind="avg"),
    PoolCase("resnet_global_avgpool", 8, 2048, 7, 7, 7, kind="global_avg"),
]


def _to_layout(array_nchw, data_format):
    if data_format == "NHWC":
        return np.ascontiguousarray(array_nchw.transpose(0, 2, 3, 1))
    return array_nchw


def conv_inputs(case, dtype=np.float32, data_format="NCHW", seed=0):
    """(x, weight, bias) for a case; weight in the layout's convention (Keras's HWIO for NHWC)."""
    rng = np.random.default_rng(seed)
    kh, kw = case.kernel
    x = rng.standard_normal((case.batch, case.in_channels, case.height, case.width)).astype(dtype)
    weight = rng.standard_normal(
        (case.out_channels, case.in_channels // case.groups, kh, kw)).astype(dtype)
    bias = rng.standard_normal(case.out_channels).astype(dtype) if case.bias else None
    if data_format == "NHWC":
        weight = np.ascontiguousarray(weight.transpose(2, 3, 1, 0))
    return _to_layout(x, data_format), weight, bias


def pool_input(case, dtype=np.float32, data_format="NCHW", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case.batch, case.channels, case.height, case.width)).astype(dtype)
    return _to_layout(x, data_format)
