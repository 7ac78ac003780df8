"""Convolution kernels: im2col / col2im (LLVM) and the plane-parallel kernel driver.

conv2d and stride-1 grad_input / grad_weight run on the direct kernels of
codegen.conv_direct (no im2col matrix; measured faster on every benchmarked
shape). What remains here serves the other shapes: grad_input with stride > 1
is the transposed GEMM (w^T @ dy) followed by col2im, which accumulates the
columns back into the image; grad_weight with stride > 1 along W is
dy (O, N*OH*OW) @ im2col(x)^T with the batch folded into the GEMM's K
dimension (K is never split across threads, so the batch sum is
thread-count independent).

im2col / col2im are one kernel each, `kernel(i8** pointers, i64* meta)`,
parallel over (image, channel) planes with codegen.parallel: each thread owns
whole planes, so results are identical for any thread count.
`define_plane_kernel` is that driver, shared with pooling and the direct
kernels (which pass an epilogue's extra arguments through it).
"""

from __future__ import annotations

from typing import Callable, Sequence

from llvmlite import ir

from ir.types import DType

from . import emit
from .emit import I8, I64
from .loops import for_range
from .parallel import define_parallel_for

I8P = I8.as_pointer()
KERNEL_TYPE = ir.FunctionType(ir.VoidType(), [I8P.as_pointer(), I64.as_pointer()])

# meta[0] = number of plane tasks, meta[1] = grain (tasks <= grain run inline), then the op's own fields.
PlaneBody = Callable[[ir.IRBuilder, list[ir.Value], list[ir.Value], ir.Value], None]


def define_plane_kernel(module: ir.Module, name: str, dtype: DType, n_pointers: int, n_meta: int,
                        body: PlaneBody, extra_types: Sequence[ir.Type] = ()) -> ir.Function:
    """`name(i8** pointers, i64* meta, *extras)` running `body(b, pointers, meta, task)` for tasks
    [0, meta[0]); with `extra_types` (an epilogue's arguments) the body is called with `extras` too."""
    element = emit.memory_type(dtype).as_pointer()
    ctx_type = ir.LiteralStructType([I8P.as_pointer(), I64.as_pointer(), *extra_types])
    inner = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8P, I64, I64]), name + ".body")
    inner.linkage = "internal"
    b = ir.IRBuilder(inner.append_basic_block("entry"))
    ctx = b.bitcast(inner.args[0], ctx_type.as_pointer())
    fields = [b.load(b.gep(ctx, [ir.IntType(32)(0), ir.IntType(32)(i)])) for i in range(len(ctx_type.elements))]
    pointer_array, meta_array, extras = fields[0], fields[1], fields[2:]
    pointers = [b.bitcast(b.load(b.gep(pointer_array, [I64(i)])), element) for i in range(n_pointers)]
    meta = [b.load(b.gep(meta_array, [I64(i)])) for i in range(n_meta)]
    with for_range(b, inner.args[1], inner.args[2], name="task") as task:
        if extra_types:
            body(b, pointers, meta, task, extras)
        else:
            body(b, pointers, meta, task)
    b.ret_void()
    driver = define_parallel_for(module, inner)

    kernel = ir.Function(module, ir.FunctionType(ir.VoidType(), [*KERNEL_TYPE.args, *extra_types]), name)
    b = ir.IRBuilder(kernel.append_basic_block("entry"))
    slot = b.alloca(ctx_type)
    for i, arg in enumerate(kernel.args):
        b.store(arg, b.gep(slot, [ir.IntType(32)(0), ir.IntType(32)(i)]))
    count = b.load(b.gep(kernel.args[1], [I64(0)]))
    grain = b.load(b.gep(kernel.args[1], [I64(1)]))
    b.call(driver, [b.bitcast(slot, I8P), count, grain])
    b.ret_void()
    return kernel


def in_range(b: ir.IRBuilder, value: ir.Value, limit: ir.Value) -> ir.Value:
    """0 <= value < limit as one unsigned compare."""
    return b.icmp_unsigned("<", value, limit)


def define_im2col(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """pointers [col, x]; meta [tasks, grain, C, H, W, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, img_stride,
    row_stride]: task n*C + c writes col[n*img_stride + ((c*KH + kh)*KW + kw)*row_stride + oh*OW + ow]
    = x[n, c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW] (0 outside)."""

    def body(b, pointers, meta, task):
        col, x = pointers
        C, H, W, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, img_stride, row_stride = meta[2:]
        n, c = b.sdiv(task, C), b.srem(task, C)
        plane = b.gep(x, [b.mul(task, b.mul(H, W))])
        zero = emit.constant(dtype, 0.0)
        with for_range(b, I64(0), KH, name="kh") as kh:
            with for_range(b, I64(0), KW, name="kw") as kw:
                row = b.add(b.mul(b.add(b.mul(c, KH), kh), KW), kw)
                dst = b.gep(col, [b.add(b.mul(n, img_stride), b.mul(row, row_stride))])
                with for_range(b, I64(0), OH, name="oh") as oh:
                    ih = b.add(b.sub(b.mul(oh, SH), PH), b.mul(kh, DH))
                    row_ok = in_range(b, ih, H)
                    src_row = b.gep(plane, [b.mul(b.select(row_ok, ih, I64(0)), W)])
                    out_row = b.gep(dst, [b.mul(oh, OW)])
                    with for_range(b, I64(0), OW, name="ow") as ow:
                        iw = b.add(b.sub(b.mul(ow, SW), PW), b.mul(kw, DW))
                        ok = b.and_(row_ok, in_range(b, iw, W))
                        value = b.load(b.gep(src_row, [b.select(ok, iw, I64(0))]))
                        b.store(b.select(ok, value, zero), b.gep(out_row, [ow]))

    return define_plane_kernel(module, name, dtype, 2, 17, body)


def define_col2im(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """pointers [x, col]; meta as im2col: task n*C + c sets plane x[n, c] to the sum of the columns that
    read it (the adjoint of im2col), accumulating taps in a fixed (kh, kw, oh, ow) order."""

    def body(b, pointers, meta, task):
        x, col = pointers
        C, H, W, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, img_stride, row_stride = meta[2:]
        n, c = b.sdiv(task, C), b.srem(task, C)
        plane = b.gep(x, [b.mul(task, b.mul(H, W))])
        with for_range(b, I64(0), b.mul(H, W), name="z") as z:
            b.store(emit.constant(dtype, 0.0), b.gep(plane, [z]))
        with for_range(b, I64(0), KH, name="kh") as kh:
            with for_range(b, I64(0), KW, name="kw") as kw:
                row = b.add(b.mul(b.add(b.mul(c, KH), kh), KW), kw)
                src = b.gep(col, [b.add(b.mul(n, img_stride), b.mul(row, row_stride))])
                with for_range(b, I64(0), OH, name="oh") as oh:
                    ih = b.add(b.sub(b.mul(oh, SH), PH), b.mul(kh, DH))
                    with b.if_then(in_range(b, ih, H)):
                        dst_row = b.gep(plane, [b.mul(ih, W)])
                        src_row = b.gep(src, [b.mul(oh, OW)])
                        with for_range(b, I64(0), OW, name="ow") as ow:
                            iw = b.add(b.sub(b.mul(ow, SW), PW), b.mul(kw, DW))
                            with b.if_then(in_range(b, iw, W)):
                                target = b.gep(dst_row, [iw])
                                b.store(b.fadd(b.load(target), b.load(b.gep(src_row, [ow]))), target)

    return define_plane_kernel(module, name, dtype, 2, 17, body)
