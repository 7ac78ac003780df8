"""The `random_uniform` kernel: Philox-4x32-10 on vectors of eight counters.

`kernel(i8** pointers, i64* meta)` with pointers [values, state, next_state]
and meta [chunks, grain, size] computes what ir/ops_random.py defines. One
task is one chunk of 8 Philox blocks: the blocks' counters sit in the lanes of
<8 x i32> registers, the ten rounds are vector integer ops (the 32x32->64
multiplies become vpmuludq), and each of the block's words converts to eight
consecutive output values - plain vector stores. Chunks are split across
threads with codegen.parallel; a value depends only on its index, so results
are identical for any thread count. The next state is written after every
chunk has read the state, so it may share the state's buffer.
"""

from __future__ import annotations

from llvmlite import ir

from ir.graph import Node
from ir.ops_random import LANES, PHILOX_M, PHILOX_W, ROUNDS, chunks, values_per_block
from ir.types import DType

from .compiler import Buffer, Lowering, lowering
from .conv import KERNEL_TYPE, define_plane_kernel
from .emit import F32, F64, I32, I64, memory_type
from .loops import for_range
from .memory import IN_PLACE_SAFE

# Below this many values the kernel runs on the calling thread (waking threads costs microseconds).
PARALLEL_MIN_VALUES = 1 << 14

V32 = ir.VectorType(I32, LANES)
V64 = ir.VectorType(I64, LANES)


def _splat(vector_type: ir.VectorType, value: int) -> ir.Constant:
    return ir.Constant(vector_type, [ir.Constant(vector_type.element, value)] * vector_type.count)


def _broadcast(b: ir.IRBuilder, scalar: ir.Value, vector_type: ir.VectorType) -> ir.Value:
    single = b.insert_element(ir.Constant(vector_type, ir.Undefined), scalar, I32(0))
    return b.shuffle_vector(single, ir.Constant(vector_type, ir.Undefined), ir.Constant(V32, [0] * LANES))


def _philox(b: ir.IRBuilder, counter: ir.Value, key: ir.Value) -> list[ir.Value]:
    """The four output words (each <8 x i32>) of the blocks whose 64-bit counters are `counter` (<8 x i64>)."""
    c = [b.trunc(counter, V32), b.trunc(b.lshr(counter, _splat(V64, 32)), V32), _splat(V32, 0), _splat(V32, 0)]
    k0 = _broadcast(b, b.trunc(key, I32), V32)
    k1 = _broadcast(b, b.trunc(b.lshr(key, I64(32)), I32), V32)
    for r in range(ROUNDS):
        if r:
            k0, k1 = b.add(k0, _splat(V32, PHILOX_W[0])), b.add(k1, _splat(V32, PHILOX_W[1]))
        p0 = b.mul(b.zext(c[0], V64), _splat(V64, PHILOX_M[0]))
        p1 = b.mul(b.zext(c[2], V64), _splat(V64, PHILOX_M[1]))
        hi0, lo0 = b.trunc(b.lshr(p0, _splat(V64, 32)), V32), b.trunc(p0, V32)
        hi1, lo1 = b.trunc(b.lshr(p1, _splat(V64, 32)), V32), b.trunc(p1, V32)
        c = [b.xor(b.xor(hi1, c[1]), k0), lo1, b.xor(b.xor(hi0, c[3]), k1), lo0]
    return c


def _to_floats(b: ir.IRBuilder, words: list[ir.Value], dtype: DType) -> list[ir.Value]:
    """The chunk's values per word group: V vectors of 8 floats in [0, 1), exactly as the reference."""
    if dtype is DType.float32:
        vf = ir.VectorType(F32, LANES)
        scale = ir.Constant(vf, [ir.Constant(F32, 2.0**-24)] * LANES)
        return [b.fmul(b.uitofp(b.lshr(w, _splat(V32, 8)), vf), scale) for w in words]
    vd = ir.VectorType(F64, LANES)
    scale = ir.Constant(vd, [ir.Constant(F64, 2.0**-53)] * LANES)
    values = []
    for lo, hi in zip(words[0::2], words[1::2]):
        bits = b.or_(b.shl(b.zext(hi, V64), _splat(V64, 21)), b.lshr(b.zext(lo, V64), _splat(V64, 11)))
        values.append(b.fmul(b.uitofp(bits, vd), scale))
    return values


def define_random_uniform(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """`name(i8** pointers, i64* meta)`: pointers [values, state, next_state], meta [chunks, grain, size]."""
    per_chunk = LANES * values_per_block(dtype)
    element = memory_type(dtype)
    vector_pointer = ir.VectorType(element, LANES).as_pointer()

    def body(b: ir.IRBuilder, pointers: list[ir.Value], meta: list[ir.Value], task: ir.Value) -> None:
        out, state = pointers[0], b.bitcast(pointers[1], I64.as_pointer())
        size = meta[2]
        key, counter = b.load(b.gep(state, [I64(0)])), b.load(b.gep(state, [I64(1)]))
        first = b.add(counter, b.mul(task, I64(LANES)))
        counters = b.add(_broadcast(b, first, V64), ir.Constant(V64, list(range(LANES))))
        values = _to_floats(b, _philox(b, counters, key), dtype)
        start = b.mul(task, I64(per_chunk))
        with b.if_else(b.icmp_signed("<=", b.add(start, I64(per_chunk)), size)) as (full, partial):
            with full:
                for v, vector in enumerate(values):
                    target = b.bitcast(b.gep(out, [b.add(start, I64(v * LANES))]), vector_pointer)
                    b.store(vector, target, align=dtype.itemsize)
            with partial:  # the last chunk of a draw whose size is not a multiple of 8 V
                for v, vector in enumerate(values):
                    offset = b.add(start, I64(v * LANES))
                    left = b.sub(size, offset)
                    count = b.select(b.icmp_signed("<", left, I64(LANES)), left, I64(LANES))
                    with for_range(b, I64(0), count, name=f"tail{v}") as lane:
                        b.store(b.extract_element(vector, lane), b.gep(out, [b.add(offset, lane)]))

    chunk_kernel = define_plane_kernel(module, name + ".chunks", dtype, 3, 3, body)
    kernel = ir.Function(module, KERNEL_TYPE, name)
    b = ir.IRBuilder(kernel.append_basic_block("entry"))
    pointers, meta = kernel.args
    b.call(chunk_kernel, [pointers, meta])
    # Every chunk has read the state: now the next state may overwrite it.
    state = b.bitcast(b.load(b.gep(pointers, [I64(1)])), I64.as_pointer())
    next_state = b.bitcast(b.load(b.gep(pointers, [I64(2)])), I64.as_pointer())
    key, counter = b.load(b.gep(state, [I64(0)])), b.load(b.gep(state, [I64(1)]))
    advanced = b.add(counter, b.mul(b.load(b.gep(meta, [I64(0)])), I64(LANES)))
    b.store(key, b.gep(next_state, [I64(0)]))
    b.store(advanced, b.gep(next_state, [I64(1)]))
    b.ret_void()
    return kernel


def random_meta(size: int, dtype: DType) -> list[int]:
    """meta [chunks, grain, size] for a draw of `size` values."""
    count = chunks(size, dtype)
    return [count, count if size < PARALLEL_MIN_VALUES else 1, size]


# The next state (result 1) is stored after every chunk has read the state (operand 0), so the plan
# may put it in the state's own buffer: a traced step's generator update then needs no copy.
IN_PLACE_SAFE["random_uniform"] = lambda node, result, operand: result == 1


@lowering("random_uniform")
def _lower_random_uniform(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    values = node.results[0]
    kernel = define_random_uniform(ctx.module, ctx.new_kernel_name(node), values.dtype)
    meta = random_meta(values.type.size, values.dtype)
    array = ir.ArrayType(I64, len(meta))
    glob = ir.GlobalVariable(ctx.module, array, kernel.name + ".meta")
    glob.initializer, glob.global_constant = ir.Constant(array, meta), True
    ctx.call(kernel, [ctx.pointer(outs[0]), ctx.pointer(ins[0]), ctx.pointer(outs[1])],
             ctx.builder.bitcast(glob, I64.as_pointer()))
