"""Compiling a whole graph: one LLVM module, one function per kernel, one entry.

The entry `void run(i8** buffers)` receives the graph inputs' pointers, then
the outputs' pointers, then one arena pointer for every intermediate; it
calls the kernels in order with their shapes baked in as constants. Python
makes one native call per run.

Lowerings are keyed by primitive name (`LOWERINGS`): fused elementwise and
reduction kernels, copies for layout ops that are not views, and extension
primitives (contractions, windows) that register their own.
"""

from __future__ import annotations

import ctypes
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from llvmlite import ir

from ir.graph import Graph, GraphBuilder, Node, Value
from ir.interpret import NP_DTYPES, evaluate_node
from ir.ops import view_of
from ir.types import DType, TensorType, contiguous_strides

from . import cache, target
from .argreduce import define_arg_reduce
from .elementwise import KERNEL_TYPE, define_fused_kernel
from .emit import I8, I32, I64
from .kernels import new_module
from .plan import contiguous_view, plan_loops
from .profile import TICKS_SYMBOL, bind_ticks, emit_tick

I8P = I8.as_pointer()


@dataclass
class Buffer:
    """Where a value lives: an entry of `buffers` plus an element offset (views of reshape)."""

    slot: int
    type: TensorType


@dataclass
class Lowering:
    """The state shared while lowering one graph."""

    module: ir.Module
    builder: ir.IRBuilder
    buffers_arg: ir.Value
    kernel_names: list[str] = field(default_factory=list)
    kernel_nodes: list[Node | None] = field(default_factory=list)  # the node each kernel lowers
    profile: bool = False  # clock reads at kernel boundaries (codegen.profile)

    def pointer(self, buffer: Buffer) -> ir.Value:
        return self.builder.load(self.builder.gep(self.buffers_arg, [I64(buffer.slot)]))

    def call(self, kernel: ir.Function, pointers: list[ir.Value], meta_ptr: ir.Value | None = None) -> None:
        b = self.builder
        array = b.alloca(ir.ArrayType(I8P, max(1, len(pointers))))
        for i, p in enumerate(pointers):
            b.store(b.bitcast(p, I8P), b.gep(array, [I32(0), I32(i)]))
        meta = meta_ptr if meta_ptr is not None else ir.Constant(I64.as_pointer(), None)
        b.call(kernel, [b.bitcast(array, I8P.as_pointer()), meta])

    def new_kernel_name(self, node: Node) -> str:
        return self.begin_kernel(f"k{len(self.kernel_names)}_{node.op}", node)

    def begin_kernel(self, name: str, node: Node | None) -> str:
        """Start kernel `name`: the code emitted into the entry from here on belongs to it."""
        if self.profile:
            emit_tick(self.module, self.builder, len(self.kernel_names))
        self.kernel_names.append(name)
        self.kernel_nodes.append(node)
        return name


LowerFn = Callable[[Lowering, Node, list[Buffer], list[Buffer]], None]
LOWERINGS: dict[str, LowerFn] = {}


def lowering(*ops: str) -> Callable[[LowerFn], LowerFn]:
    def wrap(fn: LowerFn) -> LowerFn:
        for op in ops:
            LOWERINGS[op] = fn
        return fn

    return wrap


def _fused_call(ctx: Lowering, name: str, region: Graph, shape: tuple[int, ...], views: list,
                outs: list[Buffer], ins: list[Buffer], reduce: str | None = None,
                axes: tuple[int, ...] = ()) -> None:
    plan, meta = plan_loops(shape, views, axes if reduce else None, len(outs))
    kernel = define_fused_kernel(ctx.module, name, region, [o.type.dtype for o in outs],
                                 [i.type.dtype for i in ins], plan, reduce, static_meta=meta)
    ctx.call(kernel, [ctx.pointer(b) for b in outs + ins])


def _identity_region(dtype: DType) -> Graph:
    builder = GraphBuilder("region")
    return builder.output(builder.input(TensorType((), dtype)))


@lowering("fused", "fused_reduce")
def _lower_fused(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    shape = node.attr("shape")
    views = [view_of(node.attr("views"), i) for i in range(len(ins))]
    if node.op == "fused":
        out_views = [contiguous_view(shape) for _ in outs]
        _fused_call(ctx, ctx.new_kernel_name(node), node.region, shape, out_views + views, outs, ins)
    else:
        axes = node.attr("axes")
        _fused_call(ctx, ctx.new_kernel_name(node), node.region, shape,
                    [contiguous_view(shape, axes)] + views, outs, ins, node.attr("reduce"), axes)


def _layout_view(node: Node, source: TensorType) -> tuple[int, tuple[int, ...]]:
    """The (offset, strides) view over the result's shape that a layout op reads its operand with."""
    strides = contiguous_strides(source.shape)
    shape = node.result.shape
    if node.op == "broadcast":
        lead = len(shape) - len(source.shape)
        out = [0] * lead + [0 if d == 1 and shape[lead + i] != 1 else s
                            for i, (d, s) in enumerate(zip(source.shape, strides))]
        return 0, tuple(out)
    if node.op == "permute":
        return 0, tuple(strides[p] for p in node.attr("perm"))
    if node.op == "slice":
        offset = sum(st * s for st, s in zip(node.attr("starts"), strides))
        return offset, tuple(s * step for s, step in zip(strides, node.attr("steps")))
    raise AssertionError(node.op)


@lowering("broadcast", "permute", "slice")
def _lower_layout_copy(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    shape = node.result.shape
    if 0 in shape:
        return
    view = _layout_view(node, ins[0].type)
    _fused_call(ctx, ctx.new_kernel_name(node), _identity_region(ins[0].type.dtype), shape,
                [contiguous_view(shape), view], outs, ins)


def _constant_region(dtype: DType, value: float | int | bool) -> Graph:
    builder = GraphBuilder("region")
    return builder.output(builder.apply("constant", value=value, shape=(), dtype=dtype.name))


def _fill(ctx: Lowering, node: Node, out: Buffer, value: float | int | bool) -> None:
    shape = out.type.shape
    if 0 in shape:
        return
    _fused_call(ctx, ctx.new_kernel_name(node), _constant_region(out.type.dtype, value), shape,
                [contiguous_view(shape)], [out], [])


@lowering("constant")
def _lower_constant(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    _fill(ctx, node, outs[0], node.attr("value"))


@lowering("pad", "concat")
def _lower_pad_concat(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    out = outs[0]
    out_shape = out.type.shape
    strides = contiguous_strides(out_shape)
    if node.op == "pad":
        _fill(ctx, node, out, node.attr("value"))
        pieces = [(ins[0], node.attr("low"))]
    else:
        axis = node.attr("axis") % len(out_shape)
        pieces, start = [], 0
        for buffer in ins:
            pieces.append((buffer, tuple(start if d == axis else 0 for d in range(len(out_shape)))))
            start += buffer.type.shape[axis]
    for buffer, corner in pieces:
        shape = buffer.type.shape
        if 0 in shape:
            continue
        out_view = (sum(c * s for c, s in zip(corner, strides)), strides)
        _fused_call(ctx, ctx.new_kernel_name(node), _identity_region(buffer.type.dtype), shape,
                    [out_view, contiguous_view(shape)], [out], [buffer])


@lowering("argmax", "argmin")
def _lower_arg(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    source = ins[0].type
    axis = node.attr("axis")
    outer, inner = math.prod(source.shape[:axis]), math.prod(source.shape[axis + 1:])
    if outer * inner == 0:
        return
    kernel = define_arg_reduce(ctx.module, ctx.new_kernel_name(node), source.dtype, node.op)
    meta = [outer, source.shape[axis], inner, source.shape[axis] * inner, inner, 1]
    meta_global = ir.GlobalVariable(ctx.module, ir.ArrayType(I64, 6), kernel.name + ".meta")
    meta_global.initializer = ir.Constant(ir.ArrayType(I64, 6), meta)
    meta_global.global_constant = True
    ctx.call(kernel, [ctx.pointer(outs[0]), ctx.pointer(ins[0])],
             ctx.builder.bitcast(meta_global, I64.as_pointer()))


@lowering("assign")
def _lower_assign(ctx: Lowering, node: Node, outs: list[Buffer], ins: list[Buffer]) -> None:
    """State update: copy the new value into the state input's own buffer."""
    target_buffer, value = ins
    if target_buffer.slot == value.slot or 0 in value.type.shape:
        return
    shape = value.type.shape
    _fused_call(ctx, ctx.new_kernel_name(node), _identity_region(value.type.dtype), shape,
                [contiguous_view(shape), contiguous_view(shape)], [target_buffer], [value])


@dataclass
class CompiledGraph:
    """A graph compiled to one native entry point."""

    graph: Graph
    llvm_ir: str
    entry: Callable
    n_inputs: int
    n_outputs: int
    slots: int
    arena: list[np.ndarray]  # buffers owned by the executable (intermediates, constants)
    kernel_names: list[str]
    compile_seconds: float
    _object: object = None
    calls: int = 0
    kernel_nodes: list[Node | None] = field(default_factory=list)
    ticks: np.ndarray | None = None  # with profile=True: kernel i ran from ticks[i] to ticks[i+1] (ns)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        if len(inputs) != self.n_inputs:
            raise ValueError(f"{self.graph.name} takes {self.n_inputs} inputs, got {len(inputs)}")
        arrays = []
        for value, array in zip(self.graph.inputs, inputs):
            want = np.dtype(NP_DTYPES[value.dtype.value])
            if tuple(array.shape) != value.shape or array.dtype != want:
                raise ValueError(
                    f"{self.graph.name}: input {len(arrays)} is {array.dtype}{list(array.shape)}, "
                    f"the compiled graph needs {want}{list(value.shape)}"
                )
            arrays.append(np.ascontiguousarray(array))
        outputs = [np.empty(v.shape, NP_DTYPES[v.dtype.value]) for v in self.graph.outputs]
        self.run_into(arrays, outputs)
        return outputs

    def run_into(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        """One native call; `inputs`/`outputs` must be contiguous arrays of the right types."""
        pointers = (ctypes.c_void_p * self.slots)()
        for i, array in enumerate(inputs):
            pointers[i] = array.ctypes.data
        for i, array in enumerate(outputs):
            pointers[self.n_inputs + i] = array.ctypes.data
        for i, array in enumerate(self.arena):
            pointers[self.n_inputs + self.n_outputs + i] = array.ctypes.data
        self.calls += 1
        self.entry(pointers)


ENTRY_CFUNC = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_void_p))


def compile_graph(graph: Graph, profile: bool = False) -> CompiledGraph:
    """Lower `graph` (already optimised: elementwise work in fused nodes) to native code.

    `profile=True` also records when each kernel starts into `CompiledGraph.ticks`.
    """
    start = time.perf_counter()
    module = new_module(graph.name)
    entry = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8P.as_pointer()]), "run")
    builder = ir.IRBuilder(entry.append_basic_block("entry"))
    ctx = Lowering(module, builder, entry.args[0], profile=profile)

    buffers: dict[Value, Buffer] = {}
    n_in, n_out = len(graph.inputs), len(graph.outputs)
    for i, value in enumerate(graph.inputs):
        buffers[value] = Buffer(i, value.type)
    arena: list[np.ndarray] = []
    output_slots: dict[Value, int] = {}
    for i, value in enumerate(graph.outputs):
        output_slots.setdefault(value, n_in + i)

    def allocate(value: Value) -> Buffer:
        if value in output_slots and value not in buffers:
            return Buffer(output_slots[value], value.type)
        arena.append(np.empty(max(1, value.type.size), NP_DTYPES[value.dtype.value]))
        return Buffer(n_in + n_out + len(arena) - 1, value.type)

    for node in graph.nodes:
        ins = [buffers[v] for v in node.operands]
        if node.op == "reshape" and node.result not in output_slots:
            buffers[node.result] = Buffer(ins[0].slot, node.result.type)
            continue
        if node.op == "iota":
            array = evaluate_node(node, [])[0]
            arena.append(np.ascontiguousarray(array).reshape(-1))
            buffers[node.result] = Buffer(n_in + n_out + len(arena) - 1, node.result.type)
            continue
        if node.op == "assign":
            buffers[node.result] = ins[0]
            LOWERINGS["assign"](ctx, node, [], ins)
            continue
        outs = [allocate(r) for r in node.results]
        for r, b in zip(node.results, outs):
            buffers[r] = b
        if node.op == "reshape":  # an output of its own: copy (any other reshape aliases, above)
            shape = node.result.shape or (1,)
            _fused_call(ctx, ctx.new_kernel_name(node), _identity_region(node.result.dtype),
                        shape, [contiguous_view(shape)] * 2, outs, ins)
            continue
        lower = LOWERINGS.get(node.op)
        if lower is None:
            raise NotImplementedError(f"codegen has no lowering for {node.op!r} (run the fusion passes first?)")
        lower(ctx, node, outs, ins)

    # Outputs that alias inputs or other values are copied into their output slot.
    for i, value in enumerate(graph.outputs):
        source = buffers[value]
        if source.slot != n_in + i and 0 not in value.shape:
            shape = value.shape or (1,)
            _fused_call(ctx, ctx.begin_kernel(f"out{i}_copy", None), _identity_region(value.dtype), shape,
                        [contiguous_view(shape)] * 2, [Buffer(n_in + i, value.type)], [source])
    if profile:
        emit_tick(module, builder, len(ctx.kernel_names))
    builder.ret_void()

    llvm_ir = str(module)
    obj = cache.cached_object(llvm_ir, target.object_code)
    loaded = target.LoadedObject(obj)
    compiled = CompiledGraph(
        graph=graph, llvm_ir=llvm_ir, entry=ENTRY_CFUNC(loaded.address("run")), n_inputs=n_in,
        n_outputs=n_out, slots=n_in + n_out + len(arena), arena=arena,
        kernel_names=ctx.kernel_names, kernel_nodes=ctx.kernel_nodes,
        compile_seconds=time.perf_counter() - start, _object=loaded,
    )
    if profile:
        compiled.ticks = np.zeros(len(ctx.kernel_names) + 1, np.int64)
        bind_ticks(loaded.address(TICKS_SYMBOL), compiled.ticks.ctypes.data)
    return compiled


__all__ = ["compile_graph", "CompiledGraph", "LOWERINGS", "lowering", "KERNEL_TYPE"]

from . import lower_nn  # noqa: E402,F401  (contraction lowerings register themselves)
from . import lower_conv  # noqa: E402,F401  (window-op lowerings register themselves)
from . import random  # noqa: E402,F401  (random_uniform's lowering)
