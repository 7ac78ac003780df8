"""Lowerings of the window primitives inside compiled graphs.

The same algorithms as the eager executors (jitgine/core/eager_conv.py), with
every size baked in: im2col / col2im and pooling plane kernels (codegen.conv,
codegen.pool) called with constant meta arrays, a GEMM (codegen.gemm) per
batch chunk and group, and the im2col scratch malloc'ed and freed by the entry.
"""

from __future__ import annotations

from llvmlite import ir

from ir.graph import Node

from .compiler import Buffer, Lowering, _fill, lowering
from .conv import define_col2im, define_im2col
from .emit import I8, I64, memory_type
from .epilogue import RegionEpilogue, tile_layout_of_conv
from .gemm import define_gemm
from .loops import for_range
from .pool import define_pool

SCRATCH_ELEMENTS = 1 << 21  # as eager_conv: about the L3 size, at least one image per chunk
PARALLEL_MIN_ELEMENTS = 1 << 15
I8P = I8.as_pointer()


def _declare(module: ir.Module, name: str, ftype: ir.FunctionType) -> ir.Function:
    return module.globals.get(name) or ir.Function(module, ftype, name)


class _Emitter:
    def __init__(self, ctx: Lowering, node: Node, dtype) -> None:
        self.ctx, self.b, self.dtype = ctx, ctx.builder, dtype
        self.name = ctx.new_kernel_name(node)
        self.element = memory_type(dtype)
        self.metas = 0

    def pointer(self, base: Buffer | ir.Value, offset: int = 0) -> ir.Value:
        value = self.ctx.pointer(base) if isinstance(base, Buffer) else base
        typed = self.b.bitcast(value, self.element.as_pointer())
        return self.b.gep(typed, [I64(offset)]) if offset else typed

    def scratch(self, elements: int) -> ir.Value:
        alloc = _declare(self.ctx.module, "aligned_alloc", ir.FunctionType(I8P, [I64, I64]))
        size = (elements * (8 if self.dtype.name == "float64" else 4) + 127) // 64 * 64
        return self.b.bitcast(self.b.call(alloc, [I64(64), I64(size)]), self.element.as_pointer())

    def free(self, pointer: ir.Value) -> None:
        free = _declare(self.ctx.module, "free", ir.FunctionType(ir.VoidType(), [I8P]))
        self.b.call(free, [self.b.bitcast(pointer, I8P)])

    def plane_call(self, kernel: ir.Function, pointers: list[ir.Value], meta: list[int]) -> None:
        array = ir.ArrayType(I64, len(meta))
        glob = ir.GlobalVariable(self.ctx.module, array, f"{self.name}.meta{self.metas}")
        glob.initializer, glob.global_constant = ir.Constant(array, meta), True
        self.metas += 1
        self.ctx.call(kernel, pointers, self.b.bitcast(glob, I64.as_pointer()))

    def gemm(self, trans_a: bool, trans_b: bool, epilogue: RegionEpilogue | None = None) -> ir.Function:
        key = f"{self.name}.gemm{int(trans_a)}{int(trans_b)}"
        return self.ctx.module.globals.get(key) or define_gemm(
            self.ctx.module, key, self.dtype.name, trans_a, trans_b,
            epilogue.arg_types if epilogue else (), epilogue)


def _grain(tasks: int, work: int) -> int:
    return tasks if work < PARALLEL_MIN_ELEMENTS else 1


def _conv_attrs(node: Node) -> tuple:
    return (node.attr("stride", (1, 1)), node.attr("padding", (0, 0)), node.attr("dilation", (1, 1)),
            node.attr("groups", 1))


def _im2col_meta(tasks, c, h, w, khw, ohw, stride, padding, dilation, img_stride, row_stride) -> list[int]:
    work = tasks * khw[0] * khw[1] * ohw[0] * ohw[1]
    return [tasks, _grain(tasks, work), c, h, w, *khw, *ohw, *stride, *padding, *dilation, img_stride, row_stride]


@lowering("conv2d", "fused_conv2d", "conv2d_grad_input", "conv2d_grad_weight")
def _lower_conv(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    """fused_conv2d: conv2d with the region as the epilogue of each im2col GEMM (codegen.epilogue)."""
    stride, padding, dilation, groups = _conv_attrs(node)
    e = _Emitter(ctx, node, ins[0].type.dtype)
    epilogue, others = None, []
    if node.op == "fused_conv2d":
        epilogue = RegionEpilogue(e.name, node.region, tile_layout_of_conv(outs[0].type.shape), node.attr("views"))
        others = [ctx.pointer(buf) for buf in ins[2:] + [b for i, b in enumerate(outs) if i != epilogue.stored]]
    out = outs[epilogue.stored] if epilogue else outs[0]
    if node.op in ("conv2d", "fused_conv2d"):
        (n, c, h, w), (o, cg, kh, kw), (oh, ow) = ins[0].type.shape, ins[1].type.shape, out.type.shape[2:]
    elif node.op == "conv2d_grad_input":
        (n, c, h, w), (o, cg, kh, kw), (oh, ow) = out.type.shape, ins[1].type.shape, ins[0].type.shape[2:]
    else:
        (n, c, h, w), (o, cg, kh, kw), (oh, ow) = ins[0].type.shape, out.type.shape, ins[1].type.shape[2:]
    p, ck, og, kk = oh * ow, cg * kh * kw, o // groups, kh * kw
    if out.type.size == 0:
        return
    if n * p == 0:
        _fill(ctx, node, out, 0.0)
        return
    im2col = define_im2col(ctx.module, e.name + ".im2col", out.type.dtype)
    if node.op in ("conv2d", "fused_conv2d"):
        chunk = max(1, min(n, SCRATCH_ELEMENTS // (c * kk * p)))
        col = e.scratch(chunk * c * kk * p)
        gemm = e.gemm(False, False, epilogue)
        for n0 in range(0, n, chunk):
            nc = min(chunk, n - n0)
            e.plane_call(im2col, [col, e.pointer(ins[0], n0 * c * h * w)],
                         _im2col_meta(nc * c, c, h, w, (kh, kw), (oh, ow), stride, padding, dilation, c * kk * p, p))
            for g in range(groups):
                sizes = [nc, og, p, ck, ck, p, p, 0, c * kk * p, o * p]
                extras = epilogue.arguments(e.b, others, (n0, g * og, 0, 0)) if epilogue else []
                e.b.call(gemm, [e.pointer(ins[1], g * og * ck), e.b.gep(col, [I64(g * ck * p)]),
                                e.pointer(out, (n0 * o + g * og) * p)] + [I64(v) for v in sizes] + extras)
        e.free(col)
    elif node.op == "conv2d_grad_input":
        chunk = max(1, min(n, SCRATCH_ELEMENTS // (c * kk * p)))
        col = e.scratch(chunk * c * kk * p)
        gemm = e.gemm(True, False)
        col2im = define_col2im(ctx.module, e.name + ".col2im", out.type.dtype)
        for n0 in range(0, n, chunk):
            nc = min(chunk, n - n0)
            for g in range(groups):
                sizes = [nc, ck, p, og, ck, p, p, 0, o * p, c * kk * p]
                e.b.call(gemm, [e.pointer(ins[1], g * og * ck), e.pointer(ins[0], (n0 * o + g * og) * p),
                                e.b.gep(col, [I64(g * ck * p)])] + [I64(v) for v in sizes])
            e.plane_call(col2im, [e.pointer(out, n0 * c * h * w), col],
                         _im2col_meta(nc * c, c, h, w, (kh, kw), (oh, ow), stride, padding, dilation, c * kk * p, p))
        e.free(col)
    else:
        chunk = max(1, min(n, SCRATCH_ELEMENTS // (c * kk * p + o * p)))
        col, dy_t = e.scratch(c * kk * chunk * p), e.scratch(o * chunk * p)
        partial = e.scratch(o * ck) if chunk < n else None
        gemm = e.gemm(False, True)
        for n0 in range(0, n, chunk):
            nc = min(chunk, n - n0)
            rows = nc * p
            e.plane_call(im2col, [col, e.pointer(ins[0], n0 * c * h * w)],
                         _im2col_meta(nc * c, c, h, w, (kh, kw), (oh, ow), stride, padding, dilation, p, rows))
            e.plane_call(im2col, [dy_t, e.pointer(ins[1], n0 * o * p)],
                         _im2col_meta(nc * o, o, oh, ow, (1, 1), (oh, ow), (1, 1), (0, 0), (1, 1), p, rows))
            target = e.pointer(out) if n0 == 0 else partial
            for g in range(groups):
                sizes = [1, og, ck, rows, rows, rows, ck, 0, 0, 0]
                e.b.call(gemm, [e.b.gep(dy_t, [I64(g * og * rows)]), e.b.gep(col, [I64(g * ck * rows)]),
                                e.b.gep(target, [I64(g * og * ck)])] + [I64(v) for v in sizes])
            if n0:
                _accumulate(e, e.pointer(out), partial, o * ck)
        for pointer in (col, dy_t) + ((partial,) if partial is not None else ()):
            e.free(pointer)


def _accumulate(e: _Emitter, target: ir.Value, source: ir.Value, count: int) -> None:
    """target[i] += source[i] for i < count (a chunk's partial weight gradient, in a fixed order)."""
    b = e.b
    with for_range(b, I64(0), I64(count), name="acc") as i:
        slot = b.gep(target, [i])
        b.store(b.fadd(b.load(slot), b.load(b.gep(source, [i]))), slot)


@lowering("max_pool2d", "avg_pool2d", "max_pool2d_grad", "avg_pool2d_grad")
def _lower_pool(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    (out,) = outs
    if out.type.size == 0:
        return
    grad = node.op.endswith("_grad")
    n, c, h, w = (out if grad else ins[0]).type.shape
    oh, ow = (ins[-1] if grad else out).type.shape[2:]
    kh, kw = node.attr("kernel")
    e = _Emitter(ctx, node, out.type.dtype)
    kernel = define_pool(ctx.module, e.name + ".pool", out.type.dtype, node.op)
    tasks = n * c
    meta = [tasks, _grain(tasks, tasks * oh * ow * kh * kw), h, w, oh, ow, kh, kw, *node.attr("stride"),
            *node.attr("padding", (0, 0))]
    e.plane_call(kernel, [e.pointer(out)] + [e.pointer(i) for i in ins], meta)
