"""Lowerings of contraction primitives inside compiled graphs (GEMM-backed)."""

from __future__ import annotations

import math

from ir.graph import Node

from .compiler import Buffer, Lowering, lowering
from .emit import I64, memory_type
from .gemm import define_gemm


@lowering("matmul")
def _lower_matmul(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    a, b = ins
    (out,) = outs
    trans_a, trans_b = bool(node.attr("transpose_a", False)), bool(node.attr("transpose_b", False))
    m, n = out.type.shape[-2:]
    k = a.type.shape[-2] if trans_a else a.type.shape[-1]
    batch = math.prod(out.type.shape[:-2])

    def batch_stride(buffer: Buffer) -> int:
        count = math.prod(buffer.type.shape[:-2])
        if count == batch:
            return buffer.type.shape[-2] * buffer.type.shape[-1]
        if count == 1:
            return 0
        raise NotImplementedError(
            f"matmul: batch dims {buffer.type.shape[:-2]} broadcast partially against {out.type.shape[:-2]}; "
            "broadcast the operand explicitly first"
        )

    dtype = out.type.dtype
    kernel = define_gemm(ctx.module, ctx.new_kernel_name(node), dtype.name, trans_a, trans_b,
                         static_shape=(batch, m, n, k))
    element = memory_type(dtype).as_pointer()
    builder = ctx.builder
    pointers = [builder.bitcast(ctx.pointer(buf), element) for buf in (a, b, out)]
    lda, ldb = a.type.shape[-1], b.type.shape[-1]
    sizes = [batch, m, n, k, lda, ldb, n, batch_stride(a), batch_stride(b), m * n]
    builder.call(kernel, pointers + [I64(v) for v in sizes])
