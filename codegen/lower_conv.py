"""Lowerings of the window primitives inside compiled graphs.

The same algorithms as the eager executors (jitgine/core/eager_conv.py), with
every size baked in: the direct convolution (codegen.conv_direct: padded copy,
prepared weights, tap kernel with constant offset tables), im2col / col2im and
pooling plane kernels (codegen.conv, codegen.pool) called with constant meta
arrays, a GEMM (codegen.gemm) per batch chunk and group, and scratch in
the arena's scratch region (Lowering.scratch). Kernels that read their sizes from meta
arrays (everything but a direct convolution with a fused epilogue) are
defined once per module and shared by every node that needs them.
"""

from __future__ import annotations

from typing import Callable

from llvmlite import ir

from ir.graph import Node

from . import conv_batch, conv_direct, conv_operands, conv_plan
from .compiler import Buffer, Lowering, _fill, lowering
from .conv import define_col2im, define_im2col
from .emit import I8, I64, memory_type
from .epilogue import RegionEpilogue, tile_layout_of_conv
from .gemm import define_gemm
from .gemm_kernel import define_once
from .loops import for_range
from .parallel import grain
from .pool import define_pool

SCRATCH_ELEMENTS = 1 << 21  # as eager_conv: about the L3 size, at least one image per chunk
I8P = I8.as_pointer()


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
        """`elements` of this node's scratch (the arena's scratch region, see Lowering.scratch)."""
        return self.b.bitcast(self.ctx.scratch(elements * self.dtype.itemsize), self.element.as_pointer())

    def shared(self, name: str, define: Callable[[ir.Module, str], ir.Function]) -> ir.Function:
        """Kernel `name`, defined once per module: these kernels take every size from their meta
        array, so all nodes of a graph that need the same one call one copy (compiled once)."""
        return define_once(self.ctx.module, name, lambda: define(self.ctx.module, name))

    def constant_array(self, values) -> ir.Value:
        """An i64* to a constant global holding `values`."""
        array = ir.ArrayType(I64, len(values))
        glob = ir.GlobalVariable(self.ctx.module, array, f"{self.name}.meta{self.metas}")
        glob.initializer, glob.global_constant = ir.Constant(array, [int(v) for v in values]), True
        self.metas += 1
        return self.b.bitcast(glob, I64.as_pointer())

    def plane_call(self, kernel: ir.Function, pointers: list[ir.Value], meta: list[int],
                   extras: list[ir.Value] = ()) -> None:
        if not extras:
            self.ctx.call(kernel, pointers, self.constant_array(meta))
            return
        array = self.b.alloca(ir.ArrayType(I8P, len(pointers)))
        for i, pointer in enumerate(pointers):
            self.b.store(self.b.bitcast(pointer, I8P), self.b.gep(array, [ir.IntType(32)(0), ir.IntType(32)(i)]))
        self.b.call(kernel, [self.b.bitcast(array, I8P.as_pointer()), self.constant_array(meta), *extras])

    def padded(self, plan: conv_plan.DirectPlan, src: ir.Value) -> ir.Value:
        """Scratch holding the zero-padded copy of src that a direct plan reads."""
        padded = self.scratch(plan.padded_elements())
        kind, define = conv_operands.pad_kernel(plan)
        pad = self.shared(f"conv.{self.dtype}.{kind}", lambda m, n: define(m, n, self.dtype))
        self.plane_call(pad, [padded, src], plan.pad_meta())
        slack = plan.width + 16  # lanes read past the last row: keep them finite
        with for_range(self.b, I64(plan.padded_elements() - slack), I64(plan.padded_elements()), name="slack") as i:
            self.b.store(ir.Constant(self.element, 0.0), self.b.gep(padded, [i]))
        return padded

    def direct_grad_weight(self, plan: conv_plan.DirectPlan, dw: ir.Value, x: ir.Value, dy: ir.Value) -> None:
        """grad_weight by a direct reduction kernel (codegen.conv_direct: define_grad_weight_channels
        for "dWC" plans, define_grad_weight for "dW")."""
        padded = self.padded(plan, x)
        if plan.orientation == "dWC":
            pixel_count = plan.n * plan.oh * plan.ow
            dy_t = self.scratch(plan.groups * pixel_count * plan.cpad)
            pixels = self.scratch(pixel_count * 8 // self.dtype.itemsize)  # i64 offsets
            operands = self.shared(f"conv.{self.dtype}.dwc_operands",
                                   lambda m, n: conv_operands.define_dwc_operands(m, n, self.dtype))
            self.plane_call(operands, [dy_t, dy, pixels], plan.operands_meta())
            kernel = self.shared(f"conv.{self.dtype}.grad_weight_channels{plan.rows}x{plan.nv}",
                                 lambda m, n: conv_direct.define_grad_weight_channels(m, n, self.dtype, plan.rows,
                                                                                      plan.nv))
            self.plane_call(kernel, [dw, padded, dy_t, pixels, self.constant_array(plan.tables()[1])],
                            plan.kernel_meta())
            return
        kernel = self.shared(f"conv.{self.dtype}.grad_weight{plan.rows}x{plan.nv}",
                             lambda m, n: conv_direct.define_grad_weight(m, n, self.dtype, plan.rows, plan.nv))
        self.plane_call(kernel, [dw, padded, dy, self.constant_array(plan.tables()[1])], plan.kernel_meta())

    def direct(self, plan: conv_plan.DirectPlan, dst: ir.Value, src: ir.Value, w: ir.Value,
               epilogue: RegionEpilogue | None = None, extras: list[ir.Value] = ()) -> None:
        """A direct convolution (codegen.conv_direct): padded copy, prepared weights, the tap kernel
        (with the epilogue on its output tiles; `extras` point at output index (0, 0, 0, 0))."""
        module, dtype = self.ctx.module, self.dtype
        padded = self.padded(plan, src)
        wmat = w
        if plan.weight_elements():
            wmat = self.scratch(plan.weight_elements())
            scatter = self.shared(f"conv.{dtype}.weights", lambda m, n: conv_operands.define_weight_scatter(m, n, dtype))
            self.plane_call(scatter, [wmat, w], plan.weight_meta())
        if epilogue is None:
            kernel = self.shared(f"conv.{dtype}.direct{plan.orientation}{plan.rows}x{plan.nv}",
                                 lambda m, n: conv_direct.define_direct_conv(m, n, dtype, plan.orientation, plan.nv,
                                                                             plan.rows))
        else:
            kernel = conv_direct.define_direct_conv(module, self.name + ".direct", dtype, plan.orientation, plan.nv,
                                                    plan.rows, epilogue, epilogue.arg_types)
        a_off, b_off = (self.constant_array(t) for t in plan.tables())
        self.plane_call(kernel, [dst, padded, wmat, a_off, b_off], plan.kernel_meta(), list(extras))

    def batch_grad_input(self, plan: conv_batch.BatchPlan, dx: ir.Value, dy: ir.Value, w: ir.Value) -> None:
        """grad_input with the batch in the vector lanes (codegen.conv_batch): dy copied batch-last,
        the weight taps-major, then the tap kernel."""
        dy_t = self.scratch(plan.batch_last_elements())
        transpose = self.shared(f"conv.{self.dtype}.batch_last",
                                lambda m, n: conv_batch.define_batch_last(m, n, self.dtype))
        self.plane_call(transpose, [dy_t, dy], plan.transpose_meta())
        w_t = self.scratch(plan.weight_elements())
        taps_major = self.shared(f"conv.{self.dtype}.taps_major",
                                 lambda m, n: conv_batch.define_taps_major(m, n, self.dtype))
        self.plane_call(taps_major, [w_t, w], plan.weight_meta())
        kernel = self.shared(f"conv.{self.dtype}.grad_input_batch",
                             lambda m, n: conv_batch.define_grad_input_batch(m, n, self.dtype))
        self.plane_call(kernel, [dx, dy_t, w_t], plan.kernel_meta())

    def gemm(self, trans_a: bool, trans_b: bool) -> ir.Function:
        """The module's GEMM of this transposition taking a workspace (Lowering.gemm_workspace)."""
        return self.shared(f"conv.{self.dtype}.gemm{int(trans_a)}{int(trans_b)}",
                           lambda m, n: define_gemm(m, n, self.dtype.name, trans_a, trans_b, workspace=True))


def _conv_attrs(node: Node) -> tuple:
    return (node.attr("stride", (1, 1)), node.attr("padding", (0, 0)), node.attr("dilation", (1, 1)),
            node.attr("groups", 1))


def _im2col_meta(tasks, c, h, w, khw, ohw, stride, padding, dilation, img_stride, row_stride) -> list[int]:
    work = tasks * khw[0] * khw[1] * ohw[0] * ohw[1]
    return [tasks, grain(tasks, work), c, h, w, *khw, *ohw, *stride, *padding, *dilation, img_stride, row_stride]


@lowering("conv2d", "fused_conv2d", "conv2d_grad_input", "conv2d_grad_weight")
def _lower_conv(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    """conv2d and stride-1 grad_input: the direct kernel (codegen.conv_direct); fused_conv2d runs its
    region as the epilogue of the direct kernel's output tiles (codegen.epilogue). grad_weight: a
    direct reduction kernel when conv_plan.grad_weight_plan has one. Otherwise im2col / col2im
    and a GEMM per batch chunk and group."""
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
    dtype = out.type.dtype
    if node.op in ("conv2d", "fused_conv2d"):
        plan = conv_plan.plan(dtype, n, groups, cg, og, (h, w), (kh, kw), (oh, ow), stride, padding, dilation)
        extras = epilogue.arguments(e.b, others, (0, 0, 0, 0)) if epilogue else []
        e.direct(plan, e.pointer(out), e.pointer(ins[0]), e.pointer(ins[1]), epilogue, extras)
        return
    if node.op == "conv2d_grad_input":
        plan = conv_plan.grad_input_plan(dtype, n, groups, c, o, (h, w), (kh, kw), (oh, ow), stride, padding,
                                         dilation)
        batch = conv_batch.batch_plan(dtype, n, groups, c, o, (h, w), (kh, kw), (oh, ow), stride, padding,
                                      dilation, plan)
        if batch is not None:
            e.batch_grad_input(batch, e.pointer(out), e.pointer(ins[0]), e.pointer(ins[1]))
            return
        if plan is not None:
            e.direct(plan, e.pointer(out), e.pointer(ins[0]), e.pointer(ins[1]))
            return
    if node.op == "conv2d_grad_weight":
        plan = conv_plan.grad_weight_plan(dtype, n, groups, c, o, (h, w), (kh, kw), (oh, ow), stride, padding,
                                          dilation)
        if plan is not None:
            e.direct_grad_weight(plan, e.pointer(out), e.pointer(ins[0]), e.pointer(ins[1]))
            return
    im2col = e.shared(f"conv.{dtype}.im2col", lambda m, n: define_im2col(m, n, dtype))
    if node.op == "conv2d_grad_input":
        chunk = max(1, min(n, SCRATCH_ELEMENTS // (c * kk * p)))
        col = e.scratch(chunk * c * kk * p)
        gemm = e.gemm(True, False)
        workspace = ctx.gemm_workspace(dtype, ck, p, og)
        col2im = e.shared(f"conv.{dtype}.col2im", lambda m, n: define_col2im(m, n, dtype))
        for n0 in range(0, n, chunk):
            nc = min(chunk, n - n0)
            for g in range(groups):
                sizes = [nc, ck, p, og, ck, p, p, 0, o * p, c * kk * p]
                e.b.call(gemm, [e.pointer(ins[1], g * og * ck), e.pointer(ins[0], (n0 * o + g * og) * p),
                                e.b.gep(col, [I64(g * ck * p)])] + [I64(v) for v in sizes] + workspace)
            e.plane_call(col2im, [e.pointer(out, n0 * c * h * w), col],
                         _im2col_meta(nc * c, c, h, w, (kh, kw), (oh, ow), stride, padding, dilation, c * kk * p, p))
    else:
        chunk = max(1, min(n, SCRATCH_ELEMENTS // (c * kk * p + o * p)))
        col, dy_t = e.scratch(c * kk * chunk * p), e.scratch(o * chunk * p)
        partial = e.scratch(o * ck) if chunk < n else None
        gemm = e.gemm(False, True)
        workspace = ctx.gemm_workspace(dtype, og, ck, chunk * p)
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
                                e.b.gep(target, [I64(g * og * ck)])] + [I64(v) for v in sizes] + workspace)
            if n0:
                _accumulate(e, e.pointer(out), partial, o * ck)


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
    window = (kh, kw, *node.attr("stride")) if tuple(node.attr("padding", (0, 0))) == (0, 0) else None
    variant = "" if window is None else ".{}x{}s{}x{}".format(*window)
    kernel = e.shared(f"pool.{out.type.dtype}.{node.op}{variant}",
                      lambda m, n: define_pool(m, n, out.type.dtype, node.op, window))
    tasks = n * c
    meta = [tasks, grain(tasks, tasks * oh * ow * kh * kw), h, w, oh, ow, kh, kw, *node.attr("stride"),
            *node.attr("padding", (0, 0))]
    e.plane_call(kernel, [e.pointer(out)] + [e.pointer(i) for i in ins], meta)
