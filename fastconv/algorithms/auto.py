"""What "auto" runs: a winner measured on this machine, else a measured rule of thumb."""
from .. import _config
from . import tuning


def builtin_choice(op, geom):
    """The rule, from `fastconv bench` on the layer suite (2 cores, float32).

    im2col + BLAS wins every dense layer, first layers with one input channel
    included; direct wins by 3-40x where each group's GEMM would be a sliver:
    depthwise and other narrow-group layers.
    """
    narrow_groups = min(geom.in_channels, geom.out_channels) // geom.groups <= 4
    return "direct" if geom.groups > 1 and narrow_groups else "im2col"


def choose(op, geom, dtype, candidates):
    """Name of the algorithm "auto" runs among `candidates` (those that accept the case)."""
    tuned = tuning.lookup(tuning.case_key(op, geom, dtype, _config.get_num_threads()))
    if tuned in candidates:
        return tuned
    rule = builtin_choice(op, geom)
    if rule in candidates:
        return rule
    return next(name for name in candidates if name != "reference") if len(candidates) > 1 else candidates[0]
