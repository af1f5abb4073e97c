"""Shared sample tables: what the tests check is what the benchmarks measure."""
from .cases import (
    CONV_CASES,
    POOL_CASES,
    POOL_SUITE_LAYERS,
    SUITE_LAYERS,
    ConvCase,
    PoolCase,
    conv_inputs,
    pool_input,
)

__all__ = ["CONV_CASES", "POOL_CASES", "POOL_SUITE_LAYERS", "SUITE_LAYERS", "ConvCase", "PoolCase", "conv_inputs", "pool_input"]
