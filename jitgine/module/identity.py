"""Identity and Flatten: layers that only pass or reshape."""

from __future__ import annotations

from ..tensor import Tensor
from .module import Module


class Identity(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """Flatten dims start_axis..end_axis (default: all but the batch dim)."""

    def __init__(self, start_axis: int = 1, end_axis: int = -1, name: str | None = None) -> None:
        super().__init__(name)
        self.start_axis, self.end_axis = start_axis, end_axis

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_axis, self.end_axis)
