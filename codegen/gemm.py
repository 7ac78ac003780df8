"""Batched GEMM with fused epilogues: C[b] = epilogue(op(A[b]) @ op(B[b])).

`define_gemm` emits

    void name(T* A, T* B, T* C, i64 batch, i64 M, i64 N, i64 K, i64 lda, i64 ldb, i64 ldc,
              i64 stride_a, i64 stride_b, i64 stride_c, [i8* workspace, i64 slot_bytes, i64 slots,]
              <extra args>)

BLIS-style: the batch x N blocks x M blocks grid of macro-tiles is split
across threads (codegen.parallel). A thread walks its tasks grouped by
(batch, N block): per K block it packs that B block once (KC x NR panels),
then per M block packs A (MR x KC panels) and runs the
register-blocked micro-kernel (codegen.gemm_kernel) over the MR x NR tiles.
The packing buffers are thread t's slot of the caller's workspace (a compiled
graph's arena: nothing allocated per step; `workspace_bytes` sizes a slot), or
malloc'ed when there is none, the slot is too small or t >= slots.
Small problems (one K block, operands within half of L2) skip packing: the
micro-kernel reads op(A), and op(B) when not transposed, in place.

The loop nest (`body`), micro-kernels and packers are defined once per module,
dtype and transposition and shared by all its GEMMs: a GEMM of its own is a
small driver (blocking arithmetic, constants for static shapes) and, when it
has one, its fused epilogue, a function the body calls (through the context)
after the last K block's micro-kernel: it reads the tile the micro-kernel
wrote to a stack buffer (still in L1) and writes C once. (One loop nest and
12 micro-kernels per GEMM, each with the epilogue inlined, made a training
step's module 4.4 MB of LLVM IR and 15 s of compile time.)

How M and N are cut up depends on the thread count; the arithmetic of an
element does not: K blocks depend on K only (never split across threads),
and every path runs the same FMA chain in k order, packed or not, full tile
or edge. So results are bit-identical for any thread count, and static
shapes give the same bits as dynamic ones.

`compile_gemm` wraps it for NumPy arrays (tests, benchmarks, the eager front end).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Callable, Sequence

import numpy as np
from llvmlite import ir

from . import cache, target
from .emit import module_global
from .gemm_kernel import (
    ELEMENT_TYPES, I1, I64, Blocking, Epilogue, EpilogueIndex, blocking_for, ceil_div, define_micro_kernel,
    define_once, define_pack, entry_alloca, gep, imin, micro_heights, vector_pointer,
)
from .kernels import DATA_OFFSET
from .lanes import masked_store
from .loops import for_range
from .parallel import define_parallel_for

__all__ = ["EpilogueIndex", "define_gemm", "compile_gemm", "workspace_bytes"]

I8P = ir.IntType(8).as_pointer()
# Below this many multiply-adds a problem runs on the calling thread: waking
# the OpenMP team costs a few microseconds, about a 64^3 product on one core.
PARALLEL_MIN_FMAS = 1 << 18
# Counts the packing-buffer pairs a module's GEMMs had to malloc (no workspace, or one too small).
FALLBACK_ALLOCATIONS_SYMBOL = "gemm_fallback_allocations"
# Problems whose operands take at most this much skip packing (see _shared_body).
DIRECT_MAX_BYTES = target.host().l2_bytes // 2
DIRECT_A_MAX_PANELS = 4


def _declare(module: ir.Module, name: str, ret: ir.Type, args: Sequence[ir.Type]) -> ir.Function:
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ret, list(args)), name)


def _shared_pack(module: ir.Module, blk: Blocking, operand: str, along_k_contiguous: bool) -> ir.Function:
    """The module's packer for `operand` in this layout (every GEMM of the module shares it)."""
    name = f"gemm.{blk.dtype}.pack_{operand}{'_k' if along_k_contiguous else ''}"
    return define_once(module, name, lambda: define_pack(module, name, blk, operand, along_k_contiguous))


def _packing_buffers(b: ir.IRBuilder, blk: Blocking, a_elements: ir.Value, b_elements: ir.Value,
                     workspace: ir.Value, slot_bytes: ir.Value, slots: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(A buffer, B buffer, whether they were malloc'ed): this thread's workspace slot when it has
    one that fits, else two 64-byte aligned aligned_alloc buffers."""
    P = blk.element.as_pointer()
    a_bytes, b_bytes = _packing_bytes(b, blk, a_elements), _packing_bytes(b, blk, b_elements)
    thread = b.sext(b.call(_declare(b.module, "omp_get_thread_num", ir.IntType(32), []), []), I64)
    fits = b.and_(b.icmp_unsigned("!=", workspace, ir.Constant(I8P, None)),
                  b.and_(b.icmp_signed("<", thread, slots), b.icmp_signed("<=", b.add(a_bytes, b_bytes), slot_bytes)))
    a_slot, b_slot = entry_alloca(b, P, "a_buffer"), entry_alloca(b, P, "b_buffer")
    with b.if_else(fits) as (in_workspace, allocated):
        with in_workspace:
            start = b.gep(workspace, [b.mul(thread, slot_bytes)])
            b.store(b.bitcast(start, P), a_slot)
            b.store(b.bitcast(b.gep(start, [a_bytes]), P), b_slot)
        with allocated:
            counter = module_global(b.module, FALLBACK_ALLOCATIONS_SYMBOL, I64)
            b.atomic_rmw("add", counter, I64(1), "monotonic")
            aligned_alloc = _declare(b.module, "aligned_alloc", I8P, [I64, I64])
            b.store(b.bitcast(b.call(aligned_alloc, [I64(64), a_bytes]), P), a_slot)
            b.store(b.bitcast(b.call(aligned_alloc, [I64(64), b_bytes]), P), b_slot)
    return b.load(a_slot), b.load(b_slot), b.not_(fits)


def _free(b: ir.IRBuilder, pointer: ir.Value) -> None:
    free = _declare(b.module, "free", ir.VoidType(), [I8P])
    b.call(free, [b.bitcast(pointer, I8P)])


def _epilogue_type(blk: Blocking) -> ir.FunctionType:
    """A tile epilogue: (tile, c, ldc, rows, cols, batch, row, col, extras struct)."""
    P = blk.element.as_pointer()
    return ir.FunctionType(ir.VoidType(), [P, P, I64, I64, I64, I64, I64, I64, I8P])


def _ctx_type(blk: Blocking) -> ir.LiteralStructType:
    """The body's context: the 13 GEMM arguments, mc, ncb, mb, nb (the task grid), the tile
    epilogue (null: none), the struct of its extra arguments, and the workspace (null: none), its
    slot size in bytes and slot count."""
    P = blk.element.as_pointer()
    return ir.LiteralStructType([P, P, P] + [I64] * 14 + [_epilogue_type(blk).as_pointer(), I8P, I8P, I64, I64])


def workspace_bytes(dtype: str, m: int, n: int, k: int) -> int:
    """The most packing-buffer bytes one thread of an (M, N, K) product takes: an A panel of
    mc <= MC rows and a B panel of ncb <= NC columns (rounded to MR, NR), kc <= KC deep, each
    rounded as `_packing_bytes` rounds it."""
    blk = blocking_for(dtype)
    rows = -(-min(m, blk.mc) // blk.mr) * blk.mr
    cols = -(-min(n, blk.nc) // blk.nr) * blk.nr
    depth = max(1, min(k, blk.kc))
    return sum((elements * blk.element_bytes + 127) // 64 * 64 for elements in (rows * depth, cols * depth))


def _packing_bytes(b: ir.IRBuilder, blk: Blocking, elements: ir.Value) -> ir.Value:
    """Bytes of a packing buffer of `elements`, in whole cache lines with one spare."""
    return b.and_(b.add(b.mul(elements, I64(blk.element_bytes)), I64(127)), I64(-64))


def _shared_body(module: ir.Module, blk: Blocking, trans_a: bool, trans_b: bool) -> ir.Function:
    """`void body(ctx, begin, end)`: macro-tiles [begin, end) of the batch x M x N grid. One per
    module, dtype and transposition: every GEMM of a graph with those shares it (sizes, epilogue
    and its arguments come in the context), so a training step compiles a few, not one per product."""
    name = f"gemm.{blk.dtype}.body{int(trans_a)}{int(trans_b)}"
    return define_once(module, name, lambda: _define_body(module, name, blk, trans_a, trans_b))


def _define_body(module: ir.Module, name: str, blk: Blocking, trans_a: bool, trans_b: bool) -> ir.Function:
    heights = micro_heights(blk)
    kernels = [define_micro_kernel(module, blk, height, blk.nv) for height in heights]
    narrow_kernels = [define_micro_kernel(module, blk, height, 1) for height in heights] \
        if blk.nv > 1 else kernels
    pack_a = _shared_pack(module, blk, "A", along_k_contiguous=not trans_a)
    pack_b = _shared_pack(module, blk, "B", along_k_contiguous=trans_b)

    ctx_type = _ctx_type(blk)
    body = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8P, I64, I64]), name)
    body.linkage = "internal"
    b = ir.IRBuilder(body.append_basic_block("entry"))
    ctx = b.bitcast(body.args[0], ctx_type.as_pointer())
    fields = [b.load(b.gep(ctx, [ir.IntType(32)(0), ir.IntType(32)(i)])) for i in range(len(ctx_type.elements))]
    (A, B, C, batch, M, N, K, lda, ldb, ldc, sa, sb, sc, mc, ncb, mb, nb, tile_epilogue, extras,
     workspace, slot_bytes, slots) = fields
    fused = b.icmp_unsigned("!=", tile_epilogue, ir.Constant(tile_epilogue.type, None))
    begin, end = body.args[1], body.args[2]

    # K blocks of (almost) equal length, at most KC: depends on K only.
    k_blocks = b.select(b.icmp_signed(">", K, I64(0)), ceil_div(b, K, blk.kc), I64(1))
    kc = ceil_div(b, K, k_blocks)
    # Small problems (one K block, operands within half of L2) skip packing:
    # the micro-kernel reads op(A) in place, and op(B) too when its rows are
    # contiguous (only the last, partial NR panel is packed, zero-padded).
    # A (not transposed) is also read in place when N has at most
    # DIRECT_A_MAX_PANELS panels: too few reuses to pay for its transposing
    # copy. (Transposed A read in place strides lda per k: measured far slower.)
    footprint = b.mul(b.add(b.mul(M, K), b.mul(K, N)), I64(blk.element_bytes))
    small = b.and_(b.icmp_signed("<=", K, I64(blk.kc)), b.icmp_signed("<=", footprint, I64(DIRECT_MAX_BYTES)))
    direct_a = small if trans_a else b.or_(small, b.icmp_signed("<=", N, I64(DIRECT_A_MAX_PANELS * blk.nr)))
    direct_b = I1(0) if trans_b else small
    a_buffer, b_buffer, allocated = _packing_buffers(
        b, blk, b.mul(b.mul(ceil_div(b, mc, blk.mr), I64(blk.mr)), kc),
        b.mul(b.mul(ceil_div(b, ncb, blk.nr), I64(blk.nr)), kc), workspace, slot_bytes, slots)
    # The last K block of a fused GEMM: the micro-kernel writes its tile here (L1), the epilogue
    # reads it and writes C once.
    result_tile = entry_alloca(b, ir.ArrayType(blk.element, blk.mr * blk.nr), "result_tile")
    result_tile.align = 64
    result_tile = b.gep(result_tile, [ir.IntType(32)(0), ir.IntType(32)(0)])

    # Tasks are numbered (batch, N block, M block) with M fastest, so a thread's
    # consecutive tasks share a B block: pack it once per K block for all of them.
    group_begin = b.sdiv(begin, mb)
    group_end = b.add(b.sdiv(b.sub(end, I64(1)), mb), I64(1))
    with for_range(b, group_begin, group_end, name="group") as group:
        bi = b.sdiv(group, nb)
        j0 = b.mul(b.srem(group, nb), ncb)
        n_cur = imin(b, ncb, b.sub(N, j0))
        first_task = b.mul(group, mb)
        task_begin = b.select(b.icmp_signed(">", begin, first_task), begin, first_task)
        task_end = imin(b, end, b.add(first_task, mb))
        a_base = gep(b, A, b.mul(bi, sa))
        b_base = gep(b, B, b.mul(bi, sb))
        with for_range(b, I64(0), k_blocks, name="kb") as kb:
            k0 = b.mul(kb, kc)
            k_cur = imin(b, kc, b.sub(K, k0))
            first = b.icmp_signed("==", kb, I64(0))
            last = b.icmp_signed("==", kb, b.sub(k_blocks, I64(1)))
            # Direct B: pack only the columns past the last whole NR panel.
            b_packed_from = b.select(direct_b, b.mul(b.sdiv(n_cur, I64(blk.nr)), I64(blk.nr)), I64(0))
            b_src = gep(b, b_base, b.mul(j0, ldb), k0) if trans_b else \
                gep(b, b_base, b.mul(k0, ldb), j0, b_packed_from)
            b.call(pack_b, [b_src, ldb, k_cur, b.sub(n_cur, b_packed_from), b_buffer])
            with for_range(b, task_begin, task_end, name="task") as task:
                i0 = b.mul(b.sub(task, first_task), mc)
                m_cur = imin(b, mc, b.sub(M, i0))
                c_base = gep(b, C, b.mul(bi, sc), b.mul(i0, ldc), j0)
                # op(A)[i, k] is at a_src + i*a_rs + k*a_ks
                a_rs, a_ks = (I64(1), lda) if trans_a else (lda, I64(1))
                a_src = gep(b, a_base, b.mul(i0, a_rs), b.mul(k0, a_ks))
                with b.if_then(b.not_(direct_a)):
                    b.call(pack_a, [a_src, lda, k_cur, m_cur, a_buffer])
                with for_range(b, I64(0), n_cur, blk.nr, name="jr") as jr:
                    cols = imin(b, I64(blk.nr), b.sub(n_cur, jr))
                    packed_b = b.icmp_signed(">=", jr, b_packed_from)
                    b_panel = b.select(packed_b, gep(b, b_buffer, b.mul(b.sub(jr, b_packed_from), k_cur)),
                                       gep(b, b_base, b.mul(k0, ldb), j0, jr))
                    b_ks = b.select(packed_b, I64(blk.nr), ldb)
                    with for_range(b, I64(0), m_cur, blk.mr, name="ir") as ir_:
                        rows = imin(b, I64(blk.mr), b.sub(m_cur, ir_))
                        a_panel = b.select(direct_a, gep(b, a_src, b.mul(ir_, a_rs)),
                                           gep(b, a_buffer, b.mul(ir_, k_cur)))
                        c_tile = gep(b, c_base, b.mul(ir_, ldc), jr)
                        to_tile = b.and_(last, fused)
                        c_out = b.select(to_tile, result_tile, c_tile)
                        ld_out = b.select(to_tile, I64(blk.nr), ldc)
                        args = [a_panel, b.select(direct_a, a_rs, I64(1)), b.select(direct_a, a_ks, I64(blk.mr)),
                                b_panel, b_ks, k_cur, c_tile, ldc, c_out, ld_out, rows, cols, first]
                        with b.if_else(b.icmp_signed(">", cols, I64(blk.lanes))) as (wide, narrow):
                            with wide:
                                _call_by_rows(b, kernels, heights, rows, args)
                            with narrow:
                                _call_by_rows(b, narrow_kernels, heights, rows, args)
                        with b.if_then(to_tile):
                            b.call(tile_epilogue, [result_tile, c_tile, ldc, rows, cols, bi, b.add(i0, ir_),
                                                   b.add(j0, jr), extras])
    with b.if_then(allocated):
        _free(b, a_buffer)
        _free(b, b_buffer)
    b.ret_void()
    return body


def define_tile_epilogue(module: ir.Module, name: str, blk: Blocking, extra_types: Sequence[ir.Type],
                         epilogue: Epilogue) -> ir.Function:
    """`name(tile, c, ldc, rows, cols, batch, row, col, extras)`: C[r, j] = epilogue(tile[r, j])
    for the rows x cols output tile at (batch, row, col) of C, read from the micro-kernel's result
    `tile` (MR x NR, row stride NR, still in L1); `extras` points at a struct of the epilogue's
    arguments. Whole vectors, then one partial vector per row (`EpilogueIndex.valid`): every
    element once, after its whole K reduction."""
    V, L = blk.vector, blk.lanes
    fn = ir.Function(module, _epilogue_type(blk), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    tile, c, ldc, rows, cols, batch, row, col, extras_struct = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    struct = b.bitcast(extras_struct, ir.LiteralStructType(list(extra_types)).as_pointer())
    extras = [b.load(b.gep(struct, [ir.IntType(32)(0), ir.IntType(32)(i)])) for i in range(len(extra_types))]

    def apply(r: ir.Value, v: int, valid: ir.Value | None) -> None:
        value = b.load(vector_pointer(b, gep(b, tile, b.mul(r, I64(blk.nr)), v * L), V), align=blk.element_bytes)
        index = EpilogueIndex(batch, b.add(row, r), b.add(col, I64(v * L)), L, "col", valid)
        result = epilogue(b, value, index, extras)
        target = gep(b, c, b.mul(r, ldc), v * L)
        if valid is None:
            b.store(result, vector_pointer(b, target, V), align=blk.element_bytes)
        else:
            masked_store(b, result, target, valid)

    with for_range(b, I64(0), rows, name="r") as r:
        for v in range(blk.nv):
            left = b.sub(cols, I64(v * L))
            with b.if_else(b.icmp_signed(">=", left, I64(L))) as (whole, part):
                with whole:
                    apply(r, v, None)
                with part:
                    with b.if_then(b.icmp_signed(">", left, I64(0))):
                        apply(r, v, left)
    b.ret_void()
    return fn


def _call_by_rows(b: ir.IRBuilder, kernels: list[ir.Function], heights: Sequence[int], rows: ir.Value,
                  args: list[ir.Value]) -> None:
    """Call the kernel of the lowest height >= rows: the full-height kernel is the common case."""
    done = b.append_basic_block("rows.done")
    full = b.append_basic_block("rows.full")
    switch = b.switch(rows, full)
    lower = 0
    for height, kernel in zip(heights[:-1], kernels[:-1]):
        case = b.append_basic_block(f"rows.{height}")
        for count in range(lower + 1, height + 1):
            switch.add_case(I64(count), case)
        lower = height
        b.position_at_end(case)
        b.call(kernel, args)
        b.branch(done)
    b.position_at_end(full)
    b.call(kernels[-1], args)
    b.branch(done)
    b.position_at_end(done)


def define_gemm(module: ir.Module, name: str, dtype: str, trans_a: bool, trans_b: bool,
                extra_arg_types: Sequence[ir.Type] = (),
                epilogue: Epilogue | None = None,
                static_shape: tuple[int, int, int, int] | None = None, workspace: bool = False) -> ir.Function:
    """Define the batched GEMM `name` in `module` (signature in the module doc; the workspace
    arguments only with `workspace`).

    `epilogue(builder, value, index, extra_args)` maps each output vector (`index.lanes` columns,
    of which the first `index.valid` are elements when that is set) to what is stored, once per
    element after the whole K reduction, on the tile the micro-kernel left in L1. `static_shape`
    = (batch, M, N, K) bakes the sizes into this function (its blocking arithmetic folds to
    constants); the signature stays the same and the size arguments are ignored.
    """
    if dtype not in ELEMENT_TYPES:
        raise ValueError(f"define_gemm: dtype must be 'float32' or 'float64', got {dtype!r}")
    if static_shape is not None and (len(static_shape) != 4 or min(static_shape) < 0):
        raise ValueError(f"define_gemm: static_shape must be (batch, M, N, K) >= 0, got {static_shape!r}")
    blk = blocking_for(dtype)
    P = blk.element.as_pointer()
    extra_arg_types = list(extra_arg_types)
    workspace_types = [I8P, I64, I64] if workspace else []
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [P, P, P] + [I64] * 10 + workspace_types + extra_arg_types),
                     name)
    fn.attributes.add("nounwind")
    ctx_type = _ctx_type(blk)
    driver = define_parallel_for(module, _shared_body(module, blk, trans_a, trans_b))
    tile_epilogue = None if epilogue is None else \
        define_tile_epilogue(module, name + ".epilogue", blk, extra_arg_types, epilogue)

    b = ir.IRBuilder(fn.append_basic_block("entry"))
    args = list(fn.args)
    if static_shape is not None:
        args[3:7] = [I64(v) for v in static_shape]
    batch, M, N, K = args[3:7]
    empty = b.or_(b.icmp_signed("<=", batch, I64(0)),
                  b.or_(b.icmp_signed("<=", M, I64(0)), b.icmp_signed("<=", N, I64(0))))
    with b.if_then(empty):
        b.ret_void()

    max_threads = _declare(module, "omp_get_max_threads", ir.IntType(32), [])
    fmas = b.mul(b.mul(batch, M), b.mul(N, K))
    threads = b.select(b.icmp_signed(">=", fmas, I64(PARALLEL_MIN_FMAS)),
                       b.sext(b.call(max_threads, []), I64), I64(1))
    mb, nb, mc, ncb = _split(b, blk, batch, M, N, threads)

    ctx = entry_alloca(b, ctx_type, "ctx")
    epilogue_fn = ir.Constant(_epilogue_type(blk).as_pointer(), None) if tile_epilogue is None else tile_epilogue
    extras = ir.Constant(I8P, None)
    if extra_arg_types:
        extras_type = ir.LiteralStructType(extra_arg_types)
        extras_struct = entry_alloca(b, extras_type, "extras")
        for i, value in enumerate(args[13 + len(workspace_types):]):
            b.store(value, b.gep(extras_struct, [ir.IntType(32)(0), ir.IntType(32)(i)]))
        extras = b.bitcast(extras_struct, I8P)
    workspace_values = args[13:16] if workspace else [ir.Constant(I8P, None), I64(0), I64(0)]
    values = args[:13] + [mc, ncb, mb, nb, epilogue_fn, extras] + workspace_values
    for i, value in enumerate(values):
        b.store(value, b.gep(ctx, [ir.IntType(32)(0), ir.IntType(32)(i)]))
    tasks = b.mul(batch, b.mul(mb, nb))
    grain = b.select(b.icmp_signed(">", threads, I64(1)), I64(1), tasks)
    b.call(driver, [b.bitcast(ctx, I8P), tasks, grain])
    b.ret_void()
    return fn


def _split(b: ir.IRBuilder, blk: Blocking, batch: ir.Value, M: ir.Value, N: ir.Value,
           threads: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value, ir.Value]:
    """Macro-tile grid (mb x nb blocks of mc x ncb): cache-sized blocks, enough
    tasks for every thread, and balanced when batch x N blocks cannot fill them."""
    mb = ceil_div(b, M, blk.mc)
    nb = ceil_div(b, N, blk.nc)
    max_mb = ceil_div(b, M, blk.mr)
    max_nb = ceil_div(b, N, blk.nr)
    outer = b.mul(batch, nb)
    # Too few tasks: cut M finer (then N) until every thread has one.
    want_mb = imin(b, max_mb, ceil_div(b, threads, outer))
    mb = b.select(b.icmp_signed("<", mb, want_mb), want_mb, mb)
    # One batch x N-block row of tasks: make the M count a multiple of the threads.
    rounded = b.mul(ceil_div(b, mb, threads), threads)
    mb = b.select(b.and_(b.icmp_signed("<", outer, threads), b.icmp_signed("<=", rounded, max_mb)), rounded, mb)
    want_nb = imin(b, max_nb, ceil_div(b, threads, b.mul(batch, mb)))
    nb = b.select(b.icmp_signed("<", nb, want_nb), want_nb, nb)
    mc = b.mul(ceil_div(b, ceil_div(b, M, mb), blk.mr), I64(blk.mr))
    ncb = b.mul(ceil_div(b, ceil_div(b, N, nb), blk.nr), I64(blk.nr))
    return ceil_div(b, M, mc), ceil_div(b, N, ncb), mc, ncb


# ----------------------------------------------------------------------------- NumPy convenience
# A ctypes call costs about 0.3 us per argument and `ndarray.ctypes.data`
# several microseconds, as much as a 64^3 product: the wrapper passes one
# pointer to 13 int64 slots (`<name>.packed`), and the native side reads the
# data pointers straight from the ndarray objects when that layout is
# verified (below).

_compiled: dict[tuple[str, bool, bool], tuple[target.LoadedObject, Callable]] = {}
_compile_lock = threading.Lock()
_ArgSlots = ctypes.c_int64 * 16  # 13 arguments, then 3 data pointers when DATA_OFFSET is None
_slots = threading.local()


def _define_packed_entry(module: ir.Module, gemm: ir.Function) -> ir.Function:
    """`void <gemm>.packed(i64* args)`: gemm(*args), where args[0..2] are the addresses at
    which A's, B's and C's data pointers are stored (the ndarray's own field, see below)."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64.as_pointer()]), gemm.name + ".packed")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    values = [b.load(b.gep(fn.args[0], [I64(i)])) for i in range(13)]
    pointer = gemm.args[0].type
    data = [b.load(b.inttoptr(v, pointer.as_pointer())) for v in values[:3]]
    b.call(gemm, data + values[3:])
    b.ret_void()
    return fn


def _native_gemm(dtype: str, trans_a: bool, trans_b: bool) -> Callable:
    key = (dtype, trans_a, trans_b)
    with _compile_lock:
        if key not in _compiled:
            module = ir.Module(name=f"gemm_{dtype}_{int(trans_a)}{int(trans_b)}")
            module.triple = target.host().triple
            packed = _define_packed_entry(module, define_gemm(module, "gemm", dtype, trans_a, trans_b))
            loaded = target.LoadedObject(cache.cached_object(str(module), target.object_code))
            function = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(loaded.address(packed.name))
            _compiled[key] = (loaded, function)
        return _compiled[key][1]


def _strides(x: np.ndarray, item: int) -> tuple[int, ...] | None:
    """x's strides in elements if usable (unit stride along the last axis, non-negative), else None."""
    shape = x.shape
    if x.flags.c_contiguous:  # the common case, without per-axis Python work
        return (shape[-1] * shape[-2], shape[-1], 1) if len(shape) == 3 else (shape[-1], 1)
    strides = x.strides
    elements = tuple(s // item for s in strides)
    if (strides[-1] != item and shape[-1] > 1) or min(strides) < 0 or \
            any(e * item != s for e, s in zip(elements, strides)):
        return None
    return elements


def compile_gemm(dtype: str, trans_a: bool, trans_b: bool) -> Callable[..., np.ndarray]:
    """`gemm(A, B, out=None)` = op(A) @ op(B) for 2-D, or batched 3-D operands
    (a batch of 1 broadcasts), compiled once per (dtype, trans_a, trans_b).

    op(A) is A.T (the last two axes swapped) when `trans_a`, likewise B.
    """
    if dtype not in ELEMENT_TYPES:
        raise ValueError(f"compile_gemm: dtype must be 'float32' or 'float64', got {dtype!r}")
    np_dtype = np.dtype(dtype)
    function = _native_gemm(dtype, bool(trans_a), bool(trans_b))

    item = np_dtype.itemsize

    def gemm(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        A, B = np.asarray(A), np.asarray(B)
        if A.dtype != np_dtype or B.dtype != np_dtype:
            raise TypeError(f"gemm({dtype}): A and B must be {dtype}, got {A.dtype} and {B.dtype}; "
                            f"convert with .astype(np.{dtype})")
        a_shape, b_shape = A.shape, B.shape
        if len(a_shape) not in (2, 3) or len(b_shape) not in (2, 3):
            raise ValueError(f"gemm: A and B must be 2-D or 3-D (batch, rows, cols), got shapes "
                             f"{a_shape} and {b_shape}")
        M, K = (a_shape[-1], a_shape[-2]) if trans_a else (a_shape[-2], a_shape[-1])
        K_b, N = (b_shape[-1], b_shape[-2]) if trans_b else (b_shape[-2], b_shape[-1])
        batch_a = a_shape[0] if len(a_shape) == 3 else 1
        batch_b = b_shape[0] if len(b_shape) == 3 else 1
        if K != K_b or (batch_a != batch_b and batch_a != 1 and batch_b != 1):
            raise ValueError(f"gemm(trans_a={trans_a}, trans_b={trans_b}): shapes {a_shape} and {b_shape} "
                             f"do not match: op(A) is {M}x{K}, op(B) is {K_b}x{N}"
                             + (f", batches {batch_a} and {batch_b}" if batch_a != batch_b else ""))
        batch = max(batch_a, batch_b)
        shape = (batch, M, N) if len(a_shape) == 3 or len(b_shape) == 3 else (M, N)
        if out is None:
            out = np.empty(shape, np_dtype)
        elif out.shape != shape or out.dtype != np_dtype:
            raise ValueError(f"gemm: out must be {dtype} of shape {shape}, got {out.dtype} {out.shape}")
        if out.size == 0:
            return out
        c_strides = _strides(out, item)
        if c_strides is None:
            raise ValueError(f"gemm: out must have unit stride along its last axis and non-negative strides, "
                             f"got strides {out.strides}")
        a_strides, b_strides = _strides(A, item), _strides(B, item)
        if a_strides is None:
            A = np.ascontiguousarray(A)
            a_strides = _strides(A, item)
        if b_strides is None:
            B = np.ascontiguousarray(B)
            b_strides = _strides(B, item)
        slots = getattr(_slots, "args", None)
        if slots is None:
            slots = _slots.args = _ArgSlots()  # per thread: calls release the GIL
        if DATA_OFFSET is None:
            base = ctypes.addressof(slots) + 13 * 8
            slots[13:] = (A.ctypes.data, B.ctypes.data, out.ctypes.data)
            pointer_refs = (base, base + 8, base + 16)
        else:  # the ndarray objects' own data fields: no ctypes object per call
            pointer_refs = (id(A) + DATA_OFFSET, id(B) + DATA_OFFSET, id(out) + DATA_OFFSET)
        slots[:13] = (*pointer_refs, batch, M, N, K,
                    a_strides[-2], b_strides[-2], c_strides[-2],
                    a_strides[0] if batch_a > 1 else 0, b_strides[0] if batch_b > 1 else 0,
                    c_strides[0] if batch > 1 else 0)
        function(ctypes.addressof(slots))
        return out

    return gemm
