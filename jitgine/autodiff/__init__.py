"""jitgine.autodiff: reverse-mode differentiation over recorded primitives."""

from .grad_manager import GradManager
from .vjp import NON_DIFFERENTIABLE, VJP

__all__ = ["GradManager", "VJP", "NON_DIFFERENTIABLE"]
