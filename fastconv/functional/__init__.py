"""Stateless ops with PyTorch's torch.nn.functional semantics, on NumPy arrays."""
from .conv import conv2d, conv2d_backward
from .pooling import (
    avg_pool2d,
    avg_pool2d_backward,
    get_pooling_backend,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    set_pooling_backend,
)

__all__ = [
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
    "avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
    "set_pooling_backend", "get_pooling_backend",
]
