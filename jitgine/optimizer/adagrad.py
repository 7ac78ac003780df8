"""Adagrad and Adadelta: per-parameter rates from accumulated squared gradients, as PyTorch/MegEngine."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .optimizer import Optimizer, ParamGroup, l2_decayed, zeros_slot


class Adagrad(Optimizer):
    """sum += g^2;  p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps), the sum starting at
    initial_accumulator_value; weight decay adds wd * p to g. The step count t is a 0-d Tensor slot
    (as Adam's), so a traced step stays valid as t grows."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        if lr_decay < 0 or weight_decay < 0 or initial_accumulator_value < 0 or eps < 0:
            raise ValueError(f"Adagrad: lr_decay ({lr_decay}), weight_decay ({weight_decay}), "
                             f"initial_accumulator_value ({initial_accumulator_value}) and eps ({eps}) must be >= 0")
        super().__init__(params, {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay,
                                  "initial_accumulator_value": initial_accumulator_value, "eps": eps})

    def _update(self, param: Tensor, grad: Tensor, group: ParamGroup, state: dict[str, Tensor]) -> None:
        lr = self._lr(group, param)
        grad = l2_decayed(grad, param, group["weight_decay"])
        if "step" not in state:
            state["step"] = Tensor(np.zeros((), param.dtype))
            state["sum"] = Tensor(np.full(param.shape, group["initial_accumulator_value"], param.dtype))
        step = F.add(state["step"], 1.0)
        total = F.add(state["sum"], F.mul(grad, grad))
        if group["lr_decay"]:
            lr = F.div(lr, F.add(F.mul(F.sub(step, 1.0), group["lr_decay"]), 1.0))
        state["step"]._reset(step)
        state["sum"]._reset(total)
        param._reset(F.sub(param, F.mul(F.div(grad, F.add(F.sqrt(total), group["eps"])), lr)))


class Adadelta(Optimizer):
    """sq = rho sq + (1 - rho) g^2;  d = sqrt(acc + eps) / sqrt(sq + eps) * g;  acc = rho acc + (1 - rho) d^2;
    p -= lr * d;  weight decay adds wd * p to g."""

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Adadelta: rho must be in [0, 1], got {rho}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"Adadelta: eps ({eps}) and weight_decay ({weight_decay}) must be >= 0")
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay})

    def _update(self, param: Tensor, grad: Tensor, group: ParamGroup, state: dict[str, Tensor]) -> None:
        rho, eps = group["rho"], group["eps"]
        grad = l2_decayed(grad, param, group["weight_decay"])
        if "square_avg" not in state:
            state["square_avg"] = zeros_slot(param)
            state["acc_delta"] = zeros_slot(param)
        sq = F.add(F.mul(state["square_avg"], rho), F.mul(F.mul(grad, grad), 1.0 - rho))
        delta = F.mul(F.div(F.sqrt(F.add(state["acc_delta"], eps)), F.sqrt(F.add(sq, eps))), grad)
        acc = F.add(F.mul(state["acc_delta"], rho), F.mul(F.mul(delta, delta), 1.0 - rho))
        state["square_avg"]._reset(sq)
        state["acc_delta"]._reset(acc)
        param._reset(F.sub(param, F.mul(delta, self._lr(group, param))))
