"""Thread-pool settings that must be in the environment before NumPy, SciPy and OpenMP load.

Idle OpenBLAS workers spin for about 2**28 cycles after a product and take the cores the
next OpenMP kernel needs (a Fashion-MNIST training step: 300 ms on 2 threads against 170 ms
on one). They are told to sleep at once. Most of fastconv's BLAS calls are single-threaded
on OpenMP's workers anyway (im2col's and Winograd's tiles, the Dense layers' products).

Idle OpenMP workers (GNU libgomp, which PyTorch shares when both are loaded) spin for
300,000 rounds, about 3 ms here, then sleep. fastconv asks for 30,000, about 0.1-0.3 ms:
  - long enough to bridge back-to-back kernels and the Python between them. Workers put to
    sleep at once (OMP_WAIT_POLICY=PASSIVE, fastconv's earlier setting) are woken for
    every parallel region, 30-60 us each on a 2-core VM: a 0.07 ms average pool took
    0.13-0.17 ms, and PyTorch's small convolutions in the same process ran 1.5-2x slower
    than on their own;
  - short enough that where a GEMM still runs on OpenBLAS's threads (Winograd's and the
    Numba kernels' tiles in turn, NumPy's products in the user's own code), the OpenMP
    workers do not keep its cores: with libgomp's 3 ms, 512 channels at 7x7 ran 1.5x
    slower while im2col's GEMMs there still ran on BLAS's threads.
Users' own settings win; this only fills in what is unset, and it has no effect on
libraries already loaded when fastconv is imported.
"""
import os

DEFAULTS = {
    "OPENBLAS_THREAD_TIMEOUT": "4",  # idle OpenBLAS workers sleep after 2**4 cycles
}
OPENMP_SPIN_COUNT = "30000"

for _name, _value in DEFAULTS.items():
    os.environ.setdefault(_name, _value)
if "OMP_WAIT_POLICY" not in os.environ:     # a wait policy the user chose keeps its spin count
    os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)
