"""The Dense layers' products (fastconv._matmul): OpenMP threads over single-threaded BLAS."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv._matmul import matmul

SHAPES = [(128, 3136, 128), (128, 128, 10), (3, 5, 7), (1000, 17, 33), (5, 300, 2000), (33, 64, 31)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_matches_numpy_within_rounding(m, k, n, trans_a, trans_b, dtype):
    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    for threads in (1, 2, 3):
        with fastconv.num_threads(threads):
            got = matmul(a, b, trans_a, trans_b)
            assert got.shape == (m, n) and got.dtype == dtype
            np.testing.assert_array_equal(got, matmul(a, b, trans_a, trans_b))  # same bits again
        tol = 1e-4 * np.sqrt(k) if dtype == np.float32 else 1e-12 * np.sqrt(k)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_strided_inputs_and_other_dtypes():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 80)).astype(np.float32)[:, ::2]
    b = rng.standard_normal((40, 24)).astype(np.float32)
    np.testing.assert_allclose(matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)
    ints = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(matmul(ints, ints, trans_b=True), ints @ ints.T)  # NumPy's


def test_inner_sizes_that_differ_are_named():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 2\)"):
        matmul(np.ones((4, 3), np.float32), np.ones((5, 2), np.float32))


def _spin_count_after_import(env):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | env
    code = "import fastconv, os; print(os.environ.get('GOMP_SPINCOUNT'))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_openmp_workers_spin_briefly_unless_the_user_chose():
    assert _spin_count_after_import({}) == "30000"
    assert _spin_count_after_import({"GOMP_SPINCOUNT": "7"}) == "7"
    assert _spin_count_after_import({"OMP_WAIT_POLICY": "PASSIVE"}) == "None"


def test_the_kernel_checks_its_shapes_and_empty_products():
    a, b = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match="does not fit c.*c 4x6"):
        fastconv._ext.gemm.gemm(a, b, np.empty((4, 6), np.float32), False, False, 2)
    with pytest.raises(ValueError, match="does not fit c"):
        fastconv._ext.gemm.gemm(a, b, np.empty((4, 5), np.float32), True, False, 2)
    c = np.full((4, 5), 7.0, np.float32)
    fastconv._ext.gemm.gemm(np.ones((4, 0), np.float32), np.ones((0, 5), np.float32), c, False, False, 2)
    np.testing.assert_array_equal(c, 0)
