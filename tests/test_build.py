"""The installed package: build information, the public surface, and the import error."""
import subprocess
import sys
import textwrap

import fastconv
from fastconv._ext import _build_info


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
                if name == "fastconv._ext._conv_direct":
                    raise ImportError("simulated missing extension")
        sys.meta_path.insert(0, Block())
        try:
            import fastconv
        except ImportError as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "pip install" in result.stdout and "simulated missing extension" in result.stdout, result
