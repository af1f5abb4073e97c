"""The compiled one-pass updates (fastconv._ext.elementwise) give NumPy's bits."""
import numpy as np
import pytest

from fastconv.keras import _elementwise, optimizers
from fastconv.keras.layers import _activation


def _awkward(rng, n, dtype):
    """Normal values with NaNs, infinities, zeros of both signs."""
    a = rng.standard_normal(n).astype(dtype)
    a[::97], a[5], a[6], a[::89] = np.nan, np.inf, -np.inf, -0.0
    a[::83] = 0.0
    return a


def _same_bits(a, b):
    return np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


def _numpy_only(monkeypatch):
    monkeypatch.setattr(_elementwise, "fusable", lambda *arrays: False)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_fused_equals_numpy(dtype, amsgrad, monkeypatch):
    rng = np.random.default_rng(0)
    n = 300_007     # several threads' worth, not a multiple of a vector
    grads = [_awkward(rng, n, dtype) * (i + 1) for i in range(3)]
    start = rng.standard_normal(n).astype(dtype)

    def train():
        opt = optimizers.Adam(0.01, amsgrad=amsgrad)
        value = start.copy()
        slots = {k: np.full(n, v, dtype) for k, v in opt._initial_slots().items()}
        with np.errstate(all="ignore"):
            for g in grads:
                opt.update_step(g, value, slots, dtype(0.01))
                opt.iterations += 1
        return [value, *slots.values()]

    calls = []
    kernels = _elementwise.kernels
    monkeypatch.setattr(_elementwise, "kernels", lambda: calls.append(1) or kernels())
    fused = train()
    assert len(calls) == 3
    _numpy_only(monkeypatch)
    for got, want in zip(fused, train()):
        assert _same_bits(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_gradient_fused_equals_numpy(dtype, monkeypatch):
    rng = np.random.default_rng(1)
    y = np.maximum(_awkward(rng, 100_002, dtype), 0).reshape(6, -1)
    grad_y = _awkward(rng, 100_002, dtype).reshape(6, -1)
    with np.errstate(all="ignore"):
        fused = _activation.backward(None, "relu", y, y, grad_y)
        _numpy_only(monkeypatch)
        want = _activation.backward(None, "relu", y, y, grad_y)
    assert fused.shape == want.shape and _same_bits(fused, want)


def test_non_contiguous_or_mixed_arrays_take_the_numpy_path():
    a = np.zeros((4, 6), np.float32)
    assert _elementwise.fusable(a, a.copy())
    assert not _elementwise.fusable(a, a.T)                      # not C-contiguous
    assert not _elementwise.fusable(a, a.astype(np.float64))     # mixed dtypes
    assert not _elementwise.fusable(a.astype(np.float16))
    # and a transposed gradient still gives the right update
    opt = optimizers.Adam(0.1)
    value = np.ones((6, 4), np.float32)
    slots = {k: np.full((6, 4), v, np.float32) for k, v in opt._initial_slots().items()}
    opt.update_step(np.ones((4, 6), np.float32).T, value, slots, np.float32(0.1))
    np.testing.assert_allclose(value, 1 - 0.1, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_in_place_equals_numpy(dtype, monkeypatch):
    rng = np.random.default_rng(2)
    z = _awkward(rng, 100_002, dtype).reshape(6, -1)
    z.reshape(-1)[::101] = -np.nan      # a NaN with its sign bit set keeps it
    want = np.maximum(z, 0, dtype=dtype)
    calls = []
    kernels = _elementwise.kernels
    monkeypatch.setattr(_elementwise, "kernels", lambda: calls.append(1) or kernels())
    got = _activation.forward(None, "relu", z, in_place=True)
    assert calls and got is z and _same_bits(got, want)
