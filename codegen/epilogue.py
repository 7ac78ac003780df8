"""The region of a fused contraction as a GEMM epilogue (codegen.gemm's hook).

A GEMM call computes tiles of C indexed by (batch, row, col); `TileLayout`
says which dims of the contraction's output shape each of the three runs
over (matmul: the batch dims, M, N; conv2d: the image, the output channel,
the spatial positions OH*OW). The epilogue receives an accumulator register:
a vector of `lanes` consecutive elements along the columns (the GEMM, the
direct convolution's "W" orientation) or along the rows (the direct
convolution's "C" orientation: output channels), or a scalar at GEMM tile
edges. It loads the other operands' lanes at the same output indices through
their views, runs the region on registers (codegen.emit) and stores every
region output but one into its buffer; that one (`store_output`, of C's
dtype) is what the kernel stores into its C tile.

Loads and stores along the lane axis are vectors when the view's stride there
is 1, a splat when it is 0, and per-lane scalars otherwise (also when the
column dims of a view cannot be merged into one stride, e.g. a conv operand
that is not contiguous over OH x OW). A partial vector (`EpilogueIndex.valid`
lanes of `lanes`, a row or channel tail) computes every lane but touches
memory only for the valid ones (codegen.lanes: masked vector accesses,
clamped per-lane ones), one more variant of the body.

The body is one internal function per vector width, called from the
micro-kernels; LLVM's inliner decides per call site, so a small region (bias
+ relu) is inlined into every store of the tile, while a large one (exp,
tanh) can stay one out-of-line copy per width. Inlining costs compile time
(the GEMM has 12 micro-kernels, each storing its tile in several places):
measured on LeNet's training step, cold compile 14.5 s -> 21.2 s CPU; marking
the body noinline gives 18.5 s but +0.25 ms per step (measured when the
direct convolution still called the epilogue per element), so it is left to
the inliner.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

from llvmlite import ir

from ir.graph import Graph, Node
from ir.types import DType, contiguous_strides

from . import emit
from .emit import I1, I64
from .gemm_kernel import EpilogueIndex, blocking_for, splat
from .lanes import gather, lane_mask, masked_load, masked_store, scatter

View = tuple[int, ...]  # (offset, *strides) over the output shape, as in the IR's `views`


@dataclass(frozen=True)
class TileLayout:
    """Which output dims the GEMM's batch, row and column indices run over (each a row-major group)."""

    shape: tuple[int, ...]
    groups: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    def corner_offset(self, view: View, corner: Sequence[int]) -> int:
        """Element offset of output index `corner` in `view`: where a GEMM call's (0, 0, 0) reads."""
        return view[0] + sum(c * s for c, s in zip(corner, view[1:]))


def store_output(region: Graph, dtype: DType) -> int | None:
    """The region output stored through the GEMM's C tile: the first of C's dtype."""
    return next((i for i, v in enumerate(region.outputs) if v.dtype == dtype), None)


class RegionEpilogue:
    """Callable as a codegen.gemm `Epilogue`; `arg_types` are the GEMM's extra arguments:
    one pointer per input operand (read through its view), then one per output other than
    `store_output`, each pointing at the element a GEMM call's (0, 0, 0) maps to."""

    def __init__(self, name: str, region: Graph, layout: TileLayout, views: Sequence[View]):
        self.name, self.region, self.layout = name, region, layout
        self.c_dtype = region.inputs[0].dtype
        self.stored = store_output(region, self.c_dtype)
        if self.stored is None:
            raise ValueError(f"{name}: the epilogue region has no output of the contraction's dtype "
                             f"{self.c_dtype} to store through the C tile")
        contiguous = (0, *contiguous_strides(layout.shape))
        self.in_dtypes = [v.dtype for v in region.inputs[1:]]
        self.out_dtypes = [v.dtype for i, v in enumerate(region.outputs) if i != self.stored]
        self.views = [tuple(v) for v in views] + [contiguous] * len(self.out_dtypes)
        self.arg_types = [emit.memory_type(d).as_pointer() for d in self.in_dtypes + self.out_dtypes]
        self._functions: dict[int, ir.Function] = {}

    def arguments(self, b: ir.IRBuilder, buffers: Sequence[ir.Value], corner: Sequence[int]) -> list[ir.Value]:
        """The extra GEMM arguments for a call whose C tile starts at output index `corner`;
        `buffers` are the raw (i8*) pointers of the input operands, then of the other outputs."""
        return [element_pointer(b, raw, dtype, self.layout.corner_offset(view, corner))
                for raw, dtype, view in zip(buffers, self.in_dtypes + self.out_dtypes, self.views)]

    def __call__(self, b: ir.IRBuilder, value: ir.Value, index: EpilogueIndex,
                 extras: Sequence[ir.Value]) -> ir.Value:
        masked = index.valid is not None and index.lanes > 1
        key = (index.lanes, index.axis, masked)
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = self._define(b.module, value.type, *key)
        valid = [index.valid] if masked else []
        return b.call(fn, [value, index.batch, index.row, index.col, *valid, *extras])

    def _define(self, module: ir.Module, value_type: ir.Type, lanes: int, axis: str, masked: bool) -> ir.Function:
        counts = [I64] if masked else []
        fn = ir.Function(module, ir.FunctionType(value_type, [value_type, I64, I64, I64, *counts, *self.arg_types]),
                         f"{self.name}.epilogue{lanes}{axis if lanes > 1 else ''}{'m' if masked else ''}")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        value, batch, row, col = fn.args[:4]
        valid = fn.args[4] if masked else None
        pointers = fn.args[4 + len(counts):]
        mask = lane_mask(b, valid, lanes) if masked else None
        n_in = len(self.in_dtypes)
        addresses = [self._lanes(b, view, (batch, row, col), lanes, axis) for view in self.views]
        inputs = [self._load(b, pointers[i], addresses[i], self.in_dtypes[i], lanes, valid, mask)
                  for i in range(n_in)]
        results = emit.emit_region(b, self.region, [value, *inputs], lanes)
        others = [r for i, r in enumerate(results) if i != self.stored]
        for k, result in enumerate(others):
            self._store(b, result, pointers[n_in + k], addresses[n_in + k], self.out_dtypes[k], lanes, valid, mask)
        b.ret(results[self.stored])
        return fn

    # -------------------------------------------------------------- addressing

    def _group_offset(self, b: ir.IRBuilder, dims: Sequence[int], strides: Sequence[int],
                      position: ir.Value) -> ir.Value:
        """Offset of flat index `position` over the output dims `dims` (row-major) in a view."""
        shape = self.layout.shape
        dims = [d for d in dims if shape[d] != 1]
        if _mergeable(dims, shape, strides):
            return b.mul(position, I64(strides[dims[-1]])) if dims else I64(0)
        total: ir.Value = I64(0)
        for d in reversed(dims):
            total = b.add(total, b.mul(b.urem(position, I64(shape[d])), I64(strides[d])))
            position = b.udiv(position, I64(shape[d]))
        return total

    def _lanes(self, b: ir.IRBuilder, view: View, index: tuple[ir.Value, ...], lanes: int, axis: str):
        """(offset of lane 0, constant step between lanes), or a list of per-lane offsets; the lanes
        run along the column group (axis "col") or the row group ("row") from `index`."""
        strides = view[1:]
        groups = self.layout.groups
        along = 2 if axis == "col" else 1
        base = functools.reduce(b.add, [self._group_offset(b, groups[g], strides, index[g])
                                        for g in range(3) if g != along])
        shape = self.layout.shape
        dims = [d for d in groups[along] if shape[d] != 1]
        if lanes == 1 or _mergeable(dims, shape, strides):
            step = strides[dims[-1]] if dims else 0
            return b.add(base, self._group_offset(b, groups[along], strides, index[along])), step
        return [b.add(base, self._group_offset(b, groups[along], strides, b.add(index[along], I64(j))))
                for j in range(lanes)]

    # -------------------------------------------------------------- memory

    def _load(self, b: ir.IRBuilder, pointer: ir.Value, address, dtype: DType, lanes: int,
              valid: ir.Value | None, mask: ir.Value | None) -> ir.Value:
        """The operand's lanes: a vector load (stride 1), a splat (stride 0) or a gather; with a
        mask, lanes past `valid` are not read (lane 0 always is)."""
        if isinstance(address, tuple) and (lanes == 1 or address[1] == 0):
            value = _from_memory(b, b.load(b.gep(pointer, [address[0]])), dtype, 1)
            return value if lanes == 1 else splat(b, value, lanes)
        vector = ir.VectorType(pointer.type.pointee, lanes)
        if isinstance(address, tuple) and address[1] == 1:
            start = b.gep(pointer, [address[0]])
            raw = b.load(b.bitcast(start, vector.as_pointer()), align=dtype.itemsize) if mask is None \
                else masked_load(b, start, mask, vector)
        else:
            raw = gather(b, pointer, _lane_offsets(b, address, lanes), valid, vector)
        return _from_memory(b, raw, dtype, lanes)

    def _store(self, b: ir.IRBuilder, value: ir.Value, pointer: ir.Value, address, dtype: DType,
               lanes: int, valid: ir.Value | None, mask: ir.Value | None) -> None:
        memory = b.zext(value, _memory_register(dtype, lanes)) if dtype.is_bool else value
        if isinstance(address, tuple) and (lanes == 1 or address[1] == 1):
            target = b.gep(pointer, [address[0]])
            if mask is not None:
                masked_store(b, memory, target, valid)
                return
            if lanes > 1:
                target = b.bitcast(target, memory.type.as_pointer())
            b.store(memory, target, align=dtype.itemsize)
            return
        scatter(b, memory, pointer, _lane_offsets(b, address, lanes), valid)


def _mergeable(dims: Sequence[int], shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether a flat index over `dims` (size-1 dims already dropped) maps to one stride in a view."""
    return all(strides[d] == strides[e] * shape[e] for d, e in zip(dims, dims[1:]))


def _lane_offsets(b: ir.IRBuilder, address, lanes: int) -> list[ir.Value]:
    if isinstance(address, list):
        return address
    base, step = address
    return [b.add(base, I64(j * step)) for j in range(lanes)]


def _memory_register(dtype: DType, lanes: int) -> ir.Type:
    scalar = emit.memory_type(dtype)
    return scalar if lanes == 1 else ir.VectorType(scalar, lanes)


def _from_memory(b: ir.IRBuilder, value: ir.Value, dtype: DType, lanes: int) -> ir.Value:
    """A loaded element (or vector) in register form: bool bytes become i1."""
    if not dtype.is_bool:
        return value
    return b.trunc(value, I1 if lanes == 1 else ir.VectorType(I1, lanes))


def stores_once(node: Node) -> bool:
    """Whether the kernel of fused contraction `node` writes each element of its stored output
    once, after the element's whole reduction. The GEMM splits K into blocks of KC and keeps the
    partial sums in the C tile between blocks; with K <= KC there is one block (the direct
    convolution never splits K, and its K is C/groups*KH*KW as in the im2col GEMM)."""
    a, w = (v.type for v in node.operands[:2])
    if node.op == "fused_conv2d":
        k = math.prod(w.shape[1:])
    else:
        k = a.shape[-2] if node.attr("transpose_a", False) else a.shape[-1]
    return k <= blocking_for(a.dtype.name).kc


def element_pointer(b: ir.IRBuilder, raw: ir.Value, dtype: DType, offset: int = 0) -> ir.Value:
    """`raw` (an i8* buffer) as a pointer to its element `offset` of `dtype`."""
    typed = b.bitcast(raw, emit.memory_type(dtype).as_pointer())
    return b.gep(typed, [I64(offset)]) if offset else typed


def tile_layout_of_matmul(shape: tuple[int, ...]) -> TileLayout:
    rank = len(shape)
    return TileLayout(shape, (tuple(range(rank - 2)), (rank - 2,), (rank - 1,)))


def tile_layout_of_conv(shape: tuple[int, ...]) -> TileLayout:
    """NCHW output, one im2col GEMM per image chunk and group: batch = image, row = channel, col = OH*OW."""
    return TileLayout(shape, ((0,), (1,), (2, 3)))


__all__ = ["RegionEpilogue", "TileLayout", "element_pointer", "store_output", "stores_once", "tile_layout_of_matmul",
           "tile_layout_of_conv"]
