"""Partial vectors: the first `valid` lanes of a vector are elements, the rest must not touch memory.

Tiles whose edge is not a whole vector (an output row of 13 columns, 11 output
channels) run the same vector code as whole ones; only their memory accesses
change. Contiguous loads use llvm.masked.load (vmaskmov). Stores, and loads at
arbitrary offsets (gathers), are scalar accesses without branches: a lane past
`valid` is redirected to lane 0's address, which is always an element. Loads
read lane 0's element again; stores go in descending lane order so lane 0
writes its own value last. A masked vector store (vmaskmovps, or LLVM's
per-lane branches for bytes) would be shorter, but on this Zen 1 it made the
direct convolution of LeNet's conv1 (rows of 28 = 3 vectors + 4 lanes) 12%
slower than these stores (1 thread, 646 -> 725 us).
"""

from __future__ import annotations

from typing import Sequence

from llvmlite import ir

from .emit import I64
from .gemm_kernel import splat, vector_pointer

I32 = ir.IntType(32)


def lane_mask(b: ir.IRBuilder, valid: ir.Value, lanes: int) -> ir.Value:
    """<lanes x i1>: lane j < valid."""
    index = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
    return b.icmp_signed("<", index, splat(b, valid, lanes))


def _intrinsic(b: ir.IRBuilder, name: str, ftype: ir.FunctionType) -> ir.Function:
    return b.module.globals.get(name) or ir.Function(b.module, ftype, name)


def _align(vector: ir.VectorType) -> ir.Constant:
    element = vector.element
    return I32(8 if isinstance(element, ir.DoubleType) else 4 if isinstance(element, ir.FloatType)
               else element.width // 8)


def _suffix(vector: ir.VectorType) -> str:
    element = vector.element
    kind = element.intrinsic_name if isinstance(element, (ir.FloatType, ir.DoubleType)) else f"i{element.width}"
    return f"v{vector.count}{kind}.p0"


def masked_load(b: ir.IRBuilder, pointer: ir.Value, mask: ir.Value, vector: ir.VectorType,
                passthru: ir.Value | None = None) -> ir.Value:
    """Lanes of `pointer` (an element pointer) where `mask` is set, `passthru` (zeros) elsewhere;
    masked-off lanes are not read."""
    fn = _intrinsic(b, f"llvm.masked.load.{_suffix(vector)}",
                    ir.FunctionType(vector, [vector.as_pointer(), I32, mask.type, vector]))
    if passthru is None:
        zero = 0.0 if isinstance(vector.element, (ir.FloatType, ir.DoubleType)) else 0
        passthru = ir.Constant(vector, [zero] * vector.count)
    return b.call(fn, [vector_pointer(b, pointer, vector), _align(vector), mask, passthru])


def masked_store(b: ir.IRBuilder, value: ir.Value, pointer: ir.Value, valid: ir.Value) -> None:
    """Store the first `valid` lanes of `value` at `pointer` (an element pointer): per-lane stores,
    since a masked vector store (vmaskmov) is slow on this machine (see the module doc)."""
    scatter(b, value, pointer, [I64(j) for j in range(value.type.count)], valid)


def clamped(b: ir.IRBuilder, offsets: Sequence[ir.Value], valid: ir.Value | None) -> list[ir.Value]:
    """Per-lane offsets with the lanes past `valid` moved onto lane 0's."""
    if valid is None:
        return list(offsets)
    return [offsets[0]] + [b.select(b.icmp_signed("<", I64(j), valid), offset, offsets[0])
                           for j, offset in enumerate(offsets) if j]


def gather(b: ir.IRBuilder, pointer: ir.Value, offsets: Sequence[ir.Value], valid: ir.Value | None,
           vector: ir.VectorType) -> ir.Value:
    """vector[j] = pointer[offsets[j]] (raw memory elements), lanes past `valid` not read."""
    result = ir.Constant(vector, ir.Undefined)
    for j, offset in enumerate(clamped(b, offsets, valid)):
        result = b.insert_element(result, b.load(b.gep(pointer, [offset])), I64(j))
    return result


def scatter(b: ir.IRBuilder, value: ir.Value, pointer: ir.Value, offsets: Sequence[ir.Value],
            valid: ir.Value | None) -> None:
    """pointer[offsets[j]] = value[j] (raw memory elements) for the lanes below `valid`."""
    lanes = list(enumerate(clamped(b, offsets, valid)))
    for j, offset in reversed(lanes):  # lane 0 last: the clamped lanes' stores land before its own
        b.store(b.extract_element(value, I64(j)), b.gep(pointer, [offset]))


__all__ = ["clamped", "gather", "lane_mask", "masked_load", "masked_store", "scatter"]
