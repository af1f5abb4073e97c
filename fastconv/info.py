"""What this fastconv is built with and runs on: `fastconv info`, `fastconv.show_config()`."""
import platform
import sys


def config():
    """The configuration as a dict of plain values (what show_config prints)."""
    import numpy as np

    from . import __version__, _config, _ext, _heap, algorithms
    from ._ext import _build_info
    from .algorithms import tuning

    return {
        "fastconv": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": f"{platform.machine()}, {tuning._cpu_model()}",
        "usable cores": _config.usable_cores(),
        "build": (f"OpenMP {'on' if _build_info.OPENMP else 'off'}, "
                  f"{'native' if '-march=native' in _build_info.BUILD_FLAGS else 'portable'} "
                  f"({_build_info.BUILD_FLAGS})"),
        "kernels": f"{_ext.VARIANT} (built: {', '.join(_ext.AVAILABLE)}; FASTCONV_CPU_VARIANT chooses)",
        "threads": _config.get_num_threads(),
        "openmp idle": _openmp_wait_description(),
        "blas": _blas_description(),
        "numba": _numba_description(),
        "memory": _heap.description(),
        "algorithms": ", ".join(algorithms.list_algorithms()),
        "default algorithm": algorithms.get_default_algorithm(),
        "autotune cache": tuning.cache_path(),
    }


def _openmp_wait_description():
    import os

    from . import _runtime_env

    policy, spins = os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT")
    if policy:
        return f"OMP_WAIT_POLICY={policy}" + (f", GOMP_SPINCOUNT={spins}" if spins else "")
    if spins == _runtime_env.OPENMP_SPIN_COUNT:
        return f"spin {spins} rounds, then sleep (fastconv's default; GOMP_SPINCOUNT)"
    return f"GOMP_SPINCOUNT={spins}"


def _blas_description():
    from threadpoolctl import threadpool_info

    found = [f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('threading_layer', '?')} "
             f"threads, {pool.get('architecture', '?')} kernels) from {pool.get('prefix')}"
             for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return "; ".join(found) or "not loaded"


def _numba_description():
    try:
        import numba
    except ImportError:
        return "not installed"
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel function has run yet in this process
        layer = f"not started yet (configured: {numba.config.THREADING_LAYER})"
    return f"{numba.__version__}, threading layer {layer}"


def show_config(file=None):
    """Print version, build flags, threads, BLAS, Numba, algorithms and the autotune cache."""
    from . import _config

    _config.apply_to_thread_pools()  # report BLAS as the kernels will run it
    for name, value in config().items():
        print(f"{name + ':':19s} {value}", file=file or sys.stdout)
