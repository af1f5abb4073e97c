import pytest

from fastconv import get_num_threads
from fastconv._ext import _build_info


@pytest.fixture
def benchmark_info(benchmark):
    benchmark.extra_info.update(threads=get_num_threads(), openmp=_build_info.OPENMP,
                                build_flags=_build_info.BUILD_FLAGS)
    return benchmark
