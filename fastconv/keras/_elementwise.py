"""Whether fastconv.keras's elementwise updates can run as one compiled pass on all threads
(fastconv._ext.elementwise: the same bits as the NumPy expressions, in one pass)."""
import numpy as np

from .. import _config, _ext


def fusable(*arrays):
    """The fused kernels take C-contiguous float32 or float64 arrays of one dtype and size."""
    first = arrays[0]
    return first.dtype in (np.float32, np.float64) and all(
        isinstance(a, np.ndarray) and a.dtype == first.dtype and a.size == first.size
        and a.flags.c_contiguous for a in arrays)


def kernels():
    return _ext.elementwise


def threads(array):
    """Threads for a pass over `array`: one for small arrays."""
    return _config.threads_for(array.nbytes, _config.SERIAL_BYTES)
