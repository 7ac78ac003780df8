"""Loss functions (MegEngine's `F.loss`), composites of F ops."""

from __future__ import annotations

from typing import Any

import numpy as np

from ir.types import DType

from ..tensor import Tensor, as_tensor
from .elementwise import abs as _abs, cast, log, mul, relu, sub, square, add, neg, log1p, exp
from .nn import log_softmax, one_hot
from .reduction import mean, sum

__all__ = ["cross_entropy", "square_loss", "mse_loss", "l1_loss", "binary_cross_entropy"]


def _reduce(name: str, loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(pred: Any, label: Any, axis: int = 1, with_logits: bool = True, label_smooth: float = 0.0,
                  reduction: str = "mean") -> Tensor:
    """Cross entropy of class scores `pred` (classes along `axis`) against integer `label`.

    `pred` holds logits (`with_logits=True`) or probabilities; `label` has
    `pred`'s shape without `axis`. `label_smooth` mixes the one-hot target
    with the uniform distribution, as MegEngine.
    """
    pred, label = as_tensor(pred), as_tensor(label)
    if not -pred.ndim <= axis < pred.ndim:
        raise ValueError(f"cross_entropy: axis {axis} is out of range for pred of shape {pred.shape}")
    axis %= pred.ndim
    if not label._type.dtype.is_int:
        raise TypeError(f"cross_entropy: label must hold integer class indices, got dtype {label.dtype}; "
                        "cast with label.astype('int32')")
    expected = pred.shape[:axis] + pred.shape[axis + 1:]
    if label.shape != expected:
        raise ValueError(f"cross_entropy: label shape {label.shape} must be pred's shape {pred.shape} "
                         f"without axis {axis}, i.e. {expected}")
    classes = pred.shape[axis]
    if label._symbol is None and label.size:
        values = np.asarray(label)
        if values.min() < 0 or values.max() >= classes:
            raise ValueError(f"cross_entropy: labels must be in [0, {classes}) for {classes} classes, "
                             f"got values in [{values.min()}, {values.max()}]")
    if not pred._type.dtype.is_float:
        pred = cast(pred, DType.float32)
    logp = log_softmax(pred, axis) if with_logits else log(pred)
    target = cast(one_hot(label, classes), pred._type.dtype)
    if axis != pred.ndim - 1:
        perm = list(range(pred.ndim - 1))
        perm.insert(axis, pred.ndim - 1)
        target = target.transpose(perm)
    if label_smooth:
        target = add(mul(target, 1.0 - label_smooth), label_smooth / classes)
    loss = neg(sum(mul(target, logp), axis))
    return _reduce("cross_entropy", loss, reduction)


def square_loss(pred: Any, label: Any, reduction: str = "mean") -> Tensor:
    """(pred - label)^2, averaged by default (MSE)."""
    return _reduce("square_loss", square(sub(pred, label)), reduction)


mse_loss = square_loss


def l1_loss(pred: Any, label: Any, reduction: str = "mean") -> Tensor:
    """|pred - label|, averaged by default."""
    return _reduce("l1_loss", _abs(sub(pred, label)), reduction)


def binary_cross_entropy(pred: Any, label: Any, with_logits: bool = True, reduction: str = "mean") -> Tensor:
    """-(label log p + (1 - label) log(1 - p)); with logits, p = sigmoid(pred) computed stably."""
    pred = as_tensor(pred)
    if not pred._type.dtype.is_float:
        pred = cast(pred, DType.float32)
    label = cast(as_tensor(label, pred), pred._type.dtype)
    if with_logits:
        # log(1 + exp(-|x|)) + max(x, 0) - x * label  ==  softplus(x) - x * label
        loss = sub(add(relu(pred), log1p(exp(neg(_abs(pred))))), mul(pred, label))
    else:
        one_minus = sub(1.0, label)
        loss = neg(add(mul(label, log(pred)), mul(one_minus, log(sub(1.0, pred)))))
    return _reduce("binary_cross_entropy", loss, reduction)
