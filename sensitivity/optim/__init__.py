"""Optimizers: AdamRAG (this product's) and the factories of the baselines a study can sweep.

What each optimizer is (names, defaults, lr ranges) is described in :mod:`sensitivity.catalog`.
"""

from sensitivity.optim.adamrag import AdamRAG
from sensitivity.optim.registry import FACTORIES, build_optimizer

__all__ = ["AdamRAG", "FACTORIES", "build_optimizer"]
