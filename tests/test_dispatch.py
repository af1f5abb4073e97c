"""Choosing algorithms: defaults, context managers, declining and falling back."""
import dataclasses

import numpy as np
import pytest

import fastconv
from fastconv import algorithms
from fastconv._geometry import conv2d_geometry
from fastconv.testing import CONV_CASES, conv_inputs

CASE = CONV_CASES[1]


def _geom(case=CASE, data_format="NCHW"):
    """The case's geometry, from its shapes alone (no arrays: some cases here are large)."""
    n, c, h, w, k = case.batch, case.in_channels, case.height, case.width, case.out_channels
    (kh, kw), cg = case.kernel, case.in_channels // case.groups
    if data_format == "NHWC":
        shapes = (n, h, w, c), (kh, kw, cg, k)
    else:
        shapes = (n, c, h, w), (k, cg, kh, kw)
    return conv2d_geometry(*shapes, data_format=data_format, **case.kwargs)


def test_default_algorithm_and_context_manager():
    assert fastconv.get_default_algorithm() == "auto"
    with fastconv.use_algorithm("direct"):
        assert fastconv.get_default_algorithm() == "direct"
        assert algorithms.select("forward", _geom(), np.float32).name == "direct"
        with fastconv.use_algorithm("reference"):
            assert algorithms.select("grad_weight", _geom(), np.float32).name == "reference"
        assert fastconv.get_default_algorithm() == "direct"
    assert fastconv.get_default_algorithm() == "auto"


def test_set_default_algorithm_changes_calls_without_algorithm(monkeypatch):
    calls = []
    original = algorithms._REGISTRY["reference"].forward
    monkeypatch.setattr(algorithms._REGISTRY["reference"], "forward",
                        lambda *a: calls.append(1) or original(*a))
    x, w, b = conv_inputs(CASE)
    fastconv.set_default_algorithm("reference")
    try:
        fastconv.conv2d(x, w, b, **CASE.kwargs)
    finally:
        fastconv.set_default_algorithm("auto")
    assert calls == [1]


@pytest.mark.parametrize("name", ["fft", "", None, 3, "AUTO"])
def test_unknown_default_is_rejected(name):
    with pytest.raises(ValueError, match="Received: name="):
        fastconv.set_default_algorithm(name)
    assert fastconv.get_default_algorithm() == "auto"


def test_context_manager_restores_after_an_exception():
    with pytest.raises(RuntimeError):
        with fastconv.use_algorithm("direct"):
            raise RuntimeError
    assert fastconv.get_default_algorithm() == "auto"


def test_declined_algorithm_falls_back_to_a_correct_one(monkeypatch):
    monkeypatch.setattr(type(algorithms._REGISTRY["im2col"]), "supports", lambda self, g, d: False)
    x, w, b = conv_inputs(CASE, np.float64)
    assert algorithms.select("forward", _geom(), np.float64, "im2col").name != "im2col"
    np.testing.assert_allclose(fastconv.conv2d(x, w, b, algorithm="im2col", **CASE.kwargs),
                               fastconv.conv2d(x, w, b, algorithm="reference", **CASE.kwargs), rtol=1e-12)


def test_im2col_declines_gemm_sizes_beyond_32_bits():
    huge = conv2d_geometry((1, 2**16, 2**16, 2**16), (4, 2**16, 2**15 + 1, 1))
    assert not algorithms._REGISTRY["im2col"].supports(huge, np.float32)
    assert algorithms._REGISTRY["im2col"].supports(_geom(), np.float32)


@pytest.mark.parametrize("op", algorithms.OPS)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_builtin_rule(op, data_format, monkeypatch):
    monkeypatch.setattr(algorithms.auto._config, "get_num_threads", lambda: 2)
    choose = algorithms.auto.builtin_choice
    depthwise = next(c for c in CONV_CASES if c.id == "depthwise")
    wide = dataclasses.replace(next(c for c in CONV_CASES if c.id == "wide_channels"), batch=8)
    narrow = next(c for c in CONV_CASES if c.id == "single_channel_5x5")
    assert choose(op, _geom(depthwise, data_format)) == "direct"
    assert choose(op, _geom(wide, data_format)) == "winograd"     # 3x3 stride 1
    # but fewer pixels (here 25) than threads x output channels: one GEMM on all cores
    assert choose(op, _geom(dataclasses.replace(wide, batch=1), data_format)) == "im2col"
    strided = dataclasses.replace(wide, stride=2)
    assert choose(op, _geom(strided, data_format)) == "im2col"
    # a first layer: direct, but for the input gradient (col2im)
    expected = "im2col" if op == "grad_input" else "direct"
    assert choose(op, _geom(narrow, data_format)) == expected
    # LeNet's 6 -> 16 5x5: NCHW's plane kernels; in NHWC col2im for the input gradient
    # (whose GEMM has 6 rows) and the narrow direct kernels for the weight gradient and the
    # forward
    lenet = dataclasses.replace(narrow, batch=64, in_channels=6, out_channels=16, padding=0)
    expected = {"grad_input": "im2col", "grad_weight": "direct", "forward": "direct"}
    assert choose(op, _geom(lenet, data_format)) == (
        expected[op] if data_format == "NHWC" else "direct")
    # with 32 outputs, Winograd in NCHW (but for col2im's input gradient and the weight
    # gradient, on NHWC's kernel through channels-last copies)
    lenet32 = dataclasses.replace(lenet, out_channels=32)
    if data_format == "NCHW":
        assert choose(op, _geom(lenet32, data_format)) == {
            "grad_input": "im2col", "grad_weight": "direct", "forward": "winograd"}[op]
    # cifar_res20's 16 -> 16 3x3: NCHW's plane kernels but for the weight gradient (16
    # input channels: Winograd); Winograd in NHWC
    cifar = dataclasses.replace(lenet, in_channels=16, kernel=(3, 3), padding=1)
    expected = "direct" if data_format == "NCHW" and op != "grad_weight" else "winograd"
    assert choose(op, _geom(cifar, data_format)) == expected
    # with 8 input channels NCHW's weight gradient stays on the planes
    if data_format == "NCHW":
        assert choose(op, _geom(dataclasses.replace(cifar, in_channels=8), data_format)) == "direct"
    # narrow and dilated: direct
    dilated = dataclasses.replace(cifar, dilation=2, padding=2)
    assert choose(op, _geom(dilated, data_format)) == "direct"
    # and strided: NHWC's narrow kernels, NCHW's forward and weight gradient on polyphase
    # planes
    strided16 = dataclasses.replace(cifar, stride=2)
    expected = "im2col" if op == "grad_input" else "direct"
    assert choose(op, _geom(strided16, data_format)) == expected
    # NCHW strided forwards of 5 or more input channels: direct's staged rows (below), wider
    # too, but not 1x1 ones
    strided32 = dataclasses.replace(cifar, batch=32, in_channels=32, out_channels=64, stride=2,
                                    height=32, width=32)
    if data_format == "NCHW":
        # (the weight gradient: NHWC's kernel through channels-last copies)
        assert choose(op, _geom(strided32, data_format)) == (
            "im2col" if op == "grad_input" else "direct")
        for wider in (dict(out_channels=128), dict(height=56, width=56), dict(in_channels=64)):
            assert choose("forward", _geom(dataclasses.replace(strided32, **wider), data_format)) == "direct"
        assert choose("forward", _geom(dataclasses.replace(strided32, kernel=(1, 1), padding=0),
                                       data_format)) == "im2col"
    # single-group forwards that Winograd does not take: direct's implicit GEMM on staged
    # rows, while the weights stay within 512 Ki and the output rows fill a block of 14
    # pixels (NCHW past 32 input channels; NHWC's weight gradient: the narrow kernels up to
    # 32 input channels)
    if data_format == "NHWC":
        narrow_gw = "direct" if op == "grad_weight" else "im2col"
        assert choose(op, _geom(strided32, data_format)) == (
            "direct" if op == "forward" else narrow_gw)
    resnet_down = dataclasses.replace(strided32, in_channels=128, out_channels=256,
                                      height=28, width=28)
    assert choose(op, _geom(resnet_down, data_format)) == (
        "direct" if op == "forward" else "im2col")
    for beyond in (dict(height=24, width=24),                # rows of 12 pixels
                   dict(in_channels=256, out_channels=512)):  # 1152 Ki weights
        assert choose(op, _geom(dataclasses.replace(resnet_down, **beyond), data_format)) == "im2col"
    # fmnist_conv2 (5x5, 32 -> 64): Winograd F(2x2, 5x5); with 8 input channels (Winograd on
    # 3x3 sub-kernels) NHWC's forward and both layouts' weight gradients run direct
    fmnist2 = dataclasses.replace(lenet, in_channels=32, out_channels=64, padding=2)
    assert choose(op, _geom(fmnist2, data_format)) == "winograd"
    expected = "direct" if op == "grad_weight" or data_format == "NHWC" and op == "forward" else "winograd"
    assert choose(op, _geom(dataclasses.replace(fmnist2, in_channels=8), data_format)) == expected
    # 1x1 layers: the pointwise kernels while the weights stay in cache, but for the weight
    # gradient; else im2col
    pointwise = dataclasses.replace(lenet, in_channels=8, kernel=(1, 1))
    expected = "im2col" if op == "grad_weight" else "direct"
    assert choose(op, _geom(pointwise, data_format)) == expected
    resnet_1x1 = dataclasses.replace(pointwise, in_channels=64, out_channels=256, height=56,
                                     width=56)
    assert choose(op, _geom(resnet_1x1, data_format)) == expected
    # NCHW's kernels want planes of 4 pixels or more per channel summed over: at 14x14, 64
    # channels on both sides of the sum go to im2col
    small_planes = dataclasses.replace(resnet_1x1, height=14, width=14)
    assert choose(op, _geom(small_planes, data_format)) == (
        "im2col" if data_format == "NCHW" else expected)
    assert choose(op, _geom(dataclasses.replace(small_planes, in_channels=32, out_channels=32),
                            data_format)) == expected
    wide_1x1 = dataclasses.replace(resnet_1x1, in_channels=512)    # NHWC's forward takes 128 Ki weights
    assert choose(op, _geom(wide_1x1, data_format)) == (
        "direct" if data_format == "NHWC" and op == "forward" else "im2col")
    assert choose(op, _geom(dataclasses.replace(resnet_1x1, stride=2), data_format)) == "im2col"
    # NHWC's input gradient wants 8 or more input channels
    assert choose(op, _geom(dataclasses.replace(resnet_1x1, in_channels=5), data_format)) == (
        "im2col" if op == "grad_input" and data_format == "NHWC" else expected)
    # an RGB first layer: direct but for the input gradient, ...
    rgb = dataclasses.replace(narrow, in_channels=3)
    expected = "im2col" if op == "grad_input" else "direct"
    assert choose(op, _geom(rgb, data_format)) == expected
    # ... and for NCHW's weight gradient where the staged planes would not fit (a 7x7 stem,
    # VGG's first layer), whose forwards take bands of the planes
    stem = dataclasses.replace(rgb, batch=8, height=224, width=224, kernel=(7, 7), stride=2,
                               padding=3)
    vgg1 = dataclasses.replace(stem, kernel=(3, 3), stride=1, padding=1)
    expected = "im2col" if op == "grad_input" or (
        data_format == "NCHW" and op == "grad_weight") else "direct"
    assert choose(op, _geom(stem, data_format)) == expected
    assert choose(op, _geom(vgg1, data_format)) == expected
    # strided first layers: direct (NCHW on polyphase planes)
    expected = "im2col" if op == "grad_input" else "direct"
    assert choose(op, _geom(dataclasses.replace(narrow, stride=2), data_format)) == expected


def test_winograd_takes_only_3x3_and_5x5_stride_1_undilated():
    winograd = algorithms._REGISTRY["winograd"]
    wide = next(c for c in CONV_CASES if c.id == "wide_channels")
    for kernel in ((3, 3), (5, 5), (3, 5)):
        assert winograd.supports(_geom(dataclasses.replace(wide, kernel=kernel, padding=0)),
                                 np.float32)
    for change in (dict(stride=2), dict(dilation=2, padding=2), dict(kernel=(7, 7), padding=3),
                   dict(kernel=(1, 1), padding=0)):
        assert not winograd.supports(_geom(dataclasses.replace(wide, **change)), np.float32)
    # a call on such a case still works: the dispatcher falls back
    case = dataclasses.replace(wide, stride=2)
    x, w, b = conv_inputs(case, np.float64)
    np.testing.assert_allclose(fastconv.conv2d(x, w, b, algorithm="winograd", **case.kwargs),
                               fastconv.conv2d(x, w, b, algorithm="reference", **case.kwargs),
                               rtol=1e-12, atol=1e-12)
