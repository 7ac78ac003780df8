"""Neural-network functional ops (MegEngine's `F.nn`): contractions and composites.

Everything but `matmul` is a composite of primitives through F ops, so it is
traced, differentiated and fused like any user code.
"""

from __future__ import annotations

import math
from typing import Any

from ir.types import DType, promote

from ..core.dispatch import apply1
from ..tensor import Tensor, as_tensor
from .elementwise import (
    abs, add, cast, equal, erf, exp, log, log1p, maximum, minimum, mul, relu, sigmoid, sub, tanh, true_div,
    where,
)
from .reduction import max, norm, sum
from .shape import arange, reshape, squeeze, expand_dims

__all__ = [
    "matmul", "linear", "softmax", "log_softmax", "logsumexp", "gelu", "silu", "softplus", "leaky_relu",
    "relu6", "hsigmoid", "one_hot", "batch_norm", "dropout", "relu", "sigmoid", "tanh", "layer_norm", "hswish",
    "logsigmoid", "prelu", "normalize", "embedding",
]


def matmul(a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False) -> Tensor:
    """op(a) @ op(b) with NumPy batch broadcasting; 1-D operands act as NumPy's matmul.

    A 1-D `a` is a row vector (its dim is removed from the result), a 1-D `b` a
    column vector; transpose flags apply to operands of 2 or more dims. Integer
    operands compute in float32, mixed floats in the wider dtype.
    """
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dim, got shapes {a.shape} and {b.shape}; "
                         "use F.mul for scalars")
    dtype = promote(a._type.dtype, b._type.dtype)
    if not dtype.is_float:
        dtype = DType.float32
    a, b = cast(a, dtype), cast(b, dtype)
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    if vector_a:
        a, transpose_a = reshape(a, (1, a.shape[0])), False
    if vector_b:
        b, transpose_b = reshape(b, (b.shape[0], 1)), False
    out = apply1("matmul", a, b, transpose_a=bool(transpose_a), transpose_b=bool(transpose_b))
    if vector_a and vector_b:
        return reshape(out, ())
    if vector_a:
        return squeeze(out, out.ndim - 2)
    if vector_b:
        return squeeze(out, out.ndim - 1)
    return out


def linear(x: Any, weight: Any, bias: Any = None) -> Tensor:
    """x @ weight.T + bias, with `weight` of shape (out_features, in_features) as MegEngine/PyTorch."""
    out = matmul(x, weight, transpose_b=True)
    return out if bias is None else add(out, bias)


def _axis(name: str, x: Tensor, axis: int) -> int:
    if not isinstance(axis, int) or not -x.ndim <= axis < _larger(x.ndim, 1):
        raise ValueError(f"{name}: axis {axis} is out of range for a tensor of shape {x.shape}")
    return axis % x.ndim if x.ndim else 0


def _larger(a: int, b: int) -> int:  # the builtin max is shadowed by F.max here
    return a if a > b else b


def _float(x: Any) -> Tensor:
    x = as_tensor(x)
    return x if x._type.dtype.is_float else cast(x, DType.float32)


def softmax(x: Any, axis: int = -1) -> Tensor:
    """exp(x - max) / sum(exp(x - max)) along `axis` (max detached: it only shifts for stability)."""
    x = _float(x)
    axis = _axis("softmax", x, axis)
    e = exp(sub(x, max(x, axis, keepdims=True).detach()))
    return true_div(e, sum(e, axis, keepdims=True))


def logsumexp(x: Any, axis: int = -1, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) along `axis`, computed stably around the (detached) max."""
    x = _float(x)
    axis = _axis("logsumexp", x, axis)
    m = max(x, axis, keepdims=True).detach()
    out = add(log(sum(exp(sub(x, m)), axis, keepdims=True)), m)
    return out if keepdims else squeeze(out, axis)


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    """x - max - log(sum(exp(x - max))) along `axis`, with max detached."""
    x = _float(x)
    axis = _axis("log_softmax", x, axis)
    shifted = sub(x, max(x, axis, keepdims=True).detach())
    return sub(shifted, log(sum(exp(shifted), axis, keepdims=True)))


def gelu(x: Any) -> Tensor:
    """x * Phi(x) in the exact erf form: 0.5 * x * (1 + erf(x / sqrt(2)))."""
    x = _float(x)
    return mul(mul(x, 0.5), add(erf(mul(x, 1.0 / math.sqrt(2.0))), 1.0))


def silu(x: Any) -> Tensor:
    """x * sigmoid(x)."""
    x = _float(x)
    return mul(x, sigmoid(x))


def softplus(x: Any) -> Tensor:
    """log(1 + exp(x)) computed stably as relu(x) + log1p(exp(-|x|))."""
    x = _float(x)
    return add(relu(x), log1p(exp(-abs(x))))


def leaky_relu(x: Any, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, else negative_slope * x."""
    x = _float(x)
    return where(x > 0, x, mul(x, negative_slope))


def relu6(x: Any) -> Tensor:
    """min(max(x, 0), 6)."""
    return minimum(relu(x), 6)


def hsigmoid(x: Any) -> Tensor:
    """relu6(x + 3) / 6, as MegEngine."""
    return true_div(relu6(add(x, 3)), 6)


def one_hot(inp: Any, num_classes: int) -> Tensor:
    """int32 one-hot encoding along a new last axis: (inp[..., None] == arange(num_classes))."""
    inp = as_tensor(inp)
    if not inp._type.dtype.is_int:
        raise TypeError(f"one_hot: labels must be an integer tensor, got {inp.dtype}; cast with astype('int32')")
    classes = arange(num_classes, dtype=inp.dtype)
    return cast(equal(expand_dims(inp, inp.ndim), classes), DType.int32)


def dropout(inp: Any, drop_prob: float, training: bool = True) -> Tensor:
    """Inverted dropout: zero each element with probability `drop_prob`, scale the rest by 1 / (1 - drop_prob).

    The mask comes from `jitgine.random`'s counter-based stream (a fresh draw per call, also in a
    traced step). It is an ordinary tensor that multiplies the input, so the backward pass reuses
    the very mask of the forward pass. Identity when not training or `drop_prob` is 0.
    """
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"dropout: drop_prob must be in [0, 1), got {drop_prob}")
    if not training or drop_prob == 0.0:
        return as_tensor(inp)
    from .. import random

    x = _float(inp)
    keep = random.default_rng().uniform(size=x.shape) >= float(drop_prob)
    return mul(x, mul(cast(keep, x._type.dtype), 1.0 / (1.0 - drop_prob)))


def _moments(x: Tensor, axes: tuple[int, ...], count: int) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, x - mean, biased variance) over `axes` (kept), of `count` elements each."""
    scale = 1.0 / _larger(count, 1)
    mean = mul(sum(x, axes, keepdims=True), scale)
    centered = sub(x, mean)
    return mean, centered, mul(sum(mul(centered, centered), axes, keepdims=True), scale)


def batch_norm(inp: Any, running_mean: Tensor | None = None, running_var: Tensor | None = None,
               weight: Any = None, bias: Any = None, *, training: bool = False, momentum: float = 0.9,
               eps: float = 1e-5, inplace: bool = True) -> Tensor:
    """Normalise over every axis but 1 (channels), as MegEngine's F.batch_norm.

    In training the batch statistics normalise and, with `inplace`, update the
    running ones: running = momentum * running + (1 - momentum) * batch
    (the variance unbiased), written with `Tensor._reset` so a traced step
    turns them into state updates. Otherwise the running statistics normalise.
    Statistics and affine parameters may have shape (C,) or (1, C, 1, ...).
    """
    x = _float(inp)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: input needs a batch and a channel dim, got shape {x.shape}")
    channels = x.shape[1]
    stat_shape = (1, channels) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))

    def per_channel(t: Any, what: str) -> Tensor:
        t = as_tensor(t, x)
        if t.size != channels:
            raise ValueError(f"batch_norm: {what} has {t.size} elements but the input has {channels} channels "
                             f"(shape {x.shape})")
        return reshape(t, stat_shape)

    if training:
        count = x.size // channels if channels else 0
        mean, centered, var = _moments(x, axes, count)
        if inplace and running_mean is not None:
            new = add(mul(per_channel(running_mean, "running_mean"), momentum), mul(mean.detach(), 1.0 - momentum))
            running_mean._reset(cast(reshape(new, running_mean.shape), running_mean._type.dtype))
        if inplace and running_var is not None:
            unbiased = mul(var.detach(), count / _larger(count - 1, 1))
            new = add(mul(per_channel(running_var, "running_var"), momentum), mul(unbiased, 1.0 - momentum))
            running_var._reset(cast(reshape(new, running_var.shape), running_var._type.dtype))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: inference (training=False) needs running_mean and running_var")
        mean = per_channel(running_mean, "running_mean")
        var = per_channel(running_var, "running_var")
        centered = sub(x, mean)
    out = mul(centered, apply1("rsqrt", add(var, as_tensor(eps, var))))
    if weight is not None:
        out = mul(out, per_channel(weight, "weight"))
    if bias is not None:
        out = add(out, per_channel(bias, "bias"))
    return out


def layer_norm(inp: Any, normalized_shape: Any, affine: bool = True, weight: Any = None, bias: Any = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing `normalized_shape` dims (biased variance), then
    `* weight + bias` when `affine`, as MegEngine's F.nn.layer_norm."""
    x = _float(inp)
    shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(int(d) for d in normalized_shape)
    if not shape or x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"layer_norm: normalized_shape {shape} must be the trailing dims of the input shape {x.shape}")
    _, centered, var = _moments(x, tuple(range(x.ndim - len(shape), x.ndim)), math.prod(shape))
    out = mul(centered, apply1("rsqrt", add(var, as_tensor(eps, var))))
    if affine:
        if weight is None or bias is None:
            raise ValueError("layer_norm: affine=True needs weight and bias of the normalized shape")
        out = add(mul(out, reshape(as_tensor(weight, out), shape)), reshape(as_tensor(bias, out), shape))
    return out


def hswish(x: Any) -> Tensor:
    """x * relu6(x + 3) / 6, as MegEngine."""
    x = _float(x)
    return mul(x, hsigmoid(x))


def logsigmoid(x: Any) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    return -softplus(-_float(x))


def prelu(inp: Any, weight: Any) -> Tensor:
    """x where x > 0, else weight * x; `weight` (one value, or one per channel of axis 1)."""
    x = _float(inp)
    w = as_tensor(weight, x)
    if w.size not in (1, x.shape[1] if x.ndim > 1 else 1):
        raise ValueError(f"prelu: weight has {w.size} elements; it needs 1 or one per channel "
                         f"({x.shape[1] if x.ndim > 1 else 1}) of the input shape {x.shape}")
    if w.size > 1:
        w = reshape(w, (1, w.size) + (1,) * (x.ndim - 2))
    return where(x > 0, x, mul(x, w))


def normalize(inp: Any, ord: float = 2, axis: Any = None, eps: float = 1e-12) -> Tensor:
    """inp / max(norm(inp, ord, axis), eps), as MegEngine's F.normalize."""
    x = _float(inp)
    length = norm(x, ord, axis, keepdims=axis is not None)
    return true_div(x, maximum(length, eps))


def embedding(inp: Any, weight: Any) -> Tensor:
    """Rows of `weight` (num_embeddings, dim) at the integer indices `inp`: out shape inp.shape + (dim,).

    one_hot(inp) @ weight: differentiable in `weight` (its gradient is the summed rows), at
    num_embeddings multiply-adds per output element."""
    index, table = as_tensor(inp), _float(weight)
    if table.ndim != 2:
        raise ValueError(f"embedding: weight must be (num_embeddings, dim), got shape {table.shape}")
    rows = cast(one_hot(reshape(index, (index.size,)), table.shape[0]), table._type.dtype)
    return reshape(matmul(rows, table), index.shape + (table.shape[1],))


def __getattr__(name: str) -> Any:
    # F.nn mirrors MegEngine: every F op and loss is reachable as F.nn.<op> too.
    from .. import functional
    from . import loss

    for home in (functional, loss):
        if name != "__path__" and name in vars(home):
            return vars(home)[name]
    raise AttributeError(f"module 'jitgine.functional.nn' has no attribute {name!r}")
