"""Drop-in replacements for torch.nn's Conv2d and pooling layers.

Each subclasses its torch.nn class, so construction, parameter names, shapes,
initialisation (reset_parameters), repr and state_dict are torch's own; only the
computation differs: forward (and so backward) runs on fastconv's kernels.
"""
import torch

from . import functional

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d on fastconv's kernels; `algorithm=` picks fastconv's algorithm.

    padding_mode "zeros" pads inside the kernel; "reflect", "replicate" and "circular"
    pad with torch.nn.functional.pad first and then run a valid convolution, as torch does.
    """

    algorithm = None  # fastconv's default; set per instance by __init__ or convert

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None, *, algorithm=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype)
        self.algorithm = algorithm

    def _conv_forward(self, input, weight, bias):
        padding = self.padding
        if self.padding_mode != "zeros":
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice,
                                            mode=self.padding_mode)
            padding = 0
        return functional.conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups,
                                 algorithm=self.algorithm)

    def extra_repr(self):
        text = super().extra_repr()
        return text if self.algorithm is None else f"{text}, algorithm={self.algorithm!r}"


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d on fastconv's kernels (return_indices supported)."""

    def forward(self, input):
        return functional.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                                     self.ceil_mode, self.return_indices)


class AvgPool2d(torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d on fastconv's kernels."""

    def forward(self, input):
        return functional.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                     self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(torch.nn.AdaptiveAvgPool2d):
    """torch.nn.AdaptiveAvgPool2d for output_size=1 (global average pooling) only.

    Raises:
        ValueError: any other output_size.
    """

    def __init__(self, output_size):
        functional.check_global_output_size(output_size)
        super().__init__(output_size)

    def forward(self, input):
        return functional.adaptive_avg_pool2d(input, self.output_size)
