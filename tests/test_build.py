"""The installed package: build information, the public surface, and the import error."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import _ext
from fastconv._ext import _build_info
from fastconv.testing import CONV_CASES, POOL_CASES, conv_inputs, pool_input


def test_build_info_is_recorded():
    assert isinstance(_build_info.OPENMP, bool)
    assert "-O" in _build_info.BUILD_FLAGS
    assert _build_info.openmp_max_threads() >= 1


def test_list_algorithms():
    assert {"direct", "im2col", "reference"} <= set(fastconv.list_algorithms())


def test_public_api_is_exported():
    for name in fastconv.__all__:
        assert hasattr(fastconv, name), name


def test_missing_extension_gives_build_instructions():
    script = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.startswith("fastconv._ext._conv_direct"):
                    raise ImportError("simulated missing extension")
        sys.meta_path.insert(0, Block())
        try:
            import fastconv
        except ImportError as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "pip install" in result.stdout and "simulated missing extension" in result.stdout, result


def test_the_best_cpu_variant_this_machine_runs_is_loaded():
    assert _ext.VARIANT in _ext.AVAILABLE
    assert _ext.AVAILABLE.index(_ext.VARIANT) == min(
        i for i, v in enumerate(_ext.AVAILABLE) if _ext._cpu_runs(v))
    assert _ext.conv_direct.__name__.startswith("fastconv._ext._conv_direct")


@pytest.mark.parametrize("variant", [v for v in _ext.AVAILABLE if _ext._cpu_runs(v)])
def test_every_cpu_variant_agrees_with_the_baseline(variant, monkeypatch):
    """Each variant is the same source compiled for another CPU level: same results within rounding."""
    def results():
        out = []
        for case in CONV_CASES[::3]:
            for data_format in ("NCHW", "NHWC"):
                x, w, b = conv_inputs(case, np.float64, data_format)
                kw = dict(case.kwargs, data_format=data_format)
                for algorithm in ("direct", "im2col"):
                    y = fastconv.conv2d(x, w, b, algorithm=algorithm, **kw)
                    out += [y, *fastconv.conv2d_backward(np.ones_like(y), x, w, algorithm=algorithm, **kw)]
        for case in POOL_CASES:
            x = pool_input(case, np.float64)
            y, idx = fastconv.max_pool2d(x, return_indices=True, dilation=case.dilation, **case.kwargs)
            out += [y, idx, fastconv.max_pool2d_backward(y, x, idx, dilation=case.dilation, **case.kwargs)]
            if case.dilation == 1:
                out += [fastconv.avg_pool2d(x, **case.kwargs)]
        return out

    def use(v):
        for name in _ext.KERNEL_MODULES:
            monkeypatch.setattr(_ext, name.lstrip("_"), _ext._import(name, v))

    use("baseline")
    expected = results()
    use(variant)
    for got, want in zip(results(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_cpu_variant_can_be_chosen():
    script = "import fastconv._ext as e; print(e.VARIANT)"
    env = dict(os.environ, FASTCONV_CPU_VARIANT="baseline")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.strip() == "baseline", result.stderr
    env["FASTCONV_CPU_VARIANT"] = "pentium"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "FASTCONV_CPU_VARIANT must be one of" in result.stderr
