"""Host-side random state: parameter initialisation draws from one NumPy Generator.

`seed(n)` makes every later initialisation reproducible (as `megengine.random.seed`).
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def seed(value: int) -> None:
    """Reseed the generator that module initialisation draws from."""
    global _generator
    _generator = np.random.default_rng(int(value))


def generator() -> np.random.Generator:
    """The module-level Generator (reseeded by `seed`)."""
    return _generator


__all__ = ["seed", "generator"]
