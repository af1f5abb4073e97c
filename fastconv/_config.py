"""Process-wide settings of the kernels: thread count and im2col workspace.

One thread count governs the three thread pools a call may use: the OpenMP
threads of the Cython kernels (passed to every kernel), Numba's threads, and
BLAS's threads (through threadpoolctl). A call uses one of them at a time, so
they never oversubscribe the cores.
"""
import contextlib
import os

from . import _args

_DEFAULT_WORKSPACE_BYTES = 64 * 2**20
_workspace_limit = _DEFAULT_WORKSPACE_BYTES
_num_threads = None  # None: the usable cores
_applied_to_pools = None  # the count last given to BLAS and Numba
_blas_controller = None


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
