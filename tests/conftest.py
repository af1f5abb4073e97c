import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastconv

# "ci" is deterministic and short; run `HYPOTHESIS_PROFILE=dev pytest` locally for more.
settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

COMPILED_ALGORITHMS = [name for name in fastconv.list_algorithms() if name != "reference"]
DTYPES = [np.float32, np.float64]
LAYOUTS = ["NCHW", "NHWC"]


@pytest.fixture(params=COMPILED_ALGORITHMS)
def algorithm(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(params=LAYOUTS)
def data_format(request):
    return request.param
