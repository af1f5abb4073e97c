"""fastconv's compiled kernels (built from src/fastconv/_ext/*.pyx by setup.py)."""
try:
    from . import _build_info, _conv_direct, _conv_im2col, _pooling  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "fastconv's compiled extensions are missing or failed to load "
        f"({exc}). Build them with `pip install .` (or `pip install -e .` in a source "
        "checkout, or `python setup.py build_ext --inplace`); a C compiler is required."
    ) from exc
