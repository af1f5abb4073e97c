"""What "auto" runs: a winner measured on this machine, else a measured rule of thumb."""
from .. import _config
from . import compiled, tuning


def builtin_choice(op, geom):
    """The rule, from `fastconv bench`, `bench/shape_sweep.py` and per-op timings (2 cores,
    float32, AVX-512 kernels); the evidence for each case is with the helper deciding it.

    im2col + BLAS is the default: its tiles run on all cores with the columns in cache, and
    it wins every layer the others do not take, narrow strided NCHW ones too (8-16 channels:
    1.5-4.7x direct). Depthwise and other narrow groups run direct (each group's GEMM would
    be a sliver: 3-40x), and so do 1x1 layers with weights that stay in cache (_pointwise).
    """
    cg, kg = geom.in_channels // geom.groups, geom.out_channels // geom.groups
    if _pointwise(op, geom):
        return "direct"
    if geom.groups == 1 and cg <= 4:
        return _first_layer(op, geom)
    winograd = _winograd_fits(geom)
    if _narrow_direct(op, geom, cg, kg, winograd) or _implicit_gemm(op, geom, winograd):
        return "direct"
    few_inputs = cg >= 5 and kg >= 8 and op != "grad_input" and not geom.channels_last
    if winograd and (min(cg, kg) >= 8 or few_inputs):
        return "winograd"
    if geom.groups > 1 and min(cg, kg) <= 4:
        return "direct"
    return "im2col"


def _first_layer(op, geom):
    """C <= 4. Direct wins the forward and weight gradient (fmnist_conv1 1.3-1.9x im2col;
    in NCHW on staged planes an RGB 3x3's weight gradient 1.7x, an RGB stride-2 forward
    1.8x) but the NCHW weight gradient where the staged planes do not fit (a 7x7 stride-2
    stem: im2col 2-4x). NCHW forwards there take the planes in bands of rows (batch 8 at
    224x224: the 7x7 stride-2 stem 5.4 ms against im2col's 7.6, VGG's 3 -> 64 3x3 10.2
    against 14.0, MobileNet's 3 -> 32 stride-2 3x3 1.6 against 2.4). The input gradient
    is im2col's col2im (2-8x the transposed forward, whose GEMM has only C rows)."""
    if op == "grad_input":
        return "im2col"
    if not geom.channels_last and not (
            _nchw_planes_fit(geom) or op == "forward" and _nchw_bands_fit(geom)):
        return "im2col"
    return "direct"


def _pointwise(op, geom):
    """1x1 stride-1 unpadded single-group forwards and input gradients run on direct's
    pointwise kernels, which write each output once where BLAS clears it and adds to it,
    while the weights stay in cache.
    - NCHW, up to 32 Ki weights and planes of at least 4 pixels per channel summed over:
      resnet_1x1 (64 -> 256 at 56x56) 2.25 ms against im2col's 3.2, 256 -> 64 2.6 vs 3.4, at
      28x28 64 -> 256 1.13 vs 1.42, MobileNet's 24 -> 144 0.52 vs 0.83, narrow layers (8 -> 16,
      16 -> 8, 5 -> 32) 2-3x. Smaller planes go to im2col (batch 16 at 14x14: 256 -> 64 0.47
      vs 0.60, 64 -> 256 0.41 vs 0.49; at 7x7 256 -> 128 0.25 vs 0.34), as do more weights:
      128 -> 512 a tie, 960 -> 160 at 7x7 0.42 vs 0.74, 512 -> 2048 2.9 vs 5.0.
    - NHWC forwards, up to 256 Ki weights (blocks of 8 pixels x 32 channels): resnet_1x1 2.3
      vs 2.8, 1024 -> 256 at 14x14 2.0 vs 2.2, 960 -> 160 0.30 vs 0.38, 8 -> 16 2x; but 512 ->
      2048 2.7 vs 2.3.
    - NHWC input gradients (the forward on the transposed weights) with 8 or more input
      channels and up to 64 Ki weights: resnet_1x1 2.5 vs 3.2, 144 -> 24 0.58 vs 0.86; but
      1024 -> 256 2.5 vs 2.2, and 5 -> 32 0.17 vs 0.13."""
    if op == "grad_weight" or not (
            geom.groups == 1 and (geom.kernel_h, geom.kernel_w) == (1, 1)
            and geom.stride == (1, 1) and geom.padding == ((0, 0), (0, 0))):
        return False
    weights = geom.in_channels * geom.out_channels
    if not geom.channels_last:
        summed = geom.in_channels if op == "forward" else geom.out_channels
        return weights <= 32768 and 4 * summed <= geom.out_h * geom.out_w
    if op == "forward":
        return weights <= 262144
    return weights <= 65536 and geom.in_channels >= 8


def _nchw_planes_fit(geom):
    """Whether direct's NCHW plane kernels take the layer: a group's input planes, zero
    padded (as sh x sw polyphase components when strided), and 4 output planes at their
    pitch within 64 Ki elements, as forward_nchw in _conv_direct.pyx decides
    (grad_weight_nchw asks less)."""
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    planes_h = geom.out_h + (geom.kernel_h - 1) * dh // sh
    planes_w = geom.out_w + (geom.kernel_w - 1) * dw // sw
    outputs = (geom.out_h - 1) * planes_w + geom.out_w
    staged = (geom.in_channels // geom.groups) * sh * sw * planes_h * planes_w
    return staged + 4 * outputs <= 65536


def _nchw_bands_fit(geom):
    """Whether forward_nchw takes a first layer's planes in bands (_plane_band_rows in
    _conv_direct.pyx): of 8 or more output rows, each at least a vector (16 floats) wide."""
    (sh, sw), (dh, dw) = geom.stride, geom.dilation
    planes_w = geom.out_w + (geom.kernel_w - 1) * dw // sw
    halo = (geom.kernel_h - 1) * dh // sh
    phases = (geom.in_channels // geom.groups) * sh * sw
    per_row = (phases + 4) * planes_w
    fixed = phases * halo * planes_w + 4 * (geom.out_w - planes_w)
    return geom.out_w >= 16 and (65536 - fixed) // per_row >= 8


def _winograd_fits(geom):
    """Winograd takes 3x3 and 5x5 stride-1 layers: 1.2-2.3x im2col on the 3x3 layers,
    1.1-2.6x on fmnist_conv2's 5x5 (with 8 or more channels per group, or 5-7 input
    channels in NCHW: 1.25-1.45x; but on LeNet's 6 -> 16 im2col's NHWC forward is 1.3-1.5x
    Winograd, and the narrow direct kernels take that one in both layouts). Not where the batch
    has fewer output pixels than threads x output channels (512 channels at 7x7, batch 8):
    the weight transform is not amortised there, and im2col's single GEMM on all cores is
    1.3-1.8x faster."""
    return ((geom.kernel_h, geom.kernel_w) in ((3, 3), (5, 5)) and geom.stride == (1, 1)
            and geom.dilation == (1, 1)
            and not compiled.weights_outweigh_columns(geom, _config.get_num_threads()))


def _narrow_direct(op, geom, cg, kg, winograd):
    """Narrow layers on direct's first-layer kernels (staged planes in NCHW, one broadcast
    input value per tap in NHWC):
    - NCHW stride-1 forward and input gradient, up to 16 channels on both sides: cifar_res20
      1.4-1.6x Winograd, 16 channels dilated or 7x7 2-3x, LeNet's 6 -> 16 forward 2x
      Winograd and input gradient 1.05-1.15x im2col;
    - NCHW strided forwards of 3x3 and wider kernels, up to 32 input and 64 output channels,
      where their polyphase planes would fit (forward_nchw now runs those with 16 or more
      output channels on the staged rows of _implicit_gemm): 32 -> 64 at 32x32 0.93 ms
      against the planes' 1.14 and im2col's 1.45 (PyTorch 1.06), 16 -> 32 0.52 vs 0.70, 32
      -> 64 at 28x28 0.31 vs 0.53 (0.39);
    - NCHW weight gradients, up to 16 channels on both sides, on staged (polyphase) planes:
      16 channels dilated 2-4x im2col, 8 -> 8 at 32x32 0.86 ms against Winograd's 1.23; but
      Winograd takes 16 input channels (its NCHW staging through transposes: cifar_res20
      2.3 ms against direct's 3.0-3.2, 16 -> 16 at 32x32 1.12-1.18 vs 1.52-1.56, 5x5 at
      14x14 0.60 vs 1.10, 16 -> 8 0.17-0.33 vs 0.24-0.40). Single-group layers of 5-32
      input and 16 or more output channels run on NHWC's kernel through channels-last
      copies (DirectConv._weight_gradient_channels_last), by NHWC's rule: 32 -> 64 at
      stride 2 1.13 ms against im2col's 1.46 (PyTorch 0.96), 16 -> 32 0.70 vs 1.24, 32 ->
      64 at 56x56 0.83 vs 1.01, 8 -> 16 at 32x32 0.73 vs Winograd's 0.87, LeNet's 6 -> 16
      0.36 vs 0.56;
    - NHWC weight gradients, up to 32 input channels (8 where Winograd runs): LeNet's
      6 -> 16 3x, 16 channels strided or dilated 2x im2col;
    - NHWC stride-1 input gradients with 8 or more input and up to 16 output channels where
      Winograd does not run, as the transposed forward: 16 channels dilated 1.2x im2col;
    - NHWC forwards, up to 16 input channels where Winograd does not run (fewer than 8
      channels on a side, as LeNet's 6 -> 16: 0.40-0.42 ms against im2col's 0.43-0.45), and
      wide kernels (5x5 and up) with up to 32 input and 32 or more output channels, but
      where Winograd runs F(2x2, 5x5) (16 or more channels per group): fmnist_conv2 direct
      5.6-7.2 ms, Winograd F(2x2, 5x5) 4.3 (on 3x3 sub-kernels it had saved only 1.56x the
      multiplies: 6.4). Winograd keeps 16 channels (cifar_res20 2.7-2.8 against direct's
      2.8-3.3, 16 -> 16 3x3 at 32x32 1.19-1.23 against 1.42-1.45) on a quiet machine; with
      its neighbours loading it, direct led by 1.1-1.5x, as BLAS's threads lose more."""
    if geom.kernel_h == geom.kernel_w == 1:
        return False
    if not geom.channels_last:
        if op == "grad_weight":
            if geom.groups == 1 and 4 < cg <= 32 and kg >= 16:   # NHWC's kernel, on copies
                return cg <= (8 if winograd else 32)
            return (max(cg, kg) <= 16 and _nchw_planes_fit(geom)
                    and not (winograd and cg >= 16))
        if op == "forward" and geom.stride != (1, 1) and geom.groups == 1:
            return (cg <= 32 and kg <= 64 and geom.kernel_h * geom.kernel_w >= 9
                    and _nchw_planes_fit(geom))
        return geom.stride == (1, 1) and max(cg, kg) <= 16
    if geom.groups != 1:
        return False
    if op == "grad_weight":
        return cg <= (8 if winograd else 32)
    f25 = winograd and geom.kernel_h == geom.kernel_w == 5 and cg >= 16
    wide_taps = geom.kernel_h * geom.kernel_w >= 25 and cg <= 32 and kg >= 32 and not f25
    if op == "grad_input":   # the transposed forward on those kernels
        return not winograd and geom.stride == (1, 1) and cg >= 8 and kg <= 16
    return op == "forward" and (cg <= 16 and (not winograd or min(cg, kg) < 8) or wide_taps)


def _implicit_gemm(op, geom, winograd):
    """Single-group forwards that Winograd does not take (strided, dilated, other kernel
    shapes) run on direct's staged rows: an implicit GEMM, one broadcast input value per tap
    and channel against vectors of output channels in blocks of 14 pixels, with no columns
    gathered and nothing packed (NCHW through channels-last copies of each block's rows and
    sums, 12-15% of its time). Against im2col, NHWC: 3x3 stride 2 64 -> 128 at 56x56 4.1-4.3
    ms vs 5.4-6.0 (PyTorch 4.2-4.9), 128 -> 256 at 28x28 4.2-4.4 vs 5.0-5.7 (4.2-4.6), 64 ->
    128 at 112x112 8.5 vs 10.7 (8.8), 32 -> 64 at 32x32 0.87 vs 1.04; 256 channels dilated 2
    at 28x28 16.6 vs 18.4; 7x7 64 -> 64 at 28x28 16.3 vs 22.1. NCHW: 4.9 vs 7.0 (PyTorch
    5.7), 4.8 vs 5.4 (4.7), 9.5 vs 12.9 (13.4). Not where the weights pass 512 Ki (2 MB, so
    each block streams them from L3) or the output rows are shorter than a block: 256 -> 512
    at stride 2 to 7x7 6.4 vs 4.9. 1x1 layers keep im2col's single GEMM (256 -> 512 at
    stride 2, 28x28: 3.5 vs 2.8). NCHW stride-1 layers of up to 32 input channels stay on
    the plane kernels (_narrow_direct) or im2col, as do first layers: forward_nchw stages
    rows past 32 input channels, or past 4 where strided (32 -> 64 at stride 2 on 56x56
    0.61 ms against im2col's 1.08, PyTorch 0.73)."""
    weights = geom.kernel_h * geom.kernel_w * geom.in_channels * geom.out_channels
    if not (op == "forward" and geom.groups == 1 and not winograd
            and (geom.kernel_h, geom.kernel_w) != (1, 1) and weights <= 1 << 19
            and geom.out_w >= 14):
        return False
    strided = geom.stride != (1, 1)
    return geom.channels_last or (geom.in_channels > (4 if strided else 32)
                                  and geom.out_channels >= 16)


def choose(op, geom, dtype, candidates):
    """Name of the algorithm "auto" runs among `candidates` (those that accept the case)."""
    tuned = tuning.lookup(tuning.case_key(op, geom, dtype, _config.get_num_threads()))
    if tuned in candidates:
        return tuned
    rule = builtin_choice(op, geom)
    if rule in candidates:
        return rule
    return next(name for name in candidates if name != "reference") if len(candidates) > 1 else candidates[0]
