"""BatchNorm1d / BatchNorm2d (MegEngine semantics: momentum 0.9 keeps 90% of the running value)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..tensor import Parameter, Tensor
from .module import Module


class _BatchNorm(Module):
    """weight = 1, bias = 0; running_mean = 0, running_var = 1; all of shape (1, C, 1, 1) as MegEngine."""

    expected_ranks: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9, affine: bool = True,
                 track_running_stats: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.affine, self.track_running_stats = affine, track_running_stats
        shape = (1, self.num_features, 1, 1)
        self.weight = Parameter(np.ones(shape, np.float32)) if affine else None
        self.bias = Parameter(np.zeros(shape, np.float32)) if affine else None
        if track_running_stats:
            self.running_mean = Tensor(np.zeros(shape, np.float32))
            self.running_var = Tensor(np.ones(shape, np.float32))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self.expected_ranks:
            raise ValueError(f"{type(self).__name__}: expected input of rank {self.expected_ranks}, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): input has {x.shape[1]} channels "
                             f"(shape {x.shape})")
        use_batch = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=use_batch, momentum=self.momentum, eps=self.eps,
                            inplace=self.training and self.track_running_stats)

    def _extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """Over (N, C) or (N, C, L) inputs."""

    expected_ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Over (N, C, H, W) inputs."""

    expected_ranks = (4,)
