"""Process-wide settings of the kernels: thread count and im2col workspace.

One thread count governs the three thread pools a call may use: the OpenMP
threads of the Cython kernels (passed to every kernel), Numba's threads, and
BLAS's threads (through threadpoolctl). A call uses one of them at a time, so
they never oversubscribe the cores.
"""
import contextlib
import itertools
import os
import threading

from . import _args

_DEFAULT_WORKSPACE_BYTES = 64 * 2**20
_workspace_limit = _DEFAULT_WORKSPACE_BYTES
_num_threads = None  # None: the usable cores
_applied_to_pools = None  # the count last given to BLAS and Numba
_blas_controller = None
_openblas_setters = None  # [(ctypes openblas_set_num_threads or None, lib)] for the kernels' BLAS


def usable_cores():
    """Cores this process may run on, capped by OMP_NUM_THREADS when that is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    requested = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if requested.isdigit() and int(requested) > 0:
        cores = min(cores, int(requested))
    return max(cores, 1)


def get_num_threads():
    """Threads the kernels use: set_num_threads's value, else the usable cores."""
    return _num_threads or usable_cores()


def set_num_threads(n):
    """Use n threads for OpenMP kernels, Numba kernels and BLAS alike."""
    global _num_threads
    _num_threads = _args.as_int(n, "n", 1)
    apply_to_thread_pools()


@contextlib.contextmanager
def num_threads(n):
    """Context manager: `with fastconv.num_threads(1): ...` restores the old count after."""
    global _num_threads
    previous = _num_threads
    set_num_threads(n)
    try:
        yield
    finally:
        _num_threads = previous
        apply_to_thread_pools()


def apply_to_thread_pools():
    """Give BLAS and Numba the current count (cheap when it has not changed)."""
    global _applied_to_pools, _blas_controller
    n = get_num_threads()
    if n == _applied_to_pools:
        return n
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController
        _blas_controller = ThreadpoolController()
    _blas_controller.limit(limits=n, user_api="blas")
    numba = _loaded_numba()
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    _applied_to_pools = n
    return n


_blas_mode = threading.Condition()
_blas_mode_threads = None  # the BLAS thread count the calls now running need
_blas_mode_users = 0


@contextlib.contextmanager
def kernel_blas_threads(n):
    """Run a kernel whose GEMMs need the kernels' BLAS library at n threads.

    The im2col and Winograd kernels (Cython's and Numba's) call BLAS from their own worker
    threads and need n = 1 (each call runs where it is made), or all threads where they run
    their tiles in turn (fewer output pixels than threads x channels). BLAS's thread count is process-wide and its results depend on it, so
    calls needing the same count share it, and calls needing another count wait for them
    to finish: concurrent calls give bitwise the results of sequential ones. The last one
    out gives BLAS the configured count back (a few microseconds in all).
    """
    global _blas_mode_threads, _blas_mode_users
    configured = apply_to_thread_pools()
    entered = False
    try:
        # A Ctrl-C (KeyboardInterrupt) may land anywhere here; counting the user inside
        # the try keeps the count right, or a later call needing another count would wait
        # for this one forever.
        with _blas_mode:
            while _blas_mode_users and _blas_mode_threads != n:
                _blas_mode.wait()
            if _blas_mode_users == 0 and n != configured:
                _set_kernel_blas_threads(n)
            _blas_mode_threads = n
            _blas_mode_users += 1
            entered = True
        yield
    finally:
        with _blas_mode:
            if entered:
                _blas_mode_users -= 1
            if _blas_mode_users == 0:
                if n != _applied_to_pools:
                    _set_kernel_blas_threads(_applied_to_pools)
                _blas_mode.notify_all()


def _set_kernel_blas_threads(n):
    """Give the BLAS that scipy.linalg.cython_blas (and Numba's np.dot) calls n threads.

    That is SciPy's own OpenBLAS in SciPy's wheels (scipy.libs/), else every loaded BLAS (a
    system or conda SciPy shares NumPy's). A pthreads OpenBLAS is set directly through its
    openblas_set_num_threads: threadpoolctl ignores limits from any Python thread but the
    first one that set them, and fastconv is called from many threads.
    """
    global _openblas_setters
    if _openblas_setters is None:
        libs = [lib for lib in _blas_controller.lib_controllers if lib.user_api == "blas"]
        scipys = [lib for lib in libs
                  if os.path.basename(os.path.dirname(lib.filepath)).startswith("scipy")]
        _openblas_setters = [_openblas_setter(lib) for lib in (scipys or libs)]
    for setter, lib in _openblas_setters:
        if setter is not None:
            setter(n)
        else:
            _blas_controller.select(filepath=lib.filepath).limit(limits=n)


def _openblas_setter(lib):
    """(openblas_set_num_threads of a pthreads OpenBLAS, or None; the library)."""
    if lib.internal_api == "openblas" and lib.threading_layer != "openmp":
        for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
            setter = getattr(lib.dynlib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if setter is not None:
                return setter, lib
    return None, lib


# Below these sizes one thread is faster than several: starting a parallel region
# costs microseconds on an idle machine and a scheduler timeslice (milliseconds)
# on a busy one, while the work itself takes well under a millisecond on one core.
SERIAL_FLOPS = 4_000_000
SERIAL_BYTES = 1_000_000


def threads_for(work, serial_below):
    """The thread count for a call of `work` units (flops or bytes); 1 for small work."""
    threads = apply_to_thread_pools()
    return 1 if work < serial_below else threads


def _loaded_numba():
    """numba if this process already imported it (never import it just to set threads)."""
    import sys
    return sys.modules.get("numba")


def get_workspace_limit():
    """Bytes of scratch memory the im2col algorithms may use per call."""
    return _workspace_limit


def set_workspace_limit(nbytes):
    """Cap the im2col workspace (default 64 MB); tiles shrink to fit, down to one output row."""
    global _workspace_limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
        raise ValueError(f"the workspace limit must be a positive number of bytes. Received: nbytes={nbytes!r}")
    _workspace_limit = nbytes
