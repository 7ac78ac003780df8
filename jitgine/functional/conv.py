"""Convolution and pooling (MegEngine's F.conv2d, F.max_pool2d, F.avg_pool2d) on NCHW tensors."""

from __future__ import annotations

from typing import Any

from ir.types import DType, promote

from ..core.dispatch import apply1
from ..tensor import Tensor, as_tensor
from .elementwise import add, cast
from .shape import reshape

__all__ = ["conv2d", "max_pool2d", "avg_pool2d"]


def _pair(name: str, what: str, value: Any) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name}: {what} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _float(x: Tensor, dtype: DType) -> Tensor:
    return x if x._type.dtype == dtype else cast(x, dtype)


def conv2d(inp: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
           groups: int = 1) -> Tensor:
    """2-D cross-correlation of `inp` (N, C, H, W) with `weight` (O, C/groups, KH, KW), zero padding.

    `bias` of shape (O,) or (1, O, 1, 1) is added per output channel. Integer
    operands compute in float32, mixed floats in the wider dtype.
    """
    x, w = as_tensor(inp), as_tensor(weight)
    dtype = promote(x._type.dtype, w._type.dtype)
    if not dtype.is_float:
        dtype = DType.float32
    out = apply1("conv2d", _float(x, dtype), _float(w, dtype), stride=_pair("conv2d", "stride", stride),
                 padding=_pair("conv2d", "padding", padding), dilation=_pair("conv2d", "dilation", dilation),
                 groups=int(groups))
    if bias is None:
        return out
    b = as_tensor(bias, out)
    if b.size != out.shape[1]:
        raise ValueError(f"conv2d: bias has shape {b.shape} but the output has {out.shape[1]} channels; "
                         f"pass a bias of shape ({out.shape[1]},) or (1, {out.shape[1]}, 1, 1)")
    return add(out, reshape(_float(b, out._type.dtype), (1, out.shape[1], 1, 1)))


def _pool(primitive: str, inp: Any, kernel_size: Any, stride: Any, padding: Any) -> Tensor:
    x = as_tensor(inp)
    if not x._type.dtype.is_float:
        x = cast(x, DType.float32)
    kernel = _pair(primitive, "kernel_size", kernel_size)
    stride = kernel if stride is None else _pair(primitive, "stride", stride)
    return apply1(primitive, x, kernel=kernel, stride=stride, padding=_pair(primitive, "padding", padding))


def max_pool2d(inp: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Max over kernel_size windows (stride defaults to kernel_size); padding never wins."""
    return _pool("max_pool2d", inp, kernel_size, stride, padding)


def avg_pool2d(inp: Any, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Mean over kernel_size windows (stride defaults to kernel_size), dividing by the window area:
    padded zeros count (PyTorch's count_include_pad=True; MegEngine's default excludes them)."""
    return _pool("avg_pool2d", inp, kernel_size, stride, padding)
