"""Thread-pool settings that must be in the environment before NumPy, SciPy and OpenMP load.

A training step alternates OpenMP kernels with BLAS GEMMs (and NumPy and SciPy
each bring their own OpenBLAS). Idle OpenBLAS workers spin for about 2**28 cycles
and idle OpenMP workers spin too, so on a 2-core machine each pool's spinning
threads steal the cores the next pool needs: a Fashion-MNIST training step took
300 ms on 2 threads against 170 ms on one. With idle workers sleeping at once it
takes 105 ms. Users' own settings win; this only fills in what is unset, and it
has no effect on libraries already loaded when fastconv is imported.
"""
import os

DEFAULTS = {
    "OPENBLAS_THREAD_TIMEOUT": "4",  # idle OpenBLAS workers sleep after 2**4 cycles
    "OMP_WAIT_POLICY": "PASSIVE",    # idle OpenMP workers sleep instead of spinning
}

for _name, _value in DEFAULTS.items():
    os.environ.setdefault(_name, _value)
