"""Process-wide settings of the compiled kernels: thread count and im2col workspace."""
import os

_DEFAULT_WORKSPACE_BYTES = 64 * 2**20
_workspace_limit = _DEFAULT_WORKSPACE_BYTES


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
    """Threads the compiled kernels use (one level of parallelism per call)."""
    return usable_cores()


def get_workspace_limit():
    """Bytes of scratch memory the im2col algorithm may use per call."""
    return _workspace_limit


def set_workspace_limit(nbytes):
    """Cap the im2col workspace (default 64 MB); tiles shrink to fit, down to one output row."""
    global _workspace_limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
        raise ValueError(f"the workspace limit must be a positive number of bytes. Received: nbytes={nbytes!r}")
    _workspace_limit = nbytes
