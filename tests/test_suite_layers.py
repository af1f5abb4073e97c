"""The benchmark's layer suite, checked: every algorithm agrees with the reference on each
suite layer (batch 1), so what `fastconv bench` measures is what is tested."""
import dataclasses

import numpy as np
import pytest

import fastconv
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import reference
from fastconv.testing import SUITE_LAYERS, conv_inputs
from fastconv.testing.tolerances import assert_close

ALGORITHMS = [a for a in fastconv.list_algorithms() if a != "reference"]


@pytest.fixture(scope="module", params=SUITE_LAYERS, ids=lambda c: c.id)
def layer(request):
    case = dataclasses.replace(request.param, batch=1)
    x, w, b = conv_inputs(case, np.float32)
    geom = conv2d_geometry(x.shape, w.shape, **case.kwargs)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    out = reference.conv2d_forward(x64, w64, b.astype(np.float64), geom)
    go = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    go64 = go.astype(np.float64)
    expected = (out, reference.conv2d_grad_input(go64, w64, geom), reference.conv2d_grad_weight(go64, x64, geom))
    return case, geom, (x, w, b, go), expected


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_suite_layer_matches_reference(layer, algorithm, data_format):
    case, geom, (x, w, b, go), (out, gx, gw) = layer
    if data_format == "NHWC":
        x, go = x.transpose(0, 2, 3, 1), go.transpose(0, 2, 3, 1)
        w = w.transpose(2, 3, 1, 0)
    kw = dict(case.kwargs, data_format=data_format, algorithm=algorithm)
    got = fastconv.conv2d(x, w, b, **kw)
    got_gx, got_gw, _ = fastconv.conv2d_backward(go, x, w, needs=("input", "weight"), **kw)
    if data_format == "NHWC":
        got, got_gx = got.transpose(0, 3, 1, 2), got_gx.transpose(0, 3, 1, 2)
        got_gw = got_gw.transpose(3, 2, 0, 1)
    kg = geom.out_channels // geom.groups
    assert_close(got, out, np.float32, geom.reduction_length, "forward")
    assert_close(got_gx, gx, np.float32, kg * geom.kernel_h * geom.kernel_w, "grad_input")
    assert_close(got_gw, gw, np.float32, geom.out_h * geom.out_w, "grad_weight")
