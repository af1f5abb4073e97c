"""pytest-benchmark suite: `pytest bench/ --benchmark-only`.

The cases are the public layer suite shared with `fastconv bench` and the tests.
"""
import numpy as np
import pytest

import fastconv
from fastconv.testing import POOL_CASES, POOL_SUITE_LAYERS, SUITE_LAYERS, conv_inputs, pool_input

ALGORITHMS = [a for a in fastconv.list_algorithms() if a != "reference"] + ["auto"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", SUITE_LAYERS, ids=lambda c: c.id)
@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_conv2d(benchmark_info, op, case, data_format, algorithm):
    x, weight, bias = conv_inputs(case, np.float32, data_format)
    kw = dict(case.kwargs, data_format=data_format, algorithm=algorithm)
    benchmark_info.group = f"conv2d-{op}-{case.id}"
    if op == "forward":
        benchmark_info(fastconv.conv2d, x, weight, bias, **kw)
    else:
        go = np.ones_like(fastconv.conv2d(x, weight, bias, **kw))
        benchmark_info(fastconv.conv2d_backward, go, x, weight, needs=(op[5:],), **kw)


@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", POOL_CASES[:3], ids=lambda c: c.id)
def test_max_pool2d(benchmark_info, case, data_format):
    big = type(case)(case.id, 64, 32, 56, 56, case.kernel, case.stride, case.padding)
    x = pool_input(big, np.float32, data_format)
    benchmark_info.group = f"max_pool2d-{case.id}"
    benchmark_info(fastconv.max_pool2d, x, data_format=data_format, **big.kwargs)


@pytest.mark.parametrize("values", ["normal", "denormal"])
@pytest.mark.parametrize("algorithm", ALGORITHMS[:-1])
@pytest.mark.parametrize("op", ["forward", "grad_weight"])
def test_denormal_inputs(benchmark_info, values, algorithm, op):
    """Subnormal inputs must cost at most 2x normal ones: compare the pair in each group."""
    case = next(c for c in SUITE_LAYERS if c.id == "cifar_res20")
    x, weight, bias = conv_inputs(case, np.float32)
    x = x[:32]
    if values == "denormal":
        x = x * np.float32(1e-39)
    benchmark_info.group = f"denormal-{op}-{algorithm}"
    if op == "forward":
        benchmark_info(fastconv.conv2d, x, weight, bias, algorithm=algorithm, **case.kwargs)
    else:
        go = np.ones_like(fastconv.conv2d(x, weight, bias, **case.kwargs))
        benchmark_info(fastconv.conv2d_backward, go, x, weight, needs=("weight",), algorithm=algorithm,
                       **case.kwargs)


@pytest.mark.parametrize("values", ["normal", "denormal"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_denormal_pooling(benchmark_info, values, kind):
    x = pool_input(POOL_SUITE_LAYERS[0], np.float32)
    if values == "denormal":
        x = x * np.float32(1e-39)
    benchmark_info.group = f"denormal-pool-{kind}"
    benchmark_info(fastconv.max_pool2d if kind == "max" else fastconv.avg_pool2d, x, 2)
