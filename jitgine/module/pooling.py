"""MaxPool2d / AvgPool2d (stride defaults to kernel_size) and their adaptive forms (an output size
instead of a window) as layers over the F ops."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..tensor import Tensor
from .module import Module


class _Pool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, name: str | None = None) -> None:
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def _extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Divides by the window area, padded zeros included (see F.avg_pool2d)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class _AdaptivePool2d(Module):
    def __init__(self, oshp: Any, name: str | None = None) -> None:
        super().__init__(name)
        self.oshp = oshp

    def _extra_repr(self) -> str:
        return f"oshp={self.oshp}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.oshp)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_max_pool2d(x, self.oshp)
