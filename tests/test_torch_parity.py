"""PyTorch as an independent second oracle (skipped when torch is not installed)."""
import numpy as np
import pytest

import fastconv
from fastconv.testing import CONV_CASES, POOL_CASES, conv_inputs, pool_input
from fastconv.testing.tolerances import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_conv(case, x, weight, bias, grad_output):
    """conv2d and its gradients in torch; asymmetric or "same" padding via F.pad."""
    geom = fastconv._geometry.conv2d_geometry(x.shape, weight.shape, **case.kwargs)
    (top, bottom), (left, right) = geom.padding
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(weight).requires_grad_()
    bt = None if bias is None else torch.from_numpy(bias).requires_grad_()
    out = F.conv2d(F.pad(xt, (left, right, top, bottom)), wt, bt, case.stride, 0, case.dilation,
                   case.groups)
    out.backward(torch.from_numpy(grad_output))
    return geom, out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_conv2d_matches_torch(case, algorithm, data_format):
    x, weight, bias = conv_inputs(case, np.float64)
    geom, out_t, gx_t, gw_t = _torch_conv(
        case, x, weight, bias,
        np.random.default_rng(3).standard_normal(fastconv.conv2d_output_shape(x.shape, weight.shape, **case.kwargs)))
    grad_output = np.random.default_rng(3).standard_normal(out_t.shape)
    if data_format == "NHWC":
        x, weight = x.transpose(0, 2, 3, 1), weight.transpose(2, 3, 1, 0)
        grad_output = grad_output.transpose(0, 2, 3, 1)
    out = fastconv.conv2d(x, weight, bias, data_format=data_format, algorithm=algorithm, **case.kwargs)
    gx, gw, _ = fastconv.conv2d_backward(grad_output, x, weight, data_format=data_format,
                                         algorithm=algorithm, **case.kwargs)
    if data_format == "NHWC":
        out, gx, gw = out.transpose(0, 3, 1, 2), gx.transpose(0, 3, 1, 2), gw.transpose(3, 2, 0, 1)
    assert_close(out, out_t, np.float64, geom.reduction_length, "forward")
    assert_close(gx, gx_t, np.float64, geom.out_channels * geom.kernel_h * geom.kernel_w, "grad_input")
    assert_close(gw, gw_t, np.float64, geom.batch * geom.out_h * geom.out_w, "grad_weight")


@pytest.mark.parametrize("case", [c for c in POOL_CASES if not isinstance(c.padding, str)],
                         ids=lambda c: c.id)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_max_pool2d_matches_torch(case, data_format):
    x = pool_input(case, np.float64)
    x[0, 0, 0, :2] = x[0, 0, 1, 1]  # ties: the first maximum wins
    xt = torch.from_numpy(x).requires_grad_()
    out_t, idx_t = F.max_pool2d(xt, case.kernel, case.stride, case.padding, case.dilation,
                                case.ceil_mode, return_indices=True)
    go = np.random.default_rng(5).standard_normal(out_t.shape)
    out_t.backward(torch.from_numpy(go))
    to = (lambda a: a.transpose(0, 2, 3, 1)) if data_format == "NHWC" else (lambda a: a)
    back = (lambda a: a.transpose(0, 3, 1, 2)) if data_format == "NHWC" else (lambda a: a)
    kw = dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding,
              dilation=case.dilation, ceil_mode=case.ceil_mode, data_format=data_format)
    out, idx = fastconv.max_pool2d(to(x), return_indices=True, **kw)
    np.testing.assert_array_equal(back(out), out_t.detach().numpy())
    np.testing.assert_array_equal(back(idx), idx_t.numpy())
    grad = fastconv.max_pool2d_backward(to(go), to(x), idx, **kw)
    np.testing.assert_allclose(back(grad), xt.grad.numpy(), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("case", [c for c in POOL_CASES if not isinstance(c.padding, str) and c.dilation == 1],
                         ids=lambda c: c.id)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor_override", [None, 5])
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
def test_avg_pool2d_matches_torch(case, count_include_pad, divisor_override, data_format):
    x = pool_input(case, np.float64)
    xt = torch.from_numpy(x).requires_grad_()
    out_t = F.avg_pool2d(xt, case.kernel, case.stride, case.padding, case.ceil_mode,
                         count_include_pad, divisor_override)
    go = np.random.default_rng(5).standard_normal(out_t.shape)
    out_t.backward(torch.from_numpy(go))
    to = (lambda a: a.transpose(0, 2, 3, 1)) if data_format == "NHWC" else (lambda a: a)
    back = (lambda a: a.transpose(0, 3, 1, 2)) if data_format == "NHWC" else (lambda a: a)
    kw = dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding,
              ceil_mode=case.ceil_mode, count_include_pad=count_include_pad,
              divisor_override=divisor_override, data_format=data_format)
    np.testing.assert_allclose(back(fastconv.avg_pool2d(to(x), **kw)), out_t.detach().numpy(),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(back(fastconv.avg_pool2d_backward(to(go), to(x), **kw)),
                               xt.grad.numpy(), rtol=1e-13, atol=1e-13)


def test_max_pool2d_nan_and_inf_follow_torch():
    x = np.array([[[[1.0, np.nan, 3.0, np.nan], [-np.inf, -np.inf, np.inf, 2.0],
                    [-np.inf, -np.inf, 1.0, np.nan], [-np.inf, -np.inf, 0.0, 5.0]]]])
    out_t, idx_t = F.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    out, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(out, out_t.numpy())
    np.testing.assert_array_equal(idx, idx_t.numpy())


def test_global_avg_pool2d_matches_torch():
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 6))
    np.testing.assert_allclose(fastconv.global_avg_pool2d(x, keepdims=True),
                               F.adaptive_avg_pool2d(torch.from_numpy(x), 1).numpy(), rtol=1e-14)
