"""fastconv's compiled kernels (built from src/fastconv/_ext/*.pyx by setup.py).

Each kernel module is built for the portable x86-64 baseline and, on x86-64, for
the x86-64-v3 (AVX2, FMA) and x86-64-v4 (AVX-512) levels. The best level this
CPU runs is loaded (NumPy's CPU detection decides), so one build is portable and
fast. FASTCONV_CPU_VARIANT=baseline|x86_64_v3|x86_64_v4 chooses one explicitly.
"""
import importlib
import os

KERNEL_MODULES = ("_conv_direct", "_conv_im2col", "_conv_winograd", "_conv_grouped", "_pooling")
VARIANTS = ("x86_64_v4", "x86_64_v3", "baseline")  # best first


def _cpu_runs(variant):
    if variant == "baseline":
        return True
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # pragma: no cover - NumPy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get(variant.upper().replace("X86_64_", "X86_")))


def _import(name, variant):
    suffix = "" if variant == "baseline" else "_" + variant
    return importlib.import_module(f"{__name__}.{name}{suffix}")


def _built(variant):
    try:
        _import(KERNEL_MODULES[0], variant)
    except ImportError:
        return False
    return True


def _choose():
    requested = os.environ.get("FASTCONV_CPU_VARIANT", "").strip().lower()
    if requested:
        if requested not in VARIANTS:
            raise ImportError(f"FASTCONV_CPU_VARIANT must be one of {VARIANTS}. Received: {requested!r}")
        if not _cpu_runs(requested):
            raise ImportError(f"FASTCONV_CPU_VARIANT={requested} but this CPU does not support it")
        return requested
    for variant in VARIANTS:
        if _cpu_runs(variant) and _built(variant):
            return variant
    _import(KERNEL_MODULES[0], "baseline")  # raises the ImportError that says what is missing
    raise ImportError("no compiled kernel module could be imported")  # pragma: no cover


try:
    from . import _build_info  # noqa: F401
    AVAILABLE = tuple(v for v in VARIANTS if _built(v))
    VARIANT = _choose()
    # The chosen variants, under names the import system never rebinds.
    conv_direct, conv_im2col, conv_winograd, conv_grouped, pooling = (
        _import(name, VARIANT) for name in KERNEL_MODULES)
    from . import _elementwise as elementwise   # memory-bound: the baseline build only
    from . import _layout as layout             # the same
    from . import _gemm as gemm                 # BLAS does the sums: the baseline build only
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "fastconv's compiled extensions are missing or failed to load "
        f"({exc}). Build them with `pip install .` (or `pip install -e .` in a source "
        "checkout, or `python setup.py build_ext --inplace`); a C compiler is required."
    ) from exc
