"""Embedding: a (num_embeddings, embedding_dim) table whose rows integer indices select."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from .. import random
from ..tensor import Parameter, Tensor
from .module import Module


class Embedding(Module):
    """weight from N(0, 1) as PyTorch/MegEngine (or `initial_weight`, copied); forward(indices) has
    shape indices.shape + (embedding_dim,) (see F.embedding)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, initial_weight: Any = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        shape = (self.num_embeddings, self.embedding_dim)
        if initial_weight is None:
            weight = random.generator().normal(0.0, 1.0, shape).astype(np.float32)
        else:
            weight = np.array(initial_weight, np.float32)
            if weight.shape != shape:
                raise ValueError(f"Embedding: initial_weight has shape {weight.shape}, expected {shape}")
        self.weight = Parameter(weight)

    def forward(self, indices: Tensor) -> Tensor:
        return F.embedding(indices, self.weight)

    def _extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"
