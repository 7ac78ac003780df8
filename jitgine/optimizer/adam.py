"""Adam and AdamW (decoupled weight decay), as PyTorch/MegEngine."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .optimizer import Optimizer, ParamGroup, l2_decayed, zeros_slot


class Adam(Optimizer):
    """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr * m^ / (sqrt(v^) + eps),
    with bias-corrected m^ = m / (1 - b1^t), v^ = v / (1 - b2^t); weight decay adds wd * p to g.
    The step count t is a 0-d Tensor slot, so a traced step stays valid as t grows."""

    decoupled = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: eps ({eps}) and weight_decay ({weight_decay}) must be >= 0")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def _update(self, param: Tensor, grad: Tensor, group: ParamGroup, state: dict[str, Tensor]) -> None:
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        lr = self._lr(group, param)
        if not self.decoupled:
            grad = l2_decayed(grad, param, wd)
        if "step" not in state:
            state["step"] = Tensor(np.zeros((), param.dtype))
            state["exp_avg"] = zeros_slot(param)
            state["exp_avg_sq"] = zeros_slot(param)
        step = F.add(state["step"], 1.0)
        m = F.add(F.mul(state["exp_avg"], beta1), F.mul(grad, 1.0 - beta1))
        v = F.add(F.mul(state["exp_avg_sq"], beta2), F.mul(F.mul(grad, grad), 1.0 - beta2))
        m_hat = F.div(m, _bias_correction(beta1, step))
        v_hat = F.div(v, _bias_correction(beta2, step))
        update = F.div(m_hat, F.add(F.sqrt(v_hat), group["eps"]))
        if wd and self.decoupled:
            update = F.add(update, F.mul(param, wd))
        state["step"]._reset(step)
        state["exp_avg"]._reset(m)
        state["exp_avg_sq"]._reset(v)
        param._reset(F.sub(param, F.mul(update, lr)))


def _bias_correction(beta: float, step: Tensor) -> Tensor:
    """1 - beta ** step as -expm1(step * log(beta)): accurate in float32 even when it is tiny (t = 1)."""
    if beta == 0.0:
        return F.ones_like(step)
    return F.neg(F.expm1(F.mul(step, math.log(beta))))


class AdamW(Adam):
    """Adam with decoupled weight decay: p -= lr * (m^ / (sqrt(v^) + eps) + wd * p); wd defaults to 1e-2."""

    decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)
