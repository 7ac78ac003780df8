"""Conv2d, Conv1d and ConvTranspose2d: F.conv2d / F.conv1d / F.conv_transpose2d with a weight and a bias."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import functional as F
from .. import random
from ..tensor import Parameter, Tensor
from .module import Module


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _parameters(layer: str, in_channels: int, out_channels: int, groups: int, weight_shape: tuple[int, ...],
                fan_in: int, bias: bool) -> tuple[Parameter, Parameter | None]:
    """Weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's kaiming-uniform with a=sqrt(5)),
    with `jitgine.random`'s generator (float32), once the groups divide the channels."""
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{layer}: in_channels {in_channels} and out_channels {out_channels} must be "
                         f"divisible by groups={groups}")
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    rng = random.generator()
    weight = Parameter(rng.uniform(-bound, bound, weight_shape).astype(np.float32))
    return weight, Parameter(rng.uniform(-bound, bound, (out_channels,)).astype(np.float32)) if bias else None


class _Conv(Module):
    def _extra_repr(self) -> str:
        extra = f", output_padding={self.output_padding}" if hasattr(self, "output_padding") else ""
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}{extra}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={self.bias is not None}")


class Conv2d(_Conv):
    """2-D convolution with `weight` (out_channels, in_channels/groups, KH, KW) and `bias` (out_channels,),
    initialised as PyTorch (fan_in = in_channels/groups*KH*KW)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation, self.groups = _pair(padding), _pair(dilation), int(groups)
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight, self.bias = _parameters("Conv2d", in_channels, out_channels, groups,
                                             (out_channels, in_channels // groups) + self.kernel_size, fan_in, bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(_Conv):
    """1-D convolution with `weight` (out_channels, in_channels/groups, K) and `bias` (out_channels,),
    initialised as Conv2d (fan_in = in_channels/groups*K)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, bias: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        self.in_channels, self.out_channels, self.kernel_size = int(in_channels), int(out_channels), int(kernel_size)
        self.stride, self.padding, self.dilation, self.groups = int(stride), int(padding), int(dilation), int(groups)
        self.weight, self.bias = _parameters("Conv1d", in_channels, out_channels, groups,
                                             (out_channels, in_channels // groups, self.kernel_size),
                                             in_channels // groups * self.kernel_size, bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_Conv):
    """Transposed 2-D convolution (F.conv_transpose2d) with `weight` (in_channels, out_channels/groups,
    KH, KW) and `bias` (out_channels,), initialised as PyTorch (fan_in = out_channels/groups*KH*KW)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.output_padding, self.dilation, self.groups = _pair(output_padding), _pair(dilation), int(groups)
        fan_in = out_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight, self.bias = _parameters("ConvTranspose2d", in_channels, out_channels, groups,
                                             (in_channels, out_channels // groups) + self.kernel_size, fan_in, bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                  self.dilation, self.groups)
