"""Contraction primitives: batched `matmul`.

Declared here (not in ir/ops.py) so that the contraction family grows in one
file; ir/ops.py imports this module at its end, so every user of the registry
sees these primitives. The NumPy meaning lives in `ir.interpret.EXTRA`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .ops import check, register
from .types import TensorType, broadcast_shapes


def matmul_dims(a: TensorType, b: TensorType, transpose_a: bool, transpose_b: bool,
                types: Sequence[TensorType]) -> tuple[tuple[int, ...], int, int, int]:
    """(batch shape, M, K, N) of op(a) @ op(b); raises OpError when they do not fit."""
    check(isinstance(transpose_a, bool) and isinstance(transpose_b, bool), "matmul", types,
          f"transpose_a / transpose_b must be bools, got {transpose_a!r} / {transpose_b!r}")
    check(a.rank >= 2 and b.rank >= 2, "matmul", types,
          "operands need at least 2 dims (..., M, K) and (..., K, N); F.matmul handles 1-D operands")
    check(a.dtype == b.dtype, "matmul", types, "operands must have one dtype; cast them first (astype)")
    check(a.dtype.is_float, "matmul", types, "needs float operands; cast integers with astype('float32') first")
    m, k = (a.shape[-1], a.shape[-2]) if transpose_a else (a.shape[-2], a.shape[-1])
    k_b, n = (b.shape[-1], b.shape[-2]) if transpose_b else (b.shape[-2], b.shape[-1])
    check(k == k_b, "matmul", types,
          f"contracted dims differ: op(a) is {m}x{k}, op(b) is {k_b}x{n} "
          f"(transpose_a={transpose_a}, transpose_b={transpose_b})")
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        check(False, "matmul", types,
              f"batch dims {a.shape[:-2]} and {b.shape[:-2]} cannot be broadcast together (NumPy rules)")
    return tuple(batch), m, k, n


@register("matmul", "contraction", 2, optional={"transpose_a": False, "transpose_b": False})
def _matmul(types, transpose_a, transpose_b):
    """op(a) @ op(b) over broadcast batch dims; op swaps the last two dims when its flag is set."""
    a, b = types
    batch, m, _, n = matmul_dims(a, b, transpose_a, transpose_b, types)
    return [TensorType(batch + (m, n), a.dtype)]


def _interpret_matmul(node, args: list[np.ndarray]) -> list[np.ndarray]:
    a, b = args
    attrs = node.attr_dict
    if attrs.get("transpose_a", False):
        a = np.swapaxes(a, -1, -2)
    if attrs.get("transpose_b", False):
        b = np.swapaxes(b, -1, -2)
    return [np.ascontiguousarray(np.matmul(a, b), dtype=a.dtype)]


def _register_interpretation() -> None:
    from .interpret import EXTRA

    EXTRA["matmul"] = _interpret_matmul


_register_interpretation()
