"""Convolution and pooling (MegEngine's F.conv2d, F.conv1d, F.conv_transpose2d, F.max_pool2d, F.avg_pool2d,
F.adaptive_*_pool2d) on NCHW tensors."""

from __future__ import annotations

from typing import Any

from ir.types import DType, promote

from ..core.dispatch import apply1
from ..tensor import Tensor, as_tensor
from .elementwise import add, cast
from .reduction import max as reduce_max, mean
from .shape import concat, expand_dims, reshape, slice_axis, squeeze

__all__ = ["conv2d", "conv1d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "adaptive_max_pool2d"]


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


def conv1d(inp: Any, weight: Any, bias: Any = None, stride: int = 1, padding: int = 0, dilation: int = 1,
           groups: int = 1) -> Tensor:
    """1-D cross-correlation of `inp` (N, C, L) with `weight` (O, C/groups, K): conv2d over a
    height of 1."""
    x, w = as_tensor(inp), as_tensor(weight)
    if x.ndim != 3 or w.ndim != 3:
        raise ValueError(f"conv1d: expects input (N, C, L) and weight (O, C/groups, K), got {x.shape} and {w.shape}")
    out = conv2d(expand_dims(x, 2), expand_dims(w, 2), bias, (1, int(stride)), (0, int(padding)),
                 (1, int(dilation)), groups)
    return squeeze(out, 2)


def conv_transpose2d(inp: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """The transpose (gradient) of conv2d: `inp` (N, C_in, H, W), `weight` (C_in, C_out/groups, KH, KW)
    as MegEngine/PyTorch; output size (H - 1) * stride - 2 * padding + dilation * (KH - 1) +
    output_padding + 1. It is conv2d's grad_input primitive, differentiable in both operands."""
    x, w = as_tensor(inp), as_tensor(weight)
    dtype = promote(x._type.dtype, w._type.dtype)
    if not dtype.is_float:
        dtype = DType.float32
    if x.ndim != 4 or w.ndim != 4 or w.shape[0] != x.shape[1]:
        raise ValueError(f"conv_transpose2d: expects input (N, C_in, H, W) and weight (C_in, C_out/groups, KH, KW), "
                         f"got {x.shape} and {w.shape}")
    stride, padding = _pair("conv_transpose2d", "stride", stride), _pair("conv_transpose2d", "padding", padding)
    extra, dilation = (_pair("conv_transpose2d", "output_padding", output_padding),
                       _pair("conv_transpose2d", "dilation", dilation))
    if any(e >= s and e >= d for e, s, d in zip(extra, stride, dilation)):
        raise ValueError(f"conv_transpose2d: output_padding {extra} must be smaller than stride {stride} or "
                         f"dilation {dilation}")
    out_hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + e + 1
                   for size, s, p, d, k, e in zip(x.shape[2:], stride, padding, dilation, w.shape[2:], extra))
    out = apply1("conv2d_grad_input", _float(x, dtype), _float(w, dtype), input_hw=out_hw, stride=stride,
                 padding=padding, dilation=dilation, groups=int(groups))
    if bias is None:
        return out
    b = as_tensor(bias, out)
    if b.size != out.shape[1]:
        raise ValueError(f"conv_transpose2d: bias has shape {b.shape} but the output has {out.shape[1]} channels")
    return add(out, reshape(_float(b, out._type.dtype), (1, out.shape[1], 1, 1)))


def _adaptive(name: str, reduce: Any, inp: Any, oshp: Any) -> Tensor:
    """Output cell (i, j) reduces rows [floor(i*H/OH), ceil((i+1)*H/OH)) and the same for columns,
    as PyTorch/MegEngine: one pooling kernel when the windows tile the input, else a reduction per
    output row and column (a rectangle's mean or max is that of its rows' ones)."""
    x = as_tensor(inp)
    if x.ndim != 4:
        raise ValueError(f"{name}: expects an (N, C, H, W) input, got shape {x.shape}")
    out_hw = _pair(name, "oshp", oshp)
    if min(out_hw) < 1:
        raise ValueError(f"{name}: output size {out_hw} must be positive")
    if all(size % o == 0 for size, o in zip(x.shape[2:], out_hw)):
        window = tuple(size // o for size, o in zip(x.shape[2:], out_hw))
        return _pool("max_pool2d" if reduce == "max" else "avg_pool2d", x, window, window, 0)
    if not x._type.dtype.is_float:
        x = cast(x, DType.float32)
    op = reduce_max if reduce == "max" else mean
    for axis, o in ((2, out_hw[0]), (3, out_hw[1])):
        size = x.shape[axis]
        x = concat([op(slice_axis(x, axis, i * size // o, -(-(i + 1) * size // o)), axis, keepdims=True)
                    for i in range(o)], axis)
    return x


def adaptive_avg_pool2d(inp: Any, oshp: Any) -> Tensor:
    """Mean pooling to the output size `oshp` (int or pair), windows as PyTorch/MegEngine."""
    return _adaptive("adaptive_avg_pool2d", "mean", inp, oshp)


def adaptive_max_pool2d(inp: Any, oshp: Any) -> Tensor:
    """Max pooling to the output size `oshp` (int or pair), windows as PyTorch/MegEngine."""
    return _adaptive("adaptive_max_pool2d", "max", inp, oshp)
