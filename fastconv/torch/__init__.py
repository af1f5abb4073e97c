"""fastconv as the convolution backend of PyTorch layers: `pip install fastconv[torch]`.

    import fastconv.torch
    model = fastconv.torch.convert(model)          # every Conv2d / pooling layer swapped
    layer = fastconv.torch.Conv2d(3, 16, 3, padding=1)   # or use the layers directly

Forward and backward run on fastconv's kernels through torch.autograd.Function;
CPU float32/float64 tensors, contiguous or channels_last, are shared with the
kernels without copies.
"""
try:
    import torch  # noqa: F401
except ImportError as error:
    raise ImportError(
        "fastconv.torch needs PyTorch, which is not installed: pip install fastconv[torch]"
    ) from error

from . import functional
from .convert import convert
from .modules import AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "convert", "functional"]
