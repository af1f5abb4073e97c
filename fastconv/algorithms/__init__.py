"""Convolution algorithms: interchangeable implementations behind one interface.

Each algorithm takes C-contiguous arrays of one dtype, in the geometry's layout
(weights (K, C/G, kh, kw) for NCHW, (kh, kw, C/G, K) for NHWC), and returns new
arrays. `supports` lets one decline a case; the dispatcher then falls back.
"""
from . import compiled, reference

_REGISTRY = {}


class ReferenceConv:
    name = "reference"

    def supports(self, geom, dtype):
        return True

    def forward(self, x, weight, bias, geom):
        return reference.conv2d_forward(x, weight, bias, geom)

    def grad_input(self, grad_output, weight, geom):
        return reference.conv2d_grad_input(grad_output, weight, geom)

    def grad_weight(self, grad_output, x, geom):
        return reference.conv2d_grad_weight(grad_output, x, geom)


def register(algorithm):
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


for _algorithm in (compiled.DirectConv(), compiled.Im2colConv(), ReferenceConv()):
    register(_algorithm)


def list_algorithms():
    """Names of the convolution algorithms available in this build ("auto" chooses among them)."""
    return list(_REGISTRY)


def _auto_choice(geom):
    # Measured on the layer suite (2 cores): im2col + BLAS wins every dense layer,
    # first layers with one input channel included; direct wins by 3-40x where each
    # group's GEMM would be a sliver: depthwise and other narrow-group layers.
    narrow_groups = min(geom.in_channels, geom.out_channels) // geom.groups <= 4
    return "direct" if geom.groups > 1 and narrow_groups else "im2col"


def select(geom, dtype, algorithm="auto"):
    """The algorithm object to run this case: the named one, or "auto"'s choice."""
    if algorithm == "auto":
        name = _auto_choice(geom)
    elif isinstance(algorithm, str) and algorithm in _REGISTRY:
        name = algorithm
    else:
        raise ValueError(
            f"algorithm must be \"auto\" or one of {list_algorithms()}. Received: algorithm={algorithm!r}"
        )
    chosen = _REGISTRY[name]
    if chosen.supports(geom, dtype):
        return chosen
    for fallback in _REGISTRY.values():
        if fallback.supports(geom, dtype):
            return fallback
    raise AssertionError("the reference algorithm supports every case")  # pragma: no cover
