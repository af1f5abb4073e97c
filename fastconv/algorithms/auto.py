"""What "auto" runs: a winner measured on this machine, else a measured rule of thumb."""
from .. import _config
from . import tuning


def builtin_choice(op, geom):
    """The rule, from `fastconv bench` and per-op timings on the layer suite (2 cores,
    float32, AVX-512 kernels).

    Winograd wins every op of 3x3 and 5x5 stride-1 layers with 8 or more channels per
    group: 1.2-2.3x im2col on the 3x3 layers (1.2-1.8x on resnet_res4's 256 channels),
    1.1-2.6x on fmnist_conv2's 5x5; and the forward and weight gradient of LeNet's 6 -> 16
    5x5 layer (1.25-1.45x); but not where the batch has fewer output pixels than threads x
    output channels (512 channels at 7x7, batch 8): its weight transform is not amortised
    there, and im2col's single GEMM on all cores is 1.3-1.8x faster.
    Direct convolution wins the forward and weight gradient of first layers (C <= 4:
    fmnist_conv1 1.3-1.9x im2col), but for strided ones in NCHW (a 7x7 stride-2 stem, a
    3x3 stride-2 layer: im2col 2-3.5x) and NCHW weight gradients of more than one input
    channel (RGB: im2col 1.2-2.5x); wherever each group's GEMM would be a sliver
    (depthwise and other narrow groups: 3-40x); and on narrow layers, where its first-layer
    kernels run: NCHW stride-1 forward and input gradient with 8-16 channels on both sides
    (cifar_res20 1.4-1.6x Winograd, 16 channels dilated or 7x7 2-3x), NHWC weight gradients
    with up to 32 input channels (8 where Winograd runs: LeNet's 6 -> 16 3x, 16 channels
    strided or dilated 2x im2col), NHWC forwards with up to 16 that Winograd does not take,
    and NHWC 5x5 forwards with up to 32 input and 32 or more output channels (fmnist_conv2:
    6.8 ms at 376 GFLOP/s, Winograd 7.8: for 5x5 kernels it saves only 1.56x the multiplies).
    The input gradient of a first layer is im2col's col2im (2-8x the transposed forward,
    whose GEMM has only C <= 4 rows). im2col + BLAS wins all other layers in every op,
    narrow NCHW ones too (8-16 channels, 1x1 or strided: 1.5-4.7x direct): its tiles run on
    all cores with the columns in cache.
    """
    cg, kg = geom.in_channels // geom.groups, geom.out_channels // geom.groups
    if geom.groups == 1 and cg <= 4:    # first layers
        if op == "grad_input" or not (geom.channels_last or geom.stride == (1, 1)):
            return "im2col"
        if op == "grad_weight" and not geom.channels_last and cg > 1:
            return "im2col"
        return "direct"
    few_pixels = geom.batch * geom.out_h * geom.out_w < _config.get_num_threads() * kg
    winograd = ((geom.kernel_h, geom.kernel_w) in ((3, 3), (5, 5)) and geom.stride == (1, 1)
                and geom.dilation == (1, 1) and not few_pixels)
    pointwise = geom.kernel_h == geom.kernel_w == 1
    if not geom.channels_last and op != "grad_weight" and geom.stride == (1, 1) and (
            not pointwise and 8 <= min(cg, kg) and max(cg, kg) <= 16):
        return "direct"     # narrow NCHW: whole staged planes, a flat run per tap
    if geom.channels_last and geom.groups == 1 and not pointwise:
        if op == "grad_weight" and cg <= (8 if winograd else 32):
            return "direct"     # narrow NHWC: one broadcast input value per tap
        wide_taps = geom.kernel_h * geom.kernel_w >= 25 and cg <= 32 and kg >= 32
        if op == "forward" and (cg <= 16 and not winograd or wide_taps):
            return "direct"
    if winograd and (min(cg, kg) >= 8 or (cg >= 5 and kg >= 8 and op != "grad_input")):
        return "winograd"
    if geom.groups > 1 and min(cg, kg) <= 4:
        return "direct"
    return "im2col"


def choose(op, geom, dtype, candidates):
    """Name of the algorithm "auto" runs among `candidates` (those that accept the case)."""
    tuned = tuning.lookup(tuning.case_key(op, geom, dtype, _config.get_num_threads()))
    if tuned in candidates:
        return tuned
    rule = builtin_choice(op, geom)
    if rule in candidates:
        return rule
    return next(name for name in candidates if name != "reference") if len(candidates) > 1 else candidates[0]
