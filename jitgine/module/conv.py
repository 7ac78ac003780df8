"""Conv2d: y = conv2d(x, weight) + bias over NCHW tensors."""

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


class Conv2d(Module):
    """2-D convolution with `weight` (out_channels, in_channels/groups, KH, KW) and `bias` (out_channels,).

    Initialisation as PyTorch (kaiming-uniform with a=sqrt(5)): weight and bias
    from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels/groups*KH*KW,
    with `jitgine.random`'s generator (float32).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels {in_channels} and out_channels {out_channels} must be "
                             f"divisible by groups={groups}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation, self.groups = _pair(padding), _pair(dilation), int(groups)
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        rng = random.generator()
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(rng.uniform(-bound, bound, shape).astype(np.float32))
        self.bias = Parameter(rng.uniform(-bound, bound, (out_channels,)).astype(np.float32)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={self.bias is not None}")
