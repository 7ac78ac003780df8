"""Fused elementwise and reduction kernels.

A kernel iterates an index space of `rank` dims. Every operand (outputs
first, then inputs) is addressed as `offset + sum(stride[d] * i[d])`, so
broadcasting (stride 0), transposes and slices (any strides) need no copies.
The generated signature is `void kernel(i8** pointers, i64* meta)` with

    meta = [output_size, shape[0..rank), then per operand: offset, strides[0..rank)]

A kernel is shape-generic: shapes and strides are read from `meta` at run
time, and what is fixed at compile time is the `LoopPlan` - the rank and, for
the innermost dim, whether each operand's stride is 1 ('c'), 0 ('b') or
something else ('s'). That is what lets LLVM's loop vectoriser emit plain
vector loads and splats at the target's width, with a scalar tail. When the
graph knows its shapes (`static_meta`), they are baked in as constants.

Reductions (`fused_reduce`) write to a contiguous output whose strides are
0 along reduced dims: the output is first filled with the reduction's
identity, then every element is combined into it. When the innermost dim is
reduced the partial result lives in a register across the inner loop
(`reassoc` lets LLVM keep several vector accumulators). When the outermost
dim is not reduced, threads split it. When it is, it is cut into chunks of
at least PARALLEL_GRAIN_ELEMENTS elements of work (at most MAX_CHUNKS, a
count that depends on the shape only), each reduced into a partial output of
its own on whichever thread, and the partials are combined in chunk order
afterwards (outputs of up to MAX_PARTIAL_ELEMENTS over all chunks; larger ones
stay one chunk). Either way every output element is combined in the same
order whatever the thread count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from llvmlite import ir

from ir.graph import Graph
from ir.types import DType

from . import emit
from .emit import I8, I32, I64, REDUCE_FLAGS, constant, intrinsic
from .gemm_kernel import ceil_div
from .loops import for_range
from .parallel import define_parallel_for

I8P = I8.as_pointer()
CONTEXT = ir.LiteralStructType([I8P.as_pointer(), I64.as_pointer()])
KERNEL_TYPE = ir.FunctionType(ir.VoidType(), [I8P.as_pointer(), I64.as_pointer()])

# Below this many elements of work a kernel runs on the calling thread: waking
# the team costs more than it saves.
PARALLEL_GRAIN_ELEMENTS = 1 << 15
# A reduced outer dim: at most this many chunks, and partial outputs of at most this many elements.
MAX_CHUNKS = 64
MAX_PARTIAL_ELEMENTS = 1 << 14
# The context of a kernel whose outer dim is reduced: also the partial outputs and the chunk length.
CHUNKED_CONTEXT = ir.LiteralStructType([I8P.as_pointer(), I64.as_pointer(), I8P, I64])


@dataclass(frozen=True)
class LoopPlan:
    rank: int
    inner: tuple[str, ...]  # per operand, outputs then inputs: 'c' (stride 1), 'b' (stride 0), 's' (other)
    reduced: tuple[bool, ...] = ()  # per dim, for reductions: is it reduced?


def identity(reduce: str, dtype: DType) -> float | int:
    if reduce == "reduce_sum":
        return 0
    big = float("inf") if dtype.is_float else (2**31 - 1 if dtype == DType.int32 else 2**63 - 1)
    return -big if reduce == "reduce_max" else big


def combine(b: ir.IRBuilder, reduce: str, acc: ir.Value, value: ir.Value, dtype: DType) -> ir.Value:
    if reduce == "reduce_sum":
        return b.fadd(acc, value, flags=REDUCE_FLAGS) if dtype.is_float else b.add(acc, value)
    if dtype.is_float:
        # llvm.maximum/minimum propagate NaN like NumPy's max/min and vectorise as reductions.
        return intrinsic(b, "maximum" if reduce == "reduce_max" else "minimum", [acc, value])
    return b.select(b.icmp_signed(">" if reduce == "reduce_max" else "<", acc, value), acc, value)


class _Meta:
    """Reads meta[i]: a constant when shapes are static, else a load."""

    def __init__(self, builder: ir.IRBuilder, pointer: ir.Value, static: Sequence[int] | None):
        self.builder, self.pointer, self.static = builder, pointer, static

    def __getitem__(self, index: int) -> ir.Value:
        if self.static is not None:
            return I64(self.static[index])
        return self.builder.load(self.builder.gep(self.pointer, [I64(index)]))


def define_fused_kernel(
    module: ir.Module,
    name: str,
    region: Graph,
    out_dtypes: Sequence[DType],
    in_dtypes: Sequence[DType],
    plan: LoopPlan,
    reduce: str | None = None,
    static_meta: Sequence[int] | None = None,
    in_place: Sequence[int | None] = (),
    max_elements: int | None = None,
) -> ir.Function:
    """Define `void name(i8** pointers, i64* meta)` running `region` over the plan's index space.

    A reduced outer dim gets the chunked code only when the kernel may see more than
    PARALLEL_GRAIN_ELEMENTS elements (`static_meta`'s, or `max_elements` for a shape-generic
    kernel): below that there is one chunk anyway.

    `in_place[k] = j` says output k is input j (same buffer, same view; a state updated in
    place): it is stored through input j's pointer, so LLVM sees one pointer read and written
    at the same index instead of two that might overlap, and vectorises without a runtime
    overlap check (which would fail and fall back to the scalar loop).
    """
    dtypes = list(out_dtypes) + list(in_dtypes)
    n_out, rank = len(out_dtypes), plan.rank
    assert len(plan.inner) == len(dtypes) and rank >= 1

    def operand_meta(k: int) -> tuple[int, int]:
        """Position of operand k's offset in meta, and of its first stride."""
        start = 1 + rank + k * (rank + 1)
        return start, start + 1

    body = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8P, I64, I64]), name + ".body")
    body.linkage = "internal"
    ctx_arg, begin, end = body.args
    b = ir.IRBuilder(body.append_basic_block("entry"))
    elements = math.prod(static_meta[1:1 + rank]) if static_meta is not None else max_elements
    chunked = reduce is not None and plan.reduced[0] and (elements is None or elements > PARALLEL_GRAIN_ELEMENTS)
    ctx = b.bitcast(ctx_arg, (CHUNKED_CONTEXT if chunked else CONTEXT).as_pointer())
    pointers = b.load(b.gep(ctx, [I32(0), I32(0)]))
    meta = _Meta(b, b.load(b.gep(ctx, [I32(0), I32(1)])), static_meta)
    bases = [
        b.bitcast(b.load(b.gep(pointers, [I64(k)])), emit.memory_type(dt).as_pointer(), name=f"base{k}")
        for k, dt in enumerate(dtypes)
    ]
    for k, j in enumerate(in_place):
        if j is not None:
            bases[k] = bases[n_out + j]
    shape = [meta[1 + d] for d in range(rank)]
    strides = [[meta[operand_meta(k)[1] + d] for d in range(rank)] for k in range(len(dtypes))]
    offsets = [meta[operand_meta(k)[0]] for k in range(len(dtypes))]
    accumulator = b.alloca(emit.register_type(out_dtypes[0])) if reduce else None

    def element(k: int, offset: ir.Value, index: ir.Value) -> ir.Value:
        kind = plan.inner[k]
        if kind == "b":
            return offset
        step = index if kind == "c" else b.mul(index, strides[k][rank - 1])
        return b.add(offset, step)

    def inner_loop(lo: ir.Value, hi: ir.Value, offs: list[ir.Value]) -> None:
        reduce_inner = reduce is not None and plan.reduced[rank - 1]
        if reduce_inner:
            b.store(emit.load(b, b.gep(bases[0], [offs[0]]), out_dtypes[0]), accumulator)
        with for_range(b, lo, hi, name="inner") as i:
            values = [
                emit.load(b, b.gep(bases[k], [element(k, offs[k], i)]), dtypes[k])
                for k in range(n_out, len(dtypes))
            ]
            results = emit.emit_region(b, region, values)
            if reduce is None:
                for k, value in enumerate(results):
                    emit.store(b, value, b.gep(bases[k], [element(k, offs[k], i)]), dtypes[k])
            elif reduce_inner:
                b.store(combine(b, reduce, b.load(accumulator), results[0], out_dtypes[0]), accumulator)
            else:
                target = b.gep(bases[0], [element(0, offs[0], i)])
                b.store(combine(b, reduce, b.load(target), results[0], out_dtypes[0]), target)
        if reduce_inner:
            b.store(b.load(accumulator), b.gep(bases[0], [offs[0]]))

    def loop_nest(dim: int, lo: ir.Value, hi: ir.Value, offs: list[ir.Value]) -> None:
        if dim == rank - 1:
            inner_loop(lo, hi, offs)
            return
        with for_range(b, lo, hi, name=f"d{dim}") as i:
            moved = [b.add(off, b.mul(i, strides[k][dim])) for k, off in enumerate(offs)]
            loop_nest(dim + 1, I64(0), shape[dim + 1], moved)

    if chunked:  # tasks are chunks of the reduced outer dim, each reduced into its partial output
        partials = b.bitcast(b.load(b.gep(ctx, [I32(0), I32(2)])), bases[0].type)
        chunk = b.load(b.gep(ctx, [I32(0), I32(3)]))
        with for_range(b, begin, end, name="chunk") as c:
            lo = b.mul(c, chunk)
            hi = b.add(lo, chunk)
            hi = b.select(b.icmp_signed("<", hi, shape[0]), hi, shape[0])
            bases[0] = b.gep(partials, [b.mul(c, meta[0])])
            loop_nest(0, lo, hi, offsets)
    else:
        loop_nest(0, begin, end, offsets)
    b.ret_void()
    driver = define_parallel_for(module, body)

    kernel = ir.Function(module, KERNEL_TYPE, name)
    b = ir.IRBuilder(kernel.append_basic_block("entry"))
    pointers_arg, meta_arg = kernel.args
    meta = _Meta(b, meta_arg, static_meta)
    if reduce is not None:
        out = b.bitcast(b.load(pointers_arg), emit.memory_type(out_dtypes[0]).as_pointer())
        fill = constant(out_dtypes[0], identity(reduce, out_dtypes[0]))
        with for_range(b, I64(0), meta[0], name="fill") as j:
            b.store(fill, b.gep(out, [j]))
    inner_work = I64(1)
    for d in range(1, rank):
        inner_work = b.mul(inner_work, meta[1 + d])
    grain = b.sdiv(I64(PARALLEL_GRAIN_ELEMENTS), b.add(inner_work, I64(1)))
    if reduce is not None and plan.reduced[0] and not chunked:
        grain = I64(2**62)  # one chunk: on the calling thread
    context = b.alloca(CHUNKED_CONTEXT if chunked else CONTEXT)
    b.store(pointers_arg, b.gep(context, [I32(0), I32(0)]))
    b.store(meta_arg, b.gep(context, [I32(0), I32(1)]))
    if chunked:
        _reduce_in_chunks(b, driver, context, out, meta[0], meta[1], inner_work, reduce, out_dtypes[0])
    else:
        b.call(driver, [b.bitcast(context, I8P), meta[1], grain])
    b.ret_void()
    return kernel


def _reduce_in_chunks(b: ir.IRBuilder, driver: ir.Function, context: ir.Value, out: ir.Value, out_size: ir.Value,
                      outer: ir.Value, inner_work: ir.Value, reduce: str, dtype: DType) -> None:
    """Run a kernel whose outer dim is reduced as chunks (see the module docstring): partial
    outputs on the stack, one task per chunk, then the partials combined into `out` in order; one
    chunk, reduced into `out` itself, when there is too little work or the partials would be large."""
    work = b.select(b.icmp_signed(">", inner_work, I64(0)), inner_work, I64(1))
    length = ceil_div(b, I64(PARALLEL_GRAIN_ELEMENTS), work)
    length = b.select(b.icmp_signed(">", ceil_div(b, outer, length), I64(MAX_CHUNKS)), ceil_div(b, outer, MAX_CHUNKS),
                      length)
    chunks = ceil_div(b, outer, length)
    split = b.and_(b.icmp_signed(">", chunks, I64(1)),
                   b.icmp_signed("<=", b.mul(chunks, out_size), I64(MAX_PARTIAL_ELEMENTS)))
    chunks = b.select(split, chunks, I64(1))
    length = b.select(split, length, b.select(b.icmp_signed(">", outer, I64(0)), outer, I64(1)))
    count = b.select(split, b.mul(chunks, out_size), I64(1))
    scratch = b.alloca(out.type.pointee, size=count)
    partials = b.select(split, scratch, out)
    fill = constant(dtype, identity(reduce, dtype))
    with b.if_then(split):
        with for_range(b, I64(0), count, name="clear") as j:
            b.store(fill, b.gep(partials, [j]))
    b.store(b.bitcast(partials, I8P), b.gep(context, [I32(0), I32(2)]))
    b.store(length, b.gep(context, [I32(0), I32(3)]))
    b.call(driver, [b.bitcast(context, I8P), chunks, I64(1)])
    with b.if_then(split):
        with for_range(b, I64(0), chunks, name="partial") as c:
            row = b.gep(partials, [b.mul(c, out_size)])
            with for_range(b, I64(0), out_size, name="combine") as j:
                slot = b.gep(out, [j])
                b.store(combine(b, reduce, b.load(slot), b.load(b.gep(row, [j])), dtype), slot)
