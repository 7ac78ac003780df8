"""RMSprop, plain or centered, with momentum and (L2) weight decay, as PyTorch."""

from __future__ import annotations

from typing import Any, Iterable

from .. import functional as F
from ..tensor import Tensor
from .optimizer import Optimizer, ParamGroup, l2_decayed, zeros_slot


class RMSprop(Optimizer):
    """v = alpha v + (1 - alpha) g^2;  avg = sqrt(v) + eps, or sqrt(v - ga^2) + eps when centered
    (ga = alpha ga + (1 - alpha) g);  buf = momentum buf + g / avg, p -= lr * buf (momentum) or
    p -= lr * g / avg;  weight decay adds wd * p to g."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"RMSprop: alpha must be in [0, 1), got {alpha}")
        if eps < 0 or weight_decay < 0 or momentum < 0:
            raise ValueError(f"RMSprop: eps ({eps}), weight_decay ({weight_decay}) and momentum ({momentum}) "
                             "must be >= 0")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                                  "momentum": momentum, "centered": bool(centered)})

    def _update(self, param: Tensor, grad: Tensor, group: ParamGroup, state: dict[str, Tensor]) -> None:
        alpha, momentum = group["alpha"], group["momentum"]
        grad = l2_decayed(grad, param, group["weight_decay"])
        if "square_avg" not in state:
            state["square_avg"] = zeros_slot(param)
        v = F.add(F.mul(state["square_avg"], alpha), F.mul(F.mul(grad, grad), 1.0 - alpha))
        state["square_avg"]._reset(v)
        if group["centered"]:
            if "grad_avg" not in state:
                state["grad_avg"] = zeros_slot(param)
            ga = F.add(F.mul(state["grad_avg"], alpha), F.mul(grad, 1.0 - alpha))
            state["grad_avg"]._reset(ga)
            v = F.maximum(F.sub(v, F.mul(ga, ga)), 0.0)  # >= 0 exactly; rounding must not make it a NaN
        update = F.div(grad, F.add(F.sqrt(v), group["eps"]))
        if momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = zeros_slot(param)
            update = F.add(F.mul(state["momentum_buffer"], momentum), update)
            state["momentum_buffer"]._reset(update)
        param._reset(F.sub(param, F.mul(update, self._lr(group, param))))
