"""Lowerings of contraction primitives inside compiled graphs (GEMM-backed).

`fused_matmul` is the same GEMM with the node's region as its epilogue
(codegen.epilogue): the region runs on each output tile in registers, one
region output goes to the C tile and the others are stored beside it.
"""

from __future__ import annotations

import math

from ir.graph import Node

from .compiler import Buffer, Lowering, lowering
from .emit import I64, memory_type
from .epilogue import RegionEpilogue, tile_layout_of_matmul
from .gemm import define_gemm


@lowering("matmul", "fused_matmul")
def _lower_matmul(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    a, b = ins[:2]
    trans_a, trans_b = bool(node.attr("transpose_a", False)), bool(node.attr("transpose_b", False))
    shape = outs[0].type.shape
    m, n = shape[-2:]
    k = a.type.shape[-2] if trans_a else a.type.shape[-1]
    batch = math.prod(shape[:-2])

    def batch_stride(buffer: Buffer) -> int:
        count = math.prod(buffer.type.shape[:-2])
        if count == batch:
            return buffer.type.shape[-2] * buffer.type.shape[-1]
        if count == 1:
            return 0
        raise NotImplementedError(
            f"matmul: batch dims {buffer.type.shape[:-2]} broadcast partially against {shape[:-2]}; "
            "broadcast the operand explicitly first"
        )

    dtype = a.type.dtype
    name = ctx.new_kernel_name(node)
    epilogue, extras, out = None, [], outs[0]
    if node.op == "fused_matmul":
        epilogue = RegionEpilogue(name, node.region, tile_layout_of_matmul(shape), node.attr("views"))
        out = outs[epilogue.stored]
        others = ins[2:] + [buf for i, buf in enumerate(outs) if i != epilogue.stored]
        extras = epilogue.arguments(ctx.builder, [ctx.pointer(buf) for buf in others], (0,) * len(shape))
    kernel = define_gemm(ctx.module, name, dtype.name, trans_a, trans_b,
                         epilogue.arg_types if epilogue else (), epilogue, static_shape=(batch, m, n, k),
                         workspace=True)
    element = memory_type(dtype).as_pointer()
    builder = ctx.builder
    pointers = [builder.bitcast(ctx.pointer(buf), element) for buf in (a, b, out)]
    lda, ldb = a.type.shape[-1], b.type.shape[-1]
    sizes = [batch, m, n, k, lda, ldb, n, batch_stride(a), batch_stride(b), m * n]
    builder.call(kernel, pointers + [I64(v) for v in sizes] + ctx.gemm_workspace(dtype, m, n, k) + extras)
