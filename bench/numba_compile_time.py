"""First-import and first-call times of the Numba kernels, with a cold and a warm cache.

    python bench/numba_compile_time.py

Each measurement runs in a fresh process. "cold" points NUMBA_CACHE_DIR at an
empty directory; "warm" runs again with the same directory.
"""
import json
import os
import subprocess
import sys
import tempfile

PROBE = r"""
import json, time
t0 = time.perf_counter()
import fastconv, numba
from fastconv.algorithms import numba_direct, numba_im2col, numba_pooling, numba_winograd
imported = time.perf_counter() - t0
import numpy as np
from fastconv.testing import CONV_CASES, conv_inputs
case = CONV_CASES[1]
times = {"import": imported}
for name in ("numba_direct", "numba_im2col", "numba_winograd"):
    x, w, b = conv_inputs(case, np.float32)
    t = time.perf_counter()
    out = fastconv.conv2d(x, w, b, algorithm=name, **case.kwargs)
    fastconv.conv2d_backward(np.ones_like(out), x, w, algorithm=name, **case.kwargs)
    times[name + " first call (fwd+bwd, float32 NCHW)"] = time.perf_counter() - t
fastconv.set_pooling_backend("numba")
t = time.perf_counter()
y, idx = fastconv.max_pool2d(out, 2, return_indices=True)
fastconv.max_pool2d_backward(y, out, idx, 2)
times["numba pooling first call (max fwd+bwd)"] = time.perf_counter() - t
print(json.dumps(times))
"""


def main():
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                                 check=True)
            for name, seconds in json.loads(out.stdout).items():
                print(f"{label:5s} {name:52s} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
