"""`fastconv bench`: every algorithm against the reference and PyTorch, in one process.

Each measurement interleaves its contenders round by round and reports medians,
so a busy neighbour on a shared machine slows all of them alike.
"""
from .ceilings import copy_gbytes, sgemm_gflops
from .conv import run_conv_suite
from .pooling import run_pool_suite

__all__ = ["sgemm_gflops", "copy_gbytes", "run_conv_suite", "run_pool_suite"]
