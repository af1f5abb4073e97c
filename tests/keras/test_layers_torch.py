"""Layers against the equivalent PyTorch modules given converted weights (forward and backward).

Keras stores conv kernels HWIO and images NHWC; torch wants OIHW and NCHW. Keras's "same" padding puts
an odd extra pixel bottom/right, which torch needs as an explicit asymmetric F.pad.
"""
import numpy as np
import pytest

from fastconv.keras import backend, layers

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture(autouse=True)
def _session():
    backend.clear_session()
    backend.set_seed(0)


def _nchw(x):
    return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)


def _nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def _same_pad(size, k, s, d=1):
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _run(layer, x, torch_fn):
    """Forward and backward of a layer (float64, training) and of torch_fn on NCHW; compare both."""
    rng = np.random.default_rng(3)
    y = layer(x, training=True)
    g = rng.standard_normal(y.shape)
    layer._grads = {}
    grad_x = layer.backward(g)
    xt = _nchw(x)
    yt = torch_fn(xt)
    yt_nhwc = yt.permute(0, 2, 3, 1) if yt.ndim == 4 else yt
    np.testing.assert_allclose(y, yt_nhwc.detach().numpy(), rtol=1e-10, atol=1e-10)
    yt_nhwc.backward(torch.tensor(g))
    np.testing.assert_allclose(grad_x, _nhwc(xt.grad), rtol=1e-10, atol=1e-10)
    return layer


CONV = {
    "valid": dict(filters=4, kernel_size=3),
    "same_stride1": dict(filters=4, kernel_size=3, padding="same"),
    "same_stride2_odd": dict(filters=3, kernel_size=3, strides=2, padding="same"),
    "same_stride2_even_kernel": dict(filters=3, kernel_size=4, strides=2, padding="same"),
    "dilated_same": dict(filters=2, kernel_size=3, dilation_rate=2, padding="same"),
    "groups": dict(filters=6, kernel_size=(3, 2), groups=3, activation="relu"),
}


@pytest.mark.parametrize("kwargs", CONV.values(), ids=CONV.keys())
@pytest.mark.parametrize("size", [(8, 8), (9, 7)], ids=["even", "odd"])
def test_conv2d_matches_torch(kwargs, size):
    x = np.random.default_rng(1).standard_normal((2, *size, 6))
    layer = layers.Conv2D(dtype="float64", bias_initializer="random_normal", **kwargs)
    layer.build(x.shape)
    w = torch.tensor(layer.kernel.value.transpose(3, 2, 0, 1).copy(), requires_grad=True)
    b = torch.tensor(layer.bias.value, requires_grad=True)
    k, s, d = layer.kernel_size, layer.strides, layer.dilation_rate

    def torch_fn(xt):
        if layer.padding == "same":
            top, bottom = _same_pad(size[0], k[0], s[0], d[0])
            left, right = _same_pad(size[1], k[1], s[1], d[1])
            xt = F.pad(xt, (left, right, top, bottom))
        out = F.conv2d(xt, w, b, stride=s, dilation=d, groups=layer.groups)
        return F.relu(out) if kwargs.get("activation") == "relu" else out

    _run(layer, x, torch_fn)
    grads = layer._grads
    np.testing.assert_allclose(grads[id(layer.kernel)], w.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grads[id(layer.bias)], b.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pool,stride,padding", [(2, None, "valid"), (3, 2, "same"), (2, 2, "same"),
                                                 (3, 1, "same"), ((2, 3), (1, 2), "valid")])
def test_max_pooling_matches_torch(pool, stride, padding):
    size = (9, 8)
    x = np.random.default_rng(2).standard_normal((2, *size, 3))
    layer = layers.MaxPooling2D(pool, strides=stride, padding=padding, dtype="float64")
    k = layer.pool_size
    s = layer.strides

    def torch_fn(xt):
        if padding == "same":
            top, bottom = _same_pad(size[0], k[0], s[0])
            left, right = _same_pad(size[1], k[1], s[1])
            xt = F.pad(xt, (left, right, top, bottom), value=-np.inf)
        return F.max_pool2d(xt, k, s)

    _run(layer, x, torch_fn)


@pytest.mark.parametrize("pool,stride,padding", [(2, None, "valid"), (3, 2, "same"), (2, 1, "same")])
def test_average_pooling_matches_torch(pool, stride, padding):
    size = (9, 8)
    x = np.random.default_rng(2).standard_normal((2, *size, 3))
    layer = layers.AveragePooling2D(pool, strides=stride, padding=padding, dtype="float64")
    k, s = layer.pool_size, layer.strides

    def torch_fn(xt):
        if padding == "valid":
            return F.avg_pool2d(xt, k, s)
        top, bottom = _same_pad(size[0], k[0], s[0])
        left, right = _same_pad(size[1], k[1], s[1])
        pad = (left, right, top, bottom)
        sums = F.avg_pool2d(F.pad(xt, pad), k, s, divisor_override=1)
        counts = F.avg_pool2d(F.pad(torch.ones_like(xt), pad), k, s, divisor_override=1)
        return sums / counts  # Keras leaves the padding out of each mean

    _run(layer, x, torch_fn)


def test_global_poolings_match_torch():
    x = np.random.default_rng(4).standard_normal((2, 5, 6, 3))
    _run(layers.GlobalAveragePooling2D(dtype="float64"), x, lambda xt: xt.mean(dim=(2, 3)))
    _run(layers.GlobalMaxPooling2D(dtype="float64"), x, lambda xt: xt.amax(dim=(2, 3)))


def test_dense_and_flatten_match_torch():
    x = np.random.default_rng(5).standard_normal((3, 4, 5, 2))
    flatten = layers.Flatten(dtype="float64")
    dense = layers.Dense(7, activation="softmax", dtype="float64")
    dense.build((None, 40))
    w = torch.tensor(dense.kernel.value.T.copy(), requires_grad=True)
    flat = flatten(x, training=True)
    # torch flattens NCHW in C, H, W order; Keras orders H, W, C: permute first.
    xt = _nchw(x)
    yt = F.softmax(F.linear(xt.permute(0, 2, 3, 1).reshape(3, -1), w, torch.tensor(dense.bias.value)), dim=-1)
    y = dense(flat, training=True)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10)
    g = np.random.default_rng(6).standard_normal(y.shape)
    grad_x = flatten.backward(dense.backward(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(grad_x, _nhwc(xt.grad), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dense._grads[id(dense.kernel)], w.grad.numpy().T, rtol=1e-9, atol=1e-12)


def test_batch_normalization_matches_torch():
    x = np.random.default_rng(7).standard_normal((4, 5, 6, 3)) * 3 + 2
    layer = layers.BatchNormalization(dtype="float64", gamma_initializer="random_normal")
    layer.build(x.shape)
    bn = torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.01, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(layer.gamma.value))
    _run(layer, x, bn)
    np.testing.assert_allclose(layer._grads[id(layer.gamma)], bn.weight.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(layer._grads[id(layer.beta)], bn.bias.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(layer.moving_mean.value, bn.running_mean.numpy(), rtol=1e-10)
    # torch moves the unbiased variance, Keras 3 the biased one.
    n = x.size // 3
    biased = 0.99 + 0.01 * (bn.running_var.numpy() - 0.99) / 0.01 * (n - 1) / n
    np.testing.assert_allclose(layer.moving_variance.value, biased, rtol=1e-10)
    bn.eval()
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor(layer.moving_variance.value))
        expected = bn(_nchw(x)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-8)


def test_relu_softmax_match_torch():
    x = np.random.default_rng(8).standard_normal((2, 3, 4, 5))
    _run(layers.ReLU(dtype="float64"), x, F.relu)
    _run(layers.ReLU(max_value=0.5, dtype="float64"), x, lambda t: torch.clamp(t, 0, 0.5))
    _run(layers.Softmax(dtype="float64"), x, lambda t: F.softmax(t, dim=1))
