"""Linear: y = x @ weight.T + bias."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import random
from ..tensor import Parameter, Tensor
from .module import Module


class Linear(Module):
    """Fully connected layer with `weight` of shape (out_features, in_features).

    Initialisation as PyTorch (kaiming-uniform with a=sqrt(5)) / MegEngine:
    weight and bias are drawn from U(-1/sqrt(in_features), 1/sqrt(in_features))
    with `jitgine.random`'s generator (float32).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        rng = random.generator()
        self.weight = Parameter(rng.uniform(-bound, bound, (out_features, in_features)).astype(np.float32))
        self.bias = Parameter(rng.uniform(-bound, bound, (out_features,)).astype(np.float32)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def _extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
