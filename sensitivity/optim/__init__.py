"""Optimizers: AdamRAG (this product's) and the registry of baselines a study can sweep."""

from sensitivity.optim.adamrag import AdamRAG
from sensitivity.optim.registry import (
    DEFAULT_OPTIMIZERS,
    OPTIMIZERS,
    OptimizerSpec,
    build_optimizer,
    get_optimizer_spec,
)

__all__ = [
    "AdamRAG",
    "DEFAULT_OPTIMIZERS",
    "OPTIMIZERS",
    "OptimizerSpec",
    "build_optimizer",
    "get_optimizer_spec",
]
