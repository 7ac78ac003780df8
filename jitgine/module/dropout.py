"""Dropout."""

from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor
from .module import Module


class Dropout(Module):
    """Zero elements with probability `drop_prob` in training; identity in eval (and for p = 0)."""

    def __init__(self, drop_prob: float = 0.0, name: str | None = None) -> None:
        super().__init__(name)
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"Dropout: drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.drop_prob, self.training)

    def _extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
