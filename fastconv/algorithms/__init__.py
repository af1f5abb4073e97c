"""Convolution algorithms: interchangeable implementations behind one interface.

Each algorithm takes C-contiguous arrays of one dtype, in the geometry's layout
(weights (K, C/G, kh, kw) for NCHW, (kh, kw, C/G, K) for NHWC), and returns new
arrays. `supports` lets one decline a case; the dispatcher then falls back to
the best algorithm that accepts it, so a declined case never gives a wrong result.
"""
import contextlib

from . import auto, compiled, reference

OPS = ("forward", "grad_input", "grad_weight")

_REGISTRY = {}
_default_algorithm = "auto"


def register(algorithm):
    """Make an algorithm object selectable by its `name`."""
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


def list_algorithms():
    """Names of the convolution algorithms available in this build ("auto" chooses among them)."""
    return list(_REGISTRY)


def _checked_name(name, argument="algorithm"):
    if name == "auto" or (isinstance(name, str) and name in _REGISTRY):
        return name
    raise ValueError(
        f'{argument} must be "auto" or one of {list_algorithms()}. Received: {argument}={name!r}'
    )


def get_default_algorithm():
    return _default_algorithm


def set_default_algorithm(name):
    """The algorithm calls use when they pass none ("auto" unless changed)."""
    global _default_algorithm
    _default_algorithm = _checked_name(name, "name")


@contextlib.contextmanager
def use_algorithm(name):
    """Context manager: `with fastconv.use_algorithm("direct"): ...`."""
    global _default_algorithm
    previous = _default_algorithm
    set_default_algorithm(name)
    try:
        yield
    finally:
        _default_algorithm = previous


def select(op, geom, dtype, algorithm=None):
    """The algorithm object that runs `op` ("forward", "grad_input" or "grad_weight") here."""
    name = _checked_name(_default_algorithm if algorithm is None else algorithm)
    accepting = [a for a in _REGISTRY.values() if a.supports(geom, dtype)]
    if name != "auto" and _REGISTRY[name] in accepting:
        return _REGISTRY[name]
    return _REGISTRY[auto.choose(op, geom, dtype, [a.name for a in accepting])]


for _algorithm in (compiled.DirectConv(), compiled.Im2colConv(), compiled.WinogradConv(),
                   compiled.NumbaDirectConv(),
                   compiled.NumbaIm2colConv(), compiled.NumbaWinogradConv(),
                   reference.ReferenceConv()):
    register(_algorithm)
