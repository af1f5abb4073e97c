"""Keep freed memory in the process for the next batch (glibc's malloc only).

A training step allocates and frees the same arrays every batch (outputs, gradients,
masks, workspaces: ~100 MB for the Fashion-MNIST benchmark network). glibc gives freed
memory at the top of its heap back to the system once more than its trim threshold is
free (by default twice the largest block freed so far), so the next step's arrays land
on fresh pages, each faulted in and zeroed by the kernel: 7,200 page faults per
Fashion-MNIST step, and the step took 60-80 ms against 47-52 ms without them on this
2-core VM. Fixing the thresholds keeps up to TRIM_THRESHOLD bytes of free heap for reuse:
    mmap threshold  32 MB  blocks below it come from the heap (glibc's own ceiling for
                           the value its dynamic rule reaches anyway);
    trim threshold 128 MB  free heap kept before any is returned.
The user's own malloc settings (MALLOC_*_ variables, GLIBC_TUNABLES) win, and
FASTCONV_KEEP_FREED_MEMORY=0 keeps glibc's defaults.
"""
import ctypes
import os

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20
_M_TRIM_THRESHOLD = -1   # mallopt's parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "GLIBC_TUNABLES")

kept = False   # whether the thresholds were set (`fastconv info` reports it)


def keep_freed_memory():
    """Set glibc's thresholds unless the user chose otherwise; True if they were set."""
    global kept
    if os.environ.get("FASTCONV_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version   # glibc only: musl and others tune malloc differently
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    kept = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return kept


def description():
    if kept:
        return (f"glibc keeps up to {TRIM_THRESHOLD >> 20} MB freed for reuse "
                "(FASTCONV_KEEP_FREED_MEMORY=0: its defaults)")
    return "system defaults"
