"""fastconv.torch: the torch.nn layers and functions on fastconv's kernels, against torch itself."""
import inspect
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv.testing import CONV_CASES, POOL_CASES
from fastconv.testing.tolerances import assert_close

torch = pytest.importorskip("torch")
import fastconv.torch as ft  # noqa: E402
from fastconv.torch import functional as fF  # noqa: E402

nn = torch.nn
FORMATS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def _torch_padding(case):
    """The case's padding as torch.nn.Conv2d takes it, or None when torch cannot express it."""
    if isinstance(case.padding, str):
        strided = case.stride != 1 and case.stride != (1, 1)
        return None if case.padding == "same" and strided else case.padding
    if isinstance(case.padding, tuple) and isinstance(case.padding[0], tuple):
        return None
    return case.padding


TORCH_CONV_CASES = [c for c in CONV_CASES if _torch_padding(c) is not None]


def _input(shape, memory_format, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype).contiguous(memory_format=memory_format)
    return x.requires_grad_()


def _twin(torch_module):
    """A fastconv copy of a torch module (same parameters, by value)."""
    return ft.convert(torch_module)


def _run(module, x, grad_output):
    x = x.detach().clone().requires_grad_()
    out = module(x)
    out.backward(grad_output)
    return out, x.grad


# --------------------------------------------------------------------------- parity with torch.nn
@pytest.mark.parametrize("case", TORCH_CONV_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's own, on its side
def test_conv2d_matches_torch(case, fmt, algorithm):
    torch.manual_seed(0)
    reference = nn.Conv2d(case.in_channels, case.out_channels, case.kernel, case.stride,
                          _torch_padding(case), case.dilation, case.groups, case.bias, dtype=torch.float64)
    ours = ft.convert(reference, algorithm=algorithm)
    x = _input((case.batch, case.in_channels, case.height, case.width), FORMATS[fmt])
    out_t = reference(x)
    grad_output = torch.randn_like(out_t)
    out_t, gx_t = _run(reference, x, grad_output)
    out, gx = _run(ours, x, grad_output)
    assert out.stride() == out_t.stride()  # the memory format torch gives
    kh, kw = case.kernel
    length = case.in_channels // case.groups * kh * kw
    assert_close(out.detach().numpy(), out_t.detach().numpy(), np.float64, length, "forward")
    assert_close(gx.numpy(), gx_t.numpy(), np.float64, case.out_channels * kh * kw, "grad_input")
    assert_close(ours.weight.grad.numpy(), reference.weight.grad.numpy(), np.float64,
                 out.numel() // case.out_channels, "grad_weight")
    if case.bias:
        assert_close(ours.bias.grad.numpy(), reference.bias.grad.numpy(), np.float64,
                     out.numel() // case.out_channels, "grad_bias")


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_conv2d_padding_modes_match_torch(padding_mode, fmt):
    torch.manual_seed(1)
    reference = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), groups=2,
                          padding_mode=padding_mode, dtype=torch.float64)
    ours = _twin(reference)
    x = _input((2, 4, 7, 6), FORMATS[fmt])
    grad_output = torch.randn_like(reference(x))
    (out_t, gx_t), (out, gx) = _run(reference, x, grad_output), _run(ours, x, grad_output)
    torch.testing.assert_close(out, out_t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, gx_t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fmt", FORMATS)
def test_conv2d_float32_matches_torch(fmt):
    torch.manual_seed(2)
    reference = nn.Conv2d(8, 12, 3, stride=2, padding=1)
    ours = _twin(reference)
    x = _input((3, 8, 11, 10), FORMATS[fmt], torch.float32)
    grad_output = torch.randn_like(reference(x))
    (out_t, gx_t), (out, gx) = _run(reference, x, grad_output), _run(ours, x, grad_output)
    assert out.dtype == gx.dtype == ours.weight.grad.dtype == torch.float32
    torch.testing.assert_close(out, out_t, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, gx_t, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)


TORCH_POOL_CASES = [c for c in POOL_CASES if not isinstance(c.padding, str)]


@pytest.mark.parametrize("case", TORCH_POOL_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("fmt", FORMATS)
def test_max_pool2d_matches_torch(case, fmt):
    args = (case.kernel, case.stride, case.padding, case.dilation, True, case.ceil_mode)
    reference, ours = nn.MaxPool2d(*args), ft.MaxPool2d(*args)
    x = _input((case.batch, case.channels, case.height, case.width), FORMATS[fmt])
    with torch.no_grad():
        x[0, 0, 0, :2] = x[0, 0, 1, 1]  # ties: the first maximum wins, as in torch
    x = x.detach().contiguous(memory_format=FORMATS[fmt])
    (out_t, idx_t), (out, idx) = reference(x), ours(x)
    assert out.is_contiguous(memory_format=FORMATS[fmt])
    torch.testing.assert_close(out, out_t, rtol=0, atol=0)
    torch.testing.assert_close(idx, idx_t, rtol=0, atol=0)
    grad_output = torch.randn_like(out_t)
    gx_t = _run(lambda t: reference(t)[0], x, grad_output)[1]
    gx = _run(lambda t: ours(t)[0], x, grad_output)[1]
    torch.testing.assert_close(gx, gx_t, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("case", [c for c in TORCH_POOL_CASES if c.dilation == 1], ids=lambda c: c.id)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor_override", [None, 5])
@pytest.mark.parametrize("fmt", FORMATS)
def test_avg_pool2d_matches_torch(case, count_include_pad, divisor_override, fmt):
    args = (case.kernel, case.stride, case.padding, case.ceil_mode, count_include_pad, divisor_override)
    reference, ours = nn.AvgPool2d(*args), ft.AvgPool2d(*args)
    x = _input((case.batch, case.channels, case.height, case.width), FORMATS[fmt])
    grad_output = torch.randn_like(reference(x))
    (out_t, gx_t), (out, gx) = _run(reference, x, grad_output), _run(ours, x, grad_output)
    assert out.is_contiguous(memory_format=FORMATS[fmt])
    torch.testing.assert_close(out, out_t, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(gx, gx_t, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("output_size", [1, (1, 1)])
@pytest.mark.parametrize("fmt", FORMATS)
def test_adaptive_avg_pool2d_matches_torch(output_size, fmt):
    reference, ours = nn.AdaptiveAvgPool2d(output_size), ft.AdaptiveAvgPool2d(output_size)
    x = _input((3, 5, 4, 6), FORMATS[fmt])
    grad_output = torch.randn(3, 5, 1, 1, dtype=torch.float64)
    (out_t, gx_t), (out, gx) = _run(reference, x, grad_output), _run(ours, x, grad_output)
    torch.testing.assert_close(out, out_t, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(gx, gx_t, rtol=1e-14, atol=1e-14)


def test_functional_matches_torch_functional_and_unbatched_input():
    F = torch.nn.functional
    x = _input((3, 9, 8), torch.contiguous_format).detach()
    w = torch.randn(6, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    torch.testing.assert_close(fF.conv2d(x, w, b, 1, "same", 2), F.conv2d(x, w, b, 1, "same", 2))
    torch.testing.assert_close(fF.conv2d(x, w, None, 2, "valid"), F.conv2d(x, w, None, 2, "valid"))
    torch.testing.assert_close(fF.max_pool2d(x, 3, 2, 1, return_indices=True),
                               F.max_pool2d(x, 3, 2, 1, return_indices=True))
    torch.testing.assert_close(fF.avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(x, 2, ceil_mode=True))
    torch.testing.assert_close(fF.adaptive_avg_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1))


def test_non_contiguous_input_and_empty_batch():
    torch.manual_seed(3)
    reference = nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64)
    ours = _twin(reference)
    x = torch.randn(2, 3, 9, 12, dtype=torch.float64)[:, :, 1:, ::2]  # contiguous in no format
    torch.testing.assert_close(ours(x), reference(x))
    empty = torch.zeros(0, 3, 5, 5, dtype=torch.float64)
    assert ours(empty).shape == reference(empty).shape == (0, 4, 5, 5)


def test_in_place_op_on_output_is_allowed_and_correct():
    torch.manual_seed(4)
    reference = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                              nn.ReLU(inplace=True)).double()
    ours = ft.convert(reference)
    x = _input((2, 3, 8, 8), torch.channels_last)
    grad_output = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    (out_t, gx_t), (out, gx) = _run(reference, x, grad_output), _run(ours, x, grad_output)
    torch.testing.assert_close(out, out_t)
    torch.testing.assert_close(gx, gx_t)


# --------------------------------------------------------------------------- gradcheck (float64)
@pytest.mark.parametrize("fmt", FORMATS)
def test_gradcheck_conv2d(fmt):
    x = _input((2, 4, 6, 5), FORMATS[fmt], seed=1)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: fF.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2), (x, w, b))


@pytest.mark.parametrize("fmt", FORMATS)
def test_gradcheck_pooling(fmt):
    x = _input((2, 3, 7, 6), FORMATS[fmt], seed=2)
    assert torch.autograd.gradcheck(lambda x: fF.max_pool2d(x, 3, 2, 1, ceil_mode=True), (x,))
    assert torch.autograd.gradcheck(lambda x: fF.max_pool2d(x, 2, 1, dilation=2), (x,))
    assert torch.autograd.gradcheck(
        lambda x: fF.avg_pool2d(x, (3, 2), (2, 2), 1, ceil_mode=True, count_include_pad=False), (x,))
    assert torch.autograd.gradcheck(lambda x: fF.avg_pool2d(x, 2, divisor_override=3), (x,))
    assert torch.autograd.gradcheck(lambda x: fF.adaptive_avg_pool2d(x, 1), (x,))


# --------------------------------------------------------------------------- models
def _small_cnn():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect", groups=2), nn.ReLU(),
        nn.AvgPool2d(2, ceil_mode=True), nn.Conv2d(6, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 3),
    ).double()


def _train(model, x, y, steps=6):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("fmt", FORMATS)
def test_training_matches_torch_loss_curve(fmt):
    torch.manual_seed(5)
    model = _small_cnn()
    converted = ft.convert(model)
    assert sum(type(m).__module__ == "fastconv.torch.modules" for m in converted.modules()) == 6
    x = torch.randn(8, 2, 10, 10, dtype=torch.float64).contiguous(memory_format=FORMATS[fmt])
    y = torch.randint(0, 3, (8,))
    expected, losses = _train(model, x, y), _train(converted, x, y)
    assert expected[-1] < expected[0]  # the curve being compared actually moves
    np.testing.assert_allclose(losses, expected, rtol=1e-11)
    for (name, p), q in zip(converted.named_parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)


def test_state_dict_round_trips_with_plain_torch():
    torch.manual_seed(6)
    converted = ft.convert(_small_cnn())
    plain = _small_cnn()  # a different initialisation
    plain.load_state_dict(converted.state_dict())
    x = torch.randn(4, 2, 10, 10, dtype=torch.float64)
    torch.testing.assert_close(plain(x), converted(x))
    fresh = ft.convert(_small_cnn())
    fresh.load_state_dict(plain.state_dict())
    torch.testing.assert_close(fresh(x), plain(x))
    assert list(converted.state_dict()) == list(plain.state_dict())


def test_constructors_mirror_torch():
    for ours, theirs in [(ft.Conv2d, nn.Conv2d), (ft.MaxPool2d, nn.MaxPool2d), (ft.AvgPool2d, nn.AvgPool2d),
                         (ft.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d)]:
        def params(cls):
            return [(p.name, p.kind, p.default) for p in inspect.signature(cls.__init__).parameters.values()
                    if p.name != "algorithm"]
        assert params(ours) == params(theirs)
        assert issubclass(ours, theirs)
    torch.manual_seed(7)
    theirs = nn.Conv2d(3, 8, 5, padding="same", bias=True, padding_mode="circular")
    torch.manual_seed(7)
    ours = ft.Conv2d(3, 8, 5, padding="same", bias=True, padding_mode="circular", algorithm="direct")
    assert repr(ours) == repr(theirs)[:-1] + ", algorithm='direct')"
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=0)


# --------------------------------------------------------------------------- convert
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.block = nn.Sequential(nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(2), nn.AdaptiveAvgPool2d((1, 1)))
        self.custom = type("MyConv", (nn.Conv2d,), {})(4, 4, 1)
        self.shared = self.block[0]


def test_convert_inplace_shares_parameters_and_leaves_the_rest():
    net = _Net()
    conv_weight, bn = net.conv.weight, net.bn
    result = ft.convert(net, inplace=True)
    assert result is net
    assert type(net.conv) is ft.Conv2d and net.conv.weight is conv_weight
    assert net.bn is bn
    assert type(net.pool) is ft.MaxPool2d and net.pool.return_indices
    assert type(net.block[0]) is ft.AvgPool2d and net.shared is net.block[0]
    assert type(net.block[1]) is nn.AdaptiveAvgPool2d  # output size 2: left alone
    assert type(net.block[2]) is ft.AdaptiveAvgPool2d
    assert type(net.custom).__name__ == "MyConv"  # a subclass may override forward: left alone
    assert dict(net.named_parameters()).keys() == dict(_Net().named_parameters()).keys()


def test_convert_copy_leaves_the_original_untouched():
    net = _Net()
    converted = ft.convert(net, algorithm="im2col")
    assert type(net.conv) is nn.Conv2d and type(converted.conv) is ft.Conv2d
    assert converted.conv.weight is not net.conv.weight
    torch.testing.assert_close(converted.conv.weight, net.conv.weight, rtol=0, atol=0)
    assert converted.conv.algorithm == "im2col"
    layer = ft.convert(nn.Conv2d(2, 3, 1), algorithm="direct")
    assert type(layer) is ft.Conv2d and layer.algorithm == "direct"
    assert ft.convert(layer, inplace=True, algorithm="im2col") is layer and layer.algorithm == "im2col"
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ft.convert(lambda x: x)


def test_algorithm_reaches_fastconv(monkeypatch):
    chosen = []
    real_select = fastconv.algorithms.select

    def spy(op, geom, dtype, algorithm=None):
        chosen.append((op, algorithm))
        return real_select(op, geom, dtype, algorithm)

    monkeypatch.setattr(fastconv.algorithms, "select", spy)
    layer = ft.convert(nn.Conv2d(2, 3, 3), algorithm="direct")
    layer(torch.randn(1, 2, 5, 5, requires_grad=True)).sum().backward()
    assert chosen == [("forward", "direct"), ("grad_input", "direct"), ("grad_weight", "direct")]
    with pytest.raises(ValueError, match="algorithm must be"):
        ft.Conv2d(2, 3, 3, algorithm="nope")(torch.randn(1, 2, 5, 5))


@pytest.mark.parametrize("frozen, expected", [
    ("input", ("weight", "bias")), ("weight", ("input", "bias")), ("bias", ("input", "weight")),
])
def test_backward_computes_only_the_needed_gradients(monkeypatch, frozen, expected):
    asked = []
    real = fastconv.conv2d_backward

    def spy(*args, needs, **kwargs):
        asked.append(tuple(needs))
        return real(*args, needs=needs, **kwargs)

    monkeypatch.setattr(fastconv, "conv2d_backward", spy)
    layer = ft.Conv2d(2, 3, 3)
    x = torch.randn(1, 2, 5, 5, requires_grad=frozen != "input")
    {"weight": layer.weight, "bias": layer.bias}.get(frozen, x).requires_grad_(False)
    layer(x).sum().backward()
    assert asked == [expected]


# --------------------------------------------------------------------------- unsupported cases
@pytest.mark.parametrize("dtype, case", [
    (torch.float16, "half precision"), (torch.bfloat16, "half precision"),
    (torch.complex64, "complex"), (torch.int32, "torch.int32"),
])
def test_unsupported_dtypes_raise(dtype, case):
    x = torch.zeros(1, 2, 4, 4, dtype=dtype)
    for op in (lambda t: fF.conv2d(t, torch.zeros(3, 2, 3, 3, dtype=dtype)), lambda t: fF.max_pool2d(t, 2),
               lambda t: fF.avg_pool2d(t, 2), lambda t: fF.adaptive_avg_pool2d(t, 1)):
        with pytest.raises(TypeError, match=case):
            op(x)


def test_non_cpu_tensors_raise():
    # The meta device stands in for CUDA: any non-CPU device takes the same path.
    x = torch.empty(1, 2, 4, 4, device="meta")
    with pytest.raises(NotImplementedError, match="CPU tensors only.*Received: input.device=meta"):
        fF.conv2d(x, torch.empty(3, 2, 3, 3, device="meta"))
    with pytest.raises(NotImplementedError, match="Received: weight.device=meta"):
        fF.conv2d(torch.zeros(1, 2, 4, 4), torch.empty(3, 2, 3, 3, device="meta"))
    with pytest.raises(NotImplementedError, match="CPU tensors only"):
        ft.MaxPool2d(2)(x)


def test_double_backward_raises():
    layer = ft.Conv2d(2, 3, 3)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    # grad_output not requiring grad while the weight does: a silent wrong answer with
    # @once_differentiable alone, hence the eager error.
    with pytest.raises(NotImplementedError, match="double backward"):
        torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    for op in (lambda t: fF.max_pool2d(t, 2), lambda t: fF.avg_pool2d(t, 2),
               lambda t: fF.adaptive_avg_pool2d(t, 1)):
        with pytest.raises(NotImplementedError, match="double backward"):
            torch.autograd.grad(op(x).pow(2).sum(), x, create_graph=True)


def test_unsupported_options_raise():
    with pytest.raises(ValueError, match="output_size=1.*Received: output_size=2"):
        ft.AdaptiveAvgPool2d(2)
    with pytest.raises(ValueError, match="output_size=1"):
        fF.adaptive_avg_pool2d(torch.zeros(1, 2, 4, 4), (1, 2))
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        fF.conv2d(torch.zeros(1, 2, 6, 6), torch.zeros(3, 2, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="4-D"):
        fF.conv2d(torch.zeros(2, 6, 6), torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="4-D"):
        fF.max_pool2d(torch.zeros(6, 6), 2)


def test_fastconv_errors_pass_through_unchanged():
    with pytest.raises(ValueError, match=r"Received: groups=") as info:
        fF.conv2d(torch.zeros(1, 4, 5, 5), torch.zeros(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError) as expected:
        fastconv.conv2d(np.zeros((1, 4, 5, 5), np.float32), np.zeros((3, 2, 3, 3), np.float32), groups=2)
    assert str(info.value) == str(expected.value)
    with pytest.raises(TypeError, match="same dtype"):
        fF.conv2d(torch.zeros(1, 2, 5, 5), torch.zeros(3, 2, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="padding"):
        fF.max_pool2d(torch.zeros(1, 2, 5, 5), 2, padding=2)


# --------------------------------------------------------------------------- zero copy
class _KernelSpy:
    """Wraps an algorithm, recording the arrays its kernels receive and return."""

    def __init__(self, algorithm, calls):
        self.algorithm, self.calls = algorithm, calls

    def __getattr__(self, op):
        kernel = getattr(self.algorithm, op)

        def record(*args):
            result = kernel(*args)
            self.calls[op] = (args, result)
            return result
        return record


def _ptr(array):
    return array.__array_interface__["data"][0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_conv2d_shares_memory_with_the_kernels(monkeypatch, fmt):
    calls = {}
    real_select = fastconv.algorithms.select
    monkeypatch.setattr(fastconv.algorithms, "select",
                        lambda *args, **kwargs: _KernelSpy(real_select(*args, **kwargs), calls))
    layer = ft.Conv2d(3, 4, 3, padding=1)
    x = _input((2, 3, 6, 6), FORMATS[fmt], torch.float32)
    out = layer(x)
    grad_output = torch.randn_like(out)  # same memory format as out
    out.backward(grad_output)
    (x_seen, w_seen, b_seen, _), out_array = calls["forward"]
    assert _ptr(x_seen) == x.data_ptr() and _ptr(out_array) == out.data_ptr()
    assert _ptr(b_seen) == layer.bias.data_ptr()
    if fmt == "NCHW":  # NHWC kernels take the weight as (kh, kw, C, K): a small permuted copy
        assert _ptr(w_seen) == layer.weight.data_ptr()
    (go_seen, w_seen, _), _ = calls["grad_input"]
    (go_seen2, x_seen2, _), _ = calls["grad_weight"]
    assert _ptr(go_seen) == _ptr(go_seen2) == grad_output.data_ptr()
    assert _ptr(x_seen2) == x.data_ptr()


@pytest.mark.parametrize("fmt", FORMATS)
def test_pooling_shares_memory_with_the_kernels(monkeypatch, fmt):
    calls = []
    pooling = fastconv.functional.pooling
    real_kernel = pooling._kernel

    def spy(name, geom):
        kernel = real_kernel(name, geom)
        return lambda *args: (calls.append((name, args)), kernel(*args))[1]

    monkeypatch.setattr(pooling, "_kernel", spy)
    x = _input((2, 3, 6, 6), FORMATS[fmt], torch.float32)
    out, indices = fF.max_pool2d(x, 2, return_indices=True)
    avg = fF.avg_pool2d(x, 3, 1, 1)
    (out + avg.sum()).sum().backward()
    seen = dict(calls)
    assert _ptr(seen["max_pool2d_forward"][0]) == x.data_ptr()
    assert _ptr(seen["max_pool2d_forward"][1]) == out.data_ptr()
    assert _ptr(seen["max_pool2d_forward"][2]) == indices.data_ptr()
    assert _ptr(seen["avg_pool2d_forward"][0]) == x.data_ptr()
    assert _ptr(seen["avg_pool2d_forward"][1]) == avg.data_ptr()


# --------------------------------------------------------------------------- optional dependency
def test_fastconv_works_without_torch_and_fastconv_torch_says_how_to_install():
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, fastconv\n"
        "assert fastconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))).shape == (1, 1, 2, 2)\n"
        "try:\n    import fastconv.torch\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install fastconv[torch]" in result.stdout
