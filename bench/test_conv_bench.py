"""pytest-benchmark suite: `pytest bench/ --benchmark-only`.

The cases are the public layer suite shared with `fastconv bench` and the tests;
each benchmark group holds fastconv's algorithms, "auto", the reference and,
when installed, PyTorch (same thread count).
"""
import numpy as np
import pytest

import fastconv
from fastconv.benchmarks import conv as conv_bench
from fastconv.benchmarks import pooling as pool_bench
from fastconv.benchmarks.training import BATCH, fashion_mnist_net
from fastconv.testing import POOL_SUITE_LAYERS, SUITE_LAYERS, conv_inputs, pool_input

ALGORITHMS = [a for a in fastconv.list_algorithms() if a != "reference"] + ["auto", "reference"]
SUITE = pytest.mark.parametrize("case", SUITE_LAYERS, ids=lambda c: c.id)
OPS = pytest.mark.parametrize("op", conv_bench.OPS)
LAYOUTS = pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])


@OPS
@SUITE
@LAYOUTS
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_conv2d(benchmark_info, op, case, data_format, algorithm):
    x, weight, bias = conv_inputs(case, np.float32, data_format)
    benchmark_info.group = f"conv2d-{op}-{case.id}-{data_format}"
    run = conv_bench._fastconv_ops(case, x, weight, bias, data_format, algorithm)[op]
    if algorithm == "reference":
        benchmark_info.pedantic(run, rounds=1, iterations=1)
    else:
        benchmark_info(run)


@OPS
@SUITE
@LAYOUTS
def test_conv2d_torch(benchmark_info, torch_or_skip, op, case, data_format):
    x, weight, bias = conv_inputs(case, np.float32, data_format)
    benchmark_info.group = f"conv2d-{op}-{case.id}-{data_format}"
    benchmark_info(conv_bench._torch_ops(torch_or_skip, case, x, weight, bias, data_format)[op])


@pytest.mark.parametrize("case", POOL_SUITE_LAYERS, ids=lambda c: c.id)
@pytest.mark.parametrize("direction", ["forward", "backward"])
@LAYOUTS
@pytest.mark.parametrize("impl", ["fastconv", "reference", "torch"])
def test_pooling(benchmark_info, request, case, direction, data_format, impl):
    x = pool_input(case, np.float32, data_format)
    benchmark_info.group = f"pool2d-{case.id}-{direction}-{data_format}"
    if impl == "torch":
        ops = pool_bench._torch_ops(request.getfixturevalue("torch_or_skip"), case, x, data_format)
    elif impl == "reference":
        ops = pool_bench._reference_ops(case, x, data_format)
    else:
        ops = pool_bench._fastconv_ops(case, x, data_format)
    benchmark_info(ops[direction == "backward"])


@LAYOUTS
def test_conv2d_layer_call(benchmark_info, data_format):
    from fastconv.keras import layers

    case = next(c for c in SUITE_LAYERS if c.id == "fmnist_conv2")
    x, _, _ = conv_inputs(case, np.float32, "NHWC" if data_format == "NHWC" else "NCHW")
    layer = layers.Conv2D(case.out_channels, case.kernel, padding="same", activation="relu",
                          data_format="channels_last" if data_format == "NHWC" else "channels_first")
    layer(x)  # build
    benchmark_info.group = "keras-conv2d-layer"
    benchmark_info(layer, x)


def test_training_step(benchmark_info):
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    model = fashion_mnist_net()
    benchmark_info.group = "fashion-mnist-training-step"
    benchmark_info(model.train_on_batch, x, y)


@pytest.mark.parametrize("values", ["normal", "denormal"])
@pytest.mark.parametrize("algorithm", ALGORITHMS[:-2])
@pytest.mark.parametrize("op", ["forward", "grad_weight"])
def test_denormal_inputs(benchmark_info, values, algorithm, op):
    """Subnormal inputs must cost at most 2x normal ones: compare the pair in each group."""
    case = next(c for c in SUITE_LAYERS if c.id == "cifar_res20")
    x, weight, bias = conv_inputs(case, np.float32)
    x = x[:32]
    if values == "denormal":
        x = x * np.float32(1e-39)
    benchmark_info.group = f"denormal-{op}-{algorithm}"
    benchmark_info(conv_bench._fastconv_ops(case, x, weight, bias, "NCHW", algorithm)[op])


@pytest.mark.parametrize("values", ["normal", "denormal"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_denormal_pooling(benchmark_info, values, kind):
    x = pool_input(POOL_SUITE_LAYERS[0], np.float32)
    if values == "denormal":
        x = x * np.float32(1e-39)
    benchmark_info.group = f"denormal-pool-{kind}"
    benchmark_info(fastconv.max_pool2d if kind == "max" else fastconv.avg_pool2d, x, 2)
