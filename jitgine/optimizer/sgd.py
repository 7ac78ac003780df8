"""SGD with momentum, Nesterov momentum and (L2) weight decay, as MegEngine/PyTorch."""

from __future__ import annotations

from typing import Any, Iterable

from .. import functional as F
from ..tensor import Tensor
from .optimizer import Optimizer, ParamGroup, l2_decayed, zeros_slot


class SGD(Optimizer):
    """g = grad + wd * p;  buf = momentum * buf + g;  d = g + momentum * buf (nesterov) or buf;  p -= lr * d."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: momentum ({momentum}) and weight_decay ({weight_decay}) must be non-negative")
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov momentum needs momentum > 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                                  "weight_decay": weight_decay})

    def _update(self, param: Tensor, grad: Tensor, group: ParamGroup, state: dict[str, Tensor]) -> None:
        grad = l2_decayed(grad, param, group["weight_decay"])
        momentum = group["momentum"]
        if momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = zeros_slot(param)
            buf = F.add(F.mul(state["momentum_buffer"], momentum), grad)
            state["momentum_buffer"]._reset(buf)
            grad = F.add(grad, F.mul(buf, momentum)) if group["nesterov"] else buf
        param._reset(F.sub(param, F.mul(grad, self._lr(group, param))))
