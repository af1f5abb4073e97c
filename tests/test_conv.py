"""Every compiled algorithm x dtype x layout agrees with the float64 reference."""
import numpy as np
import pytest

import fastconv
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import reference
from fastconv.testing import CONV_CASES, conv_inputs
from fastconv.testing.tolerances import assert_close

CASES = pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)


def _expected(case, x, weight, bias, data_format):
    """Reference results in float64 from the very same (possibly float32) inputs."""
    f64 = (lambda a: None if a is None else a.astype(np.float64))
    geom = conv2d_geometry(x.shape, weight.shape, data_format=data_format, **case.kwargs)
    out = reference.conv2d_forward(f64(x), f64(weight), f64(bias), geom)
    grad_output = np.random.default_rng(7).standard_normal(out.shape)
    return geom, out, grad_output


@CASES
def test_forward_matches_reference(case, algorithm, dtype, data_format):
    x, weight, bias = conv_inputs(case, dtype, data_format)
    geom, expected, _ = _expected(case, x, weight, bias, data_format)
    out = fastconv.conv2d(x, weight, bias, data_format=data_format, algorithm=algorithm, **case.kwargs)
    assert out.dtype == dtype and out.flags.c_contiguous
    assert_close(out, expected, dtype, geom.reduction_length, "forward")


@CASES
def test_backward_matches_reference(case, algorithm, dtype, data_format):
    x, weight, bias = conv_inputs(case, dtype, data_format)
    geom, _, grad_output = _expected(case, x, weight, bias, data_format)
    grad_input, grad_weight, grad_bias = fastconv.conv2d_backward(
        grad_output.astype(dtype), x, weight, data_format=data_format, algorithm=algorithm,
        **case.kwargs)
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)
    go32 = grad_output.astype(dtype).astype(np.float64)
    assert grad_input.dtype == grad_weight.dtype == grad_bias.dtype == dtype
    kg = geom.out_channels // geom.groups
    assert_close(grad_input, reference.conv2d_grad_input(go32, w64, geom), dtype,
                 kg * geom.kernel_h * geom.kernel_w, "grad_input")
    assert_close(grad_weight, reference.conv2d_grad_weight(go32, x64, geom), dtype,
                 geom.batch * geom.out_h * geom.out_w, "grad_weight")
    axes = (0, 1, 2) if data_format == "NHWC" else (0, 2, 3)
    assert_close(grad_bias, go32.sum(axis=axes), dtype, geom.batch * geom.out_h * geom.out_w,
                 "grad_bias")


@pytest.mark.parametrize("needs", [("input",), ("weight",), ("bias",), (), ("weight", "bias")])
def test_backward_computes_only_what_is_needed(needs, algorithm):
    x, weight, _ = conv_inputs(CONV_CASES[0])
    out = fastconv.conv2d(x, weight)
    grads = fastconv.conv2d_backward(np.ones_like(out), x, weight, needs=needs, algorithm=algorithm)
    for name, grad in zip(("input", "weight", "bias"), grads):
        assert (grad is not None) == (name in needs)


def test_auto_agrees_with_reference_on_every_case(dtype):
    for case in CONV_CASES:
        x, weight, bias = conv_inputs(case, dtype)
        geom, expected, _ = _expected(case, x, weight, bias, "NCHW")
        out = fastconv.conv2d(x, weight, bias, **case.kwargs)
        assert_close(out, expected, dtype, geom.reduction_length, case.id)


def _variants(x):
    """The same values in awkward memory layouts."""
    fortran = np.asfortranarray(x)
    doubled = np.repeat(x, 2, axis=-1)[..., ::2]
    reversed_twice = x[::-1].copy()[::-1]
    readonly = x.copy()
    readonly.flags.writeable = False
    big_endian = x.astype(x.dtype.newbyteorder(">"))
    return {"fortran": fortran, "strided": doubled, "negative_strides": reversed_twice,
            "readonly": readonly, "big_endian": big_endian}


@pytest.mark.parametrize("variant", ["fortran", "strided", "negative_strides", "readonly", "big_endian"])
def test_any_memory_layout_gives_the_same_result(variant, algorithm):
    case = CONV_CASES[1]
    x, weight, bias = conv_inputs(case, np.float32)
    expected = fastconv.conv2d(x, weight, bias, algorithm=algorithm, **case.kwargs)
    xv, wv = _variants(x)[variant], _variants(weight)[variant]
    np.testing.assert_array_equal(
        fastconv.conv2d(xv, wv, bias, algorithm=algorithm, **case.kwargs), expected)
    go = np.ones_like(expected)
    for got, want in zip(fastconv.conv2d_backward(_variants(go)[variant], xv, wv, algorithm=algorithm,
                                                  **case.kwargs),
                         fastconv.conv2d_backward(go, x, weight, algorithm=algorithm, **case.kwargs)):
        np.testing.assert_array_equal(got, want)


def test_misaligned_input(algorithm):
    x, weight, bias = conv_inputs(CONV_CASES[0], np.float32)
    raw = np.zeros(x.nbytes + 1, dtype=np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(x.shape)
    misaligned[...] = x
    assert not misaligned.flags.aligned
    np.testing.assert_array_equal(fastconv.conv2d(misaligned, weight, bias, algorithm=algorithm),
                                  fastconv.conv2d(x, weight, bias, algorithm=algorithm))


def test_inputs_are_not_modified(algorithm):
    x, weight, bias = conv_inputs(CONV_CASES[3])
    copies = [a.copy() for a in (x, weight, bias)]
    out = fastconv.conv2d(x, weight, bias, algorithm=algorithm, **CONV_CASES[3].kwargs)
    fastconv.conv2d_backward(np.ones_like(out), x, weight, algorithm=algorithm, **CONV_CASES[3].kwargs)
    for original, copy in zip((x, weight, bias), copies):
        np.testing.assert_array_equal(original, copy)


def test_empty_batch(algorithm, data_format):
    case = CONV_CASES[2]
    x, weight, bias = conv_inputs(case, np.float32, data_format)
    x = x[:0]
    out = fastconv.conv2d(x, weight, bias, data_format=data_format, algorithm=algorithm, **case.kwargs)
    expected = fastconv.conv2d_output_shape(x.shape, weight.shape, data_format=data_format, **case.kwargs)
    assert out.shape == expected and out.shape[0] == 0
    gi, gw, gb = fastconv.conv2d_backward(out, x, weight, data_format=data_format,
                                          algorithm=algorithm, **case.kwargs)
    assert gi.shape == x.shape and gw.shape == weight.shape and gb.shape == (weight.shape[-1 if data_format == "NHWC" else 0],)
    assert not gw.any() and not gb.any()


def test_repeated_calls_are_bitwise_identical(algorithm):
    case = CONV_CASES[14]
    x, weight, bias = conv_inputs(case, np.float32)
    first = fastconv.conv2d(x, weight, bias, algorithm=algorithm, **case.kwargs)
    go = np.ones_like(first)
    grads = fastconv.conv2d_backward(go, x, weight, algorithm=algorithm, **case.kwargs)
    for _ in range(3):
        np.testing.assert_array_equal(fastconv.conv2d(x, weight, bias, algorithm=algorithm, **case.kwargs), first)
        for got, want in zip(fastconv.conv2d_backward(go, x, weight, algorithm=algorithm, **case.kwargs), grads):
            np.testing.assert_array_equal(got, want)


def test_single_thread_matches_multithreaded(algorithm, monkeypatch):
    case = CONV_CASES[5]
    x, weight, bias = conv_inputs(case, np.float64)
    many = fastconv.conv2d(x, weight, bias, algorithm=algorithm, **case.kwargs)
    monkeypatch.setattr(fastconv._config, "get_num_threads", lambda: 1)
    one = fastconv.conv2d(x, weight, bias, algorithm=algorithm, **case.kwargs)
    np.testing.assert_allclose(one, many, rtol=1e-12, atol=1e-12)


def test_small_workspace_gives_the_same_result(monkeypatch):
    case = CONV_CASES[1]
    x, weight, bias = conv_inputs(case, np.float64)
    big = fastconv.conv2d(x, weight, bias, algorithm="im2col", **case.kwargs)
    big_grads = fastconv.conv2d_backward(np.ones_like(big), x, weight, algorithm="im2col", **case.kwargs)
    monkeypatch.setattr(fastconv._config, "_workspace_limit", 64)  # forces one row per tile
    np.testing.assert_allclose(fastconv.conv2d(x, weight, bias, algorithm="im2col", **case.kwargs),
                               big, rtol=1e-12, atol=1e-12)
    for got, want in zip(fastconv.conv2d_backward(np.ones_like(big), x, weight, algorithm="im2col",
                                                  **case.kwargs), big_grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
