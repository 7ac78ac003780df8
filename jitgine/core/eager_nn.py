"""Eager executors of the contraction primitives (matmul) on compiled GEMM kernels."""

from __future__ import annotations

import math

import numpy as np

from codegen.gemm import compile_gemm

from .eager import contiguous, empty, register


def _operand(x: np.ndarray, batch: tuple[int, ...], transposed: bool) -> tuple[np.ndarray, bool]:
    """`x` as a 2-D or 3-D GEMM operand over `batch`, plus its (possibly flipped) transpose flag.

    A batch of one stays 2-D (the kernel broadcasts it); a partially broadcast
    batch is materialised (a compiled copy) because the kernel takes one batch stride.
    """
    rows, cols = x.shape[-2:]
    own = math.prod(x.shape[:-2])
    if own == 1:
        x = x.reshape(rows, cols)  # dropping size-1 dims is always a view
    else:
        if x.shape[:-2] != batch:
            x = np.broadcast_to(x, batch + (rows, cols))
        x3 = _as_3d(x)
        x = x3 if x3 is not None else contiguous(x).reshape(-1, rows, cols)
    item = x.itemsize
    # A transposed view (x.T) is read as its contiguous parent with the flag flipped, not copied.
    if x.strides[-1] != item and x.strides[-2] == item and x.shape[-1] > 1:
        x = np.swapaxes(x, -1, -2)
        transposed = not transposed
    if x.strides[-1] != item or any(s < 0 or s % item for s in x.strides):
        x = contiguous(x)  # a compiled copy (the kernel needs unit stride along rows)
    return x, transposed


def _as_3d(x: np.ndarray) -> np.ndarray | None:
    """A (batch, rows, cols) view of `x` without copying, when one batch stride describes it."""
    dims = [(d, s) for d, s in zip(x.shape[:-2], x.strides[:-2]) if d != 1]
    for (_, outer), (size, inner) in zip(dims, dims[1:]):
        if outer != inner * size:
            return None
    step = dims[-1][1] if dims else 0
    if step < 0 or step % x.itemsize:
        return None
    count = math.prod(d for d, _ in dims)
    return np.lib.stride_tricks.as_strided(x, (count,) + x.shape[-2:], (step,) + x.strides[-2:])


@register("matmul")
def _matmul(attrs, arrays, types):
    a, b = arrays
    out = empty(types[0])
    batch = types[0].shape[:-2]
    m, n = out.shape[-2:]
    if out.size == 0:
        return [out]
    k = a.shape[-2] if attrs.get("transpose_a", False) else a.shape[-1]
    if k == 0:
        out.fill(0)
        return [out]
    a2, ta = _operand(a, batch, bool(attrs.get("transpose_a", False)))
    b2, tb = _operand(b, batch, bool(attrs.get("transpose_b", False)))
    gemm = compile_gemm(out.dtype.name, ta, tb)
    if a2.ndim == 2 and b2.ndim == 2:
        gemm(a2, b2, out=out.reshape(m, n))
    else:
        gemm(a2, b2, out=out.reshape(-1, m, n))
    return [out]
