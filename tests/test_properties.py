"""Hypothesis: random shapes and parameters, every algorithm against the reference."""
import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import fastconv
from fastconv._geometry import conv2d_geometry, pool2d_geometry
from fastconv.algorithms import reference
from fastconv.testing.tolerances import assert_close

ALGORITHMS = [a for a in fastconv.list_algorithms() if a != "reference"]


@st.composite
def conv_problems(draw):
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.one_of(
        st.sampled_from(["valid", "same"]),
        st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                  st.tuples(st.integers(0, 3), st.integers(0, 3)))))
    problem = dict(
        batch=draw(st.integers(0, 3)), channels=cg * groups, out_channels=kg * groups,
        height=draw(st.integers(1, 10)), width=draw(st.integers(1, 10)), kernel=(kh, kw),
        kwargs=dict(stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), padding=padding,
                    dilation=(dh, dw), groups=groups),
        data_format=draw(st.sampled_from(["NCHW", "NHWC"])),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        algorithm=draw(st.sampled_from(ALGORITHMS)),
        seed=draw(st.integers(0, 2**16)))
    return problem


@given(conv_problems())
def test_conv2d_random_problems(p):
    n, c, h, w, k = p["batch"], p["channels"], p["height"], p["width"], p["out_channels"]
    layout = p["data_format"]
    x_shape = (n, h, w, c) if layout == "NHWC" else (n, c, h, w)
    cg = c // p["kwargs"]["groups"]
    w_shape = (*p["kernel"], cg, k) if layout == "NHWC" else (k, cg, *p["kernel"])
    try:
        geom = conv2d_geometry(x_shape, w_shape, data_format=layout, **p["kwargs"])
    except ValueError:
        assume(False)  # kernel larger than the padded input: rejected, covered elsewhere
    rng = np.random.default_rng(p["seed"])
    x = rng.standard_normal(x_shape).astype(p["dtype"])
    weight = rng.standard_normal(w_shape).astype(p["dtype"])
    bias = rng.standard_normal(k).astype(p["dtype"])
    kwargs = dict(p["kwargs"], data_format=layout, algorithm=p["algorithm"])
    out = fastconv.conv2d(x, weight, bias, **kwargs)
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)
    assert_close(out, reference.conv2d_forward(x64, w64, bias.astype(np.float64), geom),
                 p["dtype"], geom.reduction_length, "forward")
    go = rng.standard_normal(out.shape).astype(p["dtype"])
    gx, gw, _ = fastconv.conv2d_backward(go, x, weight, **kwargs)
    go64 = go.astype(np.float64)
    assert_close(gx, reference.conv2d_grad_input(go64, w64, geom), p["dtype"],
                 k * geom.kernel_h * geom.kernel_w, "grad_input")
    assert_close(gw, reference.conv2d_grad_weight(go64, x64, geom), p["dtype"],
                 max(n, 1) * geom.out_h * geom.out_w, "grad_weight")


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9),
       st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2), st.integers(1, 2), st.booleans(), st.sampled_from(["NCHW", "NHWC"]),
       st.integers(0, 2**16))
def test_pooling_random_problems(n, c, h, w, kh, kw, sh, sw, pad, dil, ceil_mode, layout, seed):
    assume(pad <= min(kh, kw) // 2)
    shape = (n, h, w, c) if layout == "NHWC" else (n, c, h, w)
    try:
        geom = pool2d_geometry(shape, (kh, kw), (sh, sw), pad, dil, ceil_mode, layout)
    except ValueError:
        assume(False)
    x = np.random.default_rng(seed).integers(-3, 4, size=shape).astype(np.float64)  # many ties
    kw_ = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=pad, ceil_mode=ceil_mode, data_format=layout)
    out, idx = fastconv.max_pool2d(x, dilation=dil, return_indices=True, **kw_)
    ref_out, ref_idx = reference.max_pool2d_forward(x, geom)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)
    if dil == 1:
        np.testing.assert_allclose(fastconv.avg_pool2d(x, **kw_), reference.avg_pool2d_forward(x, geom),
                                   rtol=1e-13, atol=1e-13)
        go = np.ones(out.shape)
        np.testing.assert_allclose(fastconv.avg_pool2d_backward(go, x, **kw_),
                                   reference.avg_pool2d_backward(go, geom), rtol=1e-13, atol=1e-13)
