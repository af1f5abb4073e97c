import platform

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastconv
from fastconv._ext import _build_info


@pytest.fixture
def benchmark_info(benchmark):
    """pytest-benchmark's fixture, with the configuration recorded in extra_info."""
    blas = [f"{p['internal_api']} {p.get('version')} ({p.get('threading_layer')}, {p['num_threads']} threads)"
            for p in threadpool_info() if p["user_api"] == "blas"]
    benchmark.extra_info.update(
        threads=fastconv.get_num_threads(), openmp=_build_info.OPENMP, build_flags=_build_info.BUILD_FLAGS,
        blas=blas, fastconv=fastconv.__version__, numpy=np.__version__, python=platform.python_version())
    return benchmark


@pytest.fixture
def torch_or_skip():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(fastconv.get_num_threads())
    return torch
