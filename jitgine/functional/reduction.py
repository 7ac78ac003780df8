"""Reductions over axes, with MegEngine's `axis` / `keepdims` conventions."""

from __future__ import annotations

import builtins
from typing import Any, Sequence

from ir.types import DType

from ..core.dispatch import apply1
from ..tensor import Tensor, as_tensor
from .elementwise import cast, mul, sub, true_div, sqrt as _sqrt, square
from .shape import reshape


def normalize_axes(name: str, x: Tensor, axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, int) or not -x.ndim <= a < builtins.max(x.ndim, 1):
            raise ValueError(f"{name}: axis {a} is out of range for a tensor of shape {x.shape}")
        out.append(a % x.ndim if x.ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: axis {axis} repeats an axis")
    return tuple(sorted(out)) if x.ndim else ()


def _keep(x: Tensor, result: Tensor, axes: Sequence[int], keepdims: bool) -> Tensor:
    if not keepdims:
        return result
    return reshape(result, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))


def _reduce(primitive: str, name: str, x: Any, axis: Any, keepdims: bool) -> Tensor:
    x = as_tensor(x)
    axes = normalize_axes(name, x, axis)
    if x._type.dtype.is_bool:
        x = cast(x, DType.int32)
    result = apply1(primitive, x, axes=axes) if axes else x
    return _keep(x, result, axes, keepdims)


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _reduce("reduce_sum", "sum", x, axis, keepdims)


def max(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _reduce("reduce_max", "max", x, axis, keepdims)


def min(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _reduce("reduce_min", "min", x, axis, keepdims)


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    x = as_tensor(x)
    axes = normalize_axes("mean", x, axis)
    count = 1
    for a in axes:
        count *= x.shape[a]
    total = sum(x if x._type.dtype.is_float else cast(x, DType.float32), axes, keepdims)
    return mul(total, 1.0 / count) if count else true_div(total, 0.0)


def var(x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    x = as_tensor(x)
    axes = normalize_axes("var", x, axis)
    count = 1
    for a in axes:
        count *= x.shape[a]
    centered = sub(x, mean(x, axes, keepdims=True))
    return true_div(sum(square(centered), axes, keepdims), float(count - ddof))


def std(x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    return _sqrt(var(x, axis, keepdims, ddof))


def _arg(primitive: str, x: Any, axis: Any, keepdims: bool) -> Tensor:
    x = as_tensor(x)
    if x._type.dtype.is_bool:
        x = cast(x, DType.int32)
    if axis is None:
        flat = reshape(x, (x.size,))
        result = apply1(primitive, flat, axis=0)
        return reshape(result, (1,) * x.ndim) if keepdims else result
    (a,) = normalize_axes(primitive, x, axis)
    return _keep(x, apply1(primitive, x, axis=a), (a,), keepdims)


def argmax(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _arg("argmax", x, axis, keepdims)


def argmin(x: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _arg("argmin", x, axis, keepdims)


def norm(x: Any, ord: float = 2, axis: Any = None, keepdims: bool = False) -> Tensor:
    from .elementwise import abs as _abs, pow as _pow

    if ord == 2:
        return _sqrt(sum(square(x), axis, keepdims))
    return _pow(sum(_pow(_abs(x), ord), axis, keepdims), 1.0 / ord)
