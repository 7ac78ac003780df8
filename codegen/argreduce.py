"""argmax / argmin along one axis.

The input is viewed as (outer, n, inner) with arbitrary strides (meta =
[outer, n, inner, stride_outer, stride_axis, stride_inner]); the int32 output
is (outer, inner), contiguous. Ties go to the first index and a NaN wins
(its first occurrence), as in NumPy.
"""

from __future__ import annotations

from llvmlite import ir

from ir.types import DType

from . import emit
from .emit import I32, I64
from .loops import for_range

KERNEL_TYPE = ir.FunctionType(ir.VoidType(), [emit.I8.as_pointer().as_pointer(), I64.as_pointer()])


def define_arg_reduce(module: ir.Module, name: str, dtype: DType, primitive: str) -> ir.Function:
    kernel = ir.Function(module, KERNEL_TYPE, name)
    pointers, meta_ptr = kernel.args
    b = ir.IRBuilder(kernel.append_basic_block("entry"))
    meta = [b.load(b.gep(meta_ptr, [I64(i)])) for i in range(6)]
    outer, n, inner, s_outer, s_axis, s_inner = meta
    out = b.bitcast(b.load(b.gep(pointers, [I64(0)])), I32.as_pointer())
    x = b.bitcast(b.load(b.gep(pointers, [I64(1)])), emit.memory_type(dtype).as_pointer())
    best = b.alloca(emit.register_type(dtype))
    best_index = b.alloca(I64)
    better = ">" if primitive == "argmax" else "<"
    with for_range(b, I64(0), outer, name="o") as o:
        with for_range(b, I64(0), inner, name="j") as j:
            base = b.add(b.mul(o, s_outer), b.mul(j, s_inner))
            b.store(b.load(b.gep(x, [base])), best)
            b.store(I64(0), best_index)
            with for_range(b, I64(1), n, name="k") as k:
                value = b.load(b.gep(x, [b.add(base, b.mul(k, s_axis))]))
                current = b.load(best)
                if dtype.is_float:
                    wins = b.or_(
                        b.fcmp_ordered(better, value, current),
                        b.and_(b.fcmp_unordered("!=", value, value), b.fcmp_ordered("==", current, current)),
                    )
                else:
                    wins = b.icmp_signed(better, value, current)
                b.store(b.select(wins, value, current), best)
                b.store(b.select(wins, k, b.load(best_index)), best_index)
            b.store(b.trunc(b.load(best_index), I32), b.gep(out, [b.add(b.mul(o, inner), j)]))
    b.ret_void()
    return kernel
