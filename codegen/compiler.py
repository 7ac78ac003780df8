"""Compiling a whole graph: one LLVM module, one function per kernel, one entry.

The entry `void run(i8** buffers)` receives the graph inputs' pointers, then
the outputs' pointers, then the pointer of one 64-byte aligned arena that
holds every intermediate at the byte offset codegen.memory planned (buffers
are reused once dead; state updates are computed in place where safe); it
calls the kernels in order with their shapes baked in as constants. Python
makes one native call per run, through a pointer array the `CompiledGraph`
keeps and refreshes only where a bound array changed.

Lowerings are keyed by primitive name (`LOWERINGS`): fused elementwise and
reduction kernels, copies for layout ops that are not views, and extension
primitives (contractions, windows) that register their own.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from llvmlite import ir

from ir.graph import Graph, GraphBuilder, Node
from ir.interpret import NP_DTYPES, evaluate_node
from ir.printer import print_graph
from ir.ops import view_of
from ir.types import DType, TensorType, contiguous_strides

from . import cache, jobs, kernels, split, target
from .argreduce import define_arg_reduce
from .elementwise import KERNEL_TYPE, define_fused_kernel
from .emit import I8, I32, I64
from .gemm import workspace_bytes
from .kernels import new_module
from .memory import ALIGN, Home, MemoryPlan, plan_memory
from .parallel import default_num_threads
from .plan import contiguous_view, plan_loops
from .profile import TICKS_SYMBOL, emit_tick

I8P = I8.as_pointer()


@dataclass
class Buffer:
    """Where a value lives: the pointer in entry `slot` of `buffers`, plus `offset` bytes (arena)."""

    slot: int
    type: TensorType
    offset: int = 0


@dataclass
class Lowering:
    """The state shared while lowering one graph."""

    module: ir.Module
    builder: ir.IRBuilder
    buffers_arg: ir.Value
    kernel_names: list[str] = field(default_factory=list)
    kernel_nodes: list[Node | None] = field(default_factory=list)  # the node each kernel lowers
    generic_kernels: dict[tuple, ir.Function] = field(default_factory=dict)  # see _fused_call
    arena_slot: int = 0
    scratch_start: int = 0  # the arena's scratch region: after the planned buffers
    scratch_used: int = 0  # bytes of it the current node holds
    scratch_bytes: int = 0  # the most any node held: the region's size

    def scratch(self, nbytes: int) -> ir.Value:
        """An i8* to `nbytes` of the arena's scratch region (64-byte aligned), held until the
        current node's code ends: nodes run one after another, so they all share one region and a
        step allocates nothing (convolution copies, GEMM packing buffers)."""
        offset = self.scratch_start + self.scratch_used
        self.scratch_used += -(-nbytes // ALIGN) * ALIGN
        self.scratch_bytes = max(self.scratch_bytes, self.scratch_used)
        return self.pointer(Buffer(self.arena_slot, None, offset))

    def gemm_workspace(self, dtype: DType, m: int, n: int, k: int) -> list[ir.Value]:
        """The workspace arguments of a `define_gemm(workspace=True)` call of this shape: a slot
        per thread the machine can run (a thread past them, or a bigger product, mallocs)."""
        slot = workspace_bytes(dtype.name, m, n, k)
        slots = max(default_num_threads(), len(os.sched_getaffinity(0)))
        return [self.scratch(slot * slots), I64(slot), I64(slots)]

    def pointer(self, buffer: Buffer) -> ir.Value:
        base = self.builder.load(self.builder.gep(self.buffers_arg, [I64(buffer.slot)]))
        return self.builder.gep(base, [I64(buffer.offset)]) if buffer.offset else base

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
        emit_tick(self.module, self.builder, len(self.kernel_names))  # codegen.profile
        self.kernel_names.append(name)
        self.kernel_nodes.append(node)
        return name


# Fused kernels over at most this many elements share shape-generic code (see _fused_call).
SHARED_FUSED_MAX_ELEMENTS = 1 << 12

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
    """Kernel `name` running `region` over `shape`: its own code with the sizes baked in, or, for
    at most SHARED_FUSED_MAX_ELEMENTS elements, a wrapper around one shape-generic kernel that every
    small kernel of the module with the same region, types and loop plan calls with its meta (a
    training step updates many small tensors alike: biases, their gradients, optimizer slots)."""
    plan, meta = plan_loops(shape, views, axes if reduce else None, len(outs))
    in_place = [None if reduce else next((j for j, i in enumerate(ins) if (i.slot, i.offset) == (o.slot, o.offset)
                                          and views[len(outs) + j] == views[k]), None)
                for k, o in enumerate(outs)]
    out_dtypes, in_dtypes = [o.type.dtype for o in outs], [i.type.dtype for i in ins]
    pointers = [ctx.pointer(b) for b in outs + ins]
    if math.prod(shape) > SHARED_FUSED_MAX_ELEMENTS:
        kernel = define_fused_kernel(ctx.module, name, region, out_dtypes, in_dtypes, plan, reduce,
                                     static_meta=meta, in_place=in_place)
        ctx.call(kernel, pointers)
        return
    key = (print_graph(region), tuple(out_dtypes), tuple(in_dtypes), plan, reduce, tuple(in_place))
    generic = ctx.generic_kernels.get(key)
    if generic is None:
        generic = define_fused_kernel(ctx.module, f"fused.generic{len(ctx.generic_kernels)}", region, out_dtypes,
                                      in_dtypes, plan, reduce, in_place=in_place,
                                      max_elements=SHARED_FUSED_MAX_ELEMENTS)
        generic.attributes.add("noinline")  # inlined with constant meta, each wrapper would be a copy again
        # Optimised for size: no loop vectoriser (nor its runtime checks and remainder loops) on a
        # few thousand elements at most. LeNet's step: their LLVM time 0.70 -> 0.40 s, their run
        # time unchanged (0.26 / 0.22 ms for all fused kernels, kernel table).
        for fn in (generic, ctx.module.globals[generic.name + ".body"]):
            fn.attributes.add("optsize")
            fn.attributes.add("minsize")
        ctx.generic_kernels[key] = generic
    meta_type = ir.ArrayType(I64, len(meta))
    meta_global = ir.GlobalVariable(ctx.module, meta_type, name + ".meta")
    meta_global.initializer, meta_global.global_constant = ir.Constant(meta_type, list(meta)), True
    wrapper = ir.Function(ctx.module, KERNEL_TYPE, name)  # the kernel's own name, for inspection
    b = ir.IRBuilder(wrapper.append_basic_block("entry"))
    b.call(generic, [wrapper.args[0], b.bitcast(meta_global, I64.as_pointer())])
    b.ret_void()
    ctx.call(wrapper, pointers)


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


def _copy(ctx: Lowering, name: str, source: Buffer, target: Buffer) -> None:
    """A copy kernel between two contiguous buffers of the same type."""
    shape = source.type.shape or (1,)
    if 0 in shape:
        return
    _fused_call(ctx, name, _identity_region(source.type.dtype), shape, [contiguous_view(shape)] * 2,
                [target], [source])


# What a CompiledGraph holds on to is alive: these are its references to an output array (the
# `outputs` list and the bound-array list) plus getrefcount's own argument.
_OWNED_REFS = 3


@dataclass
class CompiledGraph:
    """A graph compiled to one native entry point, with the arena and pointer array it runs on.

    Pointer slots: graph inputs, then outputs, then the arena. `bind` stores an
    array's pointer only when the array bound to that slot changed. Outputs are
    handed out as arrays the caller owns: `claim_outputs` reuses last call's
    output array only when nothing outside this object references it any more
    (so a loss kept in a list never changes), and allocates a fresh one otherwise.
    """

    graph: Graph
    entry: Callable
    n_inputs: int
    n_outputs: int
    slots: int
    arena: np.ndarray  # the planned intermediates (bytes, 64-byte aligned), constants written in
    plan: MemoryPlan
    kernel_names: list[str]
    compile_seconds: float
    _object: object = None
    calls: int = 0
    kernel_nodes: list[Node | None] = field(default_factory=list)
    ticks_global: int = 0  # address of codegen.profile's ticks pointer (profile.set_ticks)
    _llvm_ir: str | None = None  # printed when first asked for (lowering again after a cache hit)

    @property
    def llvm_ir(self) -> str:
        """The module's LLVM IR text, lowered again when first asked for (a split module's machine
        code was built from codegen.split's parts of this text)."""
        if self._llvm_ir is None:
            self._llvm_ir = str(_lower(self.graph, self.plan).module)
        return self._llvm_ir

    def __post_init__(self) -> None:
        self.pointers = (ctypes.c_void_p * self.slots)()
        self.pointers[self.slots - 1] = self.arena.ctypes.data
        self._bound: list[np.ndarray | None] = [None] * self.slots
        self._outputs: list[np.ndarray | None] = [None] * self.n_outputs
        # Inputs the graph updates in place (assign targets).
        self.state_inputs = sorted({self.plan.homes[n.operands[0]].index for n in self.graph.nodes if n.op == "assign"})

    @property
    def arena_bytes(self) -> int:
        return self.plan.arena_bytes

    @property
    def naive_bytes(self) -> int:
        """What one buffer per intermediate would take (the arena replaces that)."""
        return self.plan.naive_bytes

    def bind(self, slot: int, array: np.ndarray) -> None:
        """Point `slot` at a contiguous array of the slot's type (kept alive while bound)."""
        if self._bound[slot] is not array:
            self._bound[slot] = array
            self.pointers[slot] = array.ctypes.data

    def bound(self, slot: int) -> np.ndarray | None:
        return self._bound[slot]

    def claim_outputs(self) -> list[np.ndarray]:
        """The arrays the next run writes its outputs into; the caller may keep them."""
        outs = self._outputs
        for i in range(self.n_outputs):
            if outs[i] is None or sys.getrefcount(outs[i]) > _OWNED_REFS:
                value = self.graph.outputs[i]
                outs[i] = np.empty(value.shape, NP_DTYPES[value.dtype.value])
            self.bind(self.n_inputs + i, outs[i])
        return list(outs)

    def run_bound(self) -> None:
        """The one native call: every kernel of the graph, on the bound arrays and the arena."""
        self.calls += 1
        kernels.stats.native_calls += 1
        self.entry(self.pointers)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        if len(inputs) != self.n_inputs:
            raise ValueError(f"{self.graph.name} takes {self.n_inputs} inputs, got {len(inputs)}")
        for i, (value, array) in enumerate(zip(self.graph.inputs, inputs)):
            want = np.dtype(NP_DTYPES[value.dtype.value])
            if tuple(array.shape) != value.shape or array.dtype != want:
                raise ValueError(
                    f"{self.graph.name}: input {i} is {array.dtype}{list(array.shape)}, "
                    f"the compiled graph needs {want}{list(value.shape)}"
                )
            self.bind(i, np.asarray(array, order="C"))  # the same object when already contiguous
        for i in self.state_inputs:
            if self._bound[i] is not inputs[i] or not inputs[i].flags.writeable:
                raise ValueError(f"{self.graph.name}: input {i} is state the graph updates in place; "
                                 "pass a C-contiguous, writable array")
            shared = [j for j in range(self.n_inputs) if j != i and np.may_share_memory(inputs[i], inputs[j])]
            if shared:
                raise ValueError(f"{self.graph.name}: input {i} is state the graph updates in place, but it shares "
                                 f"memory with input(s) {shared}; pass a copy")
        outputs = self.claim_outputs()
        self.run_bound()
        return outputs

    def run_into(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        """One native call; `inputs`/`outputs` must be contiguous arrays of the right types."""
        for i, array in enumerate(inputs):
            self.bind(i, array)
        for i, array in enumerate(outputs):
            self.bind(self.n_inputs + i, array)
        self.run_bound()


ENTRY_CFUNC = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_void_p))


def _scratch_start(plan: MemoryPlan) -> int:
    return -(-plan.arena_bytes // ALIGN) * ALIGN


def _new_arena(plan: MemoryPlan, graph: Graph, scratch_bytes: int) -> np.ndarray:
    """The arena, 64-byte aligned, with the `iota` constants written in (they are never overwritten),
    then the scratch region (Lowering.scratch)."""
    size = max(_scratch_start(plan) + scratch_bytes, ALIGN)
    raw = np.zeros(size + ALIGN, np.uint8)
    shift = -raw.ctypes.data % ALIGN
    arena = raw[shift:shift + size]
    producers = graph.producers()
    for value in plan.constants:
        data = np.ascontiguousarray(evaluate_node(producers[value], [])[0]).reshape(-1).view(np.uint8)
        offset = plan.homes[value].index
        arena[offset:offset + data.size] = data
    return arena


def _lower(graph: Graph, plan: MemoryPlan) -> Lowering:
    """The LLVM module of `graph`: its kernels and the `run` entry calling them in order."""
    module = new_module(graph.name)
    entry = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8P.as_pointer()]), "run")
    # The entry only loads buffer pointers and calls kernels, once per step: optimising it is
    # compile time for nothing (it is a tenth of a training step's instructions).
    entry.attributes.add("noinline")
    entry.attributes.add("optnone")
    builder = ir.IRBuilder(entry.append_basic_block("entry"))
    n_in, n_out = len(graph.inputs), len(graph.outputs)
    arena_slot = n_in + n_out
    ctx = Lowering(module, builder, entry.args[0], arena_slot=arena_slot, scratch_start=_scratch_start(plan))

    def buffer(home: Home, type: TensorType) -> Buffer:
        if home.kind == "arena":
            return Buffer(arena_slot, type, home.index)
        return Buffer(home.index + (n_in if home.kind == "output" else 0), type)

    for node in graph.nodes:
        if node in plan.views or node.op == "iota":  # no code: aliases, state updates, constants
            continue
        ins = [buffer(plan.homes[v], v.type) for v in node.operands]
        outs = [buffer(plan.homes[r], r.type) for r in node.results]
        if node.op == "reshape":  # returned, so it has an output slot of its own (others are views)
            _copy(ctx, ctx.new_kernel_name(node), ins[0], outs[0])
            continue
        lower = LOWERINGS.get(node.op)
        if lower is None:
            raise NotImplementedError(f"codegen has no lowering for {node.op!r} (run the fusion passes first?)")
        lower(ctx, node, outs, ins)
        ctx.scratch_used = 0
    # After the last node: outputs living elsewhere, then state updates not computed in place.
    for copy in plan.end_copies:
        name = ctx.begin_kernel(f"k{len(ctx.kernel_names)}_copy", None)
        _copy(ctx, name, buffer(copy.source, copy.type), buffer(copy.target, copy.type))
    emit_tick(module, builder, len(ctx.kernel_names))
    builder.ret_void()
    return ctx


def _graph_entry(names: list[str], nodes: list[Node | None], graph: Graph, objects: list[bytes],
                 scratch_bytes: int) -> bytes:
    """A graph cache entry: one JSON line (kernel names, the index of each kernel's node, the
    object files' sizes, the arena's scratch bytes), then the object files (the parts of the module)."""
    index = {node: i for i, node in enumerate(graph.nodes)}
    meta = {"kernel_names": names, "kernel_nodes": [None if n is None else index[n] for n in nodes],
            "objects": [len(obj) for obj in objects], "scratch_bytes": scratch_bytes}
    return json.dumps(meta).encode() + b"\n" + b"".join(objects)


def _parse_graph_entry(payload: bytes, graph: Graph) -> tuple[list[str], list[Node | None], list[bytes], int] | None:
    """(kernel names, kernel nodes, object files, scratch bytes) of a graph entry; None if it does
    not fit `graph`."""
    line, _, data = payload.partition(b"\n")
    try:
        meta = json.loads(line)
        names = [str(n) for n in meta["kernel_names"]]
        nodes = [None if i is None else graph.nodes[i] for i in meta["kernel_nodes"]]
        sizes = [int(size) for size in meta["objects"]]
        scratch_bytes = int(meta["scratch_bytes"])
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    if len(names) != len(nodes) or not sizes or min(sizes) <= 0 or sum(sizes) != len(data) or scratch_bytes < 0:
        return None
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    return names, nodes, [data[offsets[i]:offsets[i + 1]] for i in range(len(sizes))], scratch_bytes


def _compile_module(module: ir.Module) -> list[bytes]:
    """Object code of `module`: split into parts compiled in parallel when it is large enough."""
    parts = split.plan(module, jobs.compile_jobs())
    if parts is not None:
        try:
            return jobs.compile_parts(len(parts.bins), lambda i: split.part_text(module, parts, i))
        except split.SplitError:
            pass  # a reference the plan missed: the whole module still compiles
    return jobs.object_codes([str(module)])


def compile_graph(graph: Graph) -> CompiledGraph:
    """Lower `graph` (already optimised: elementwise work in fused nodes) to native code.

    A large module is split into parts compiled in parallel (codegen.split, codegen.jobs). A graph
    compiled before (same text, host, versions and back-end sources) is loaded from the disk
    cache's graph entry without building its LLVM IR; `CompiledGraph.llvm_ir` builds it on demand.
    """
    start = time.perf_counter()
    plan = plan_memory(graph)
    key = cache.graph_key(print_graph(graph))
    payload = cache.load_graph(key)
    hit = None if payload is None else _parse_graph_entry(payload, graph)
    if hit is None:
        ctx = _lower(graph, plan)
        objects = _compile_module(ctx.module)
        cache.store_graph(key, _graph_entry(ctx.kernel_names, ctx.kernel_nodes, graph, objects, ctx.scratch_bytes))
        hit = ctx.kernel_names, ctx.kernel_nodes, objects, ctx.scratch_bytes
    names, nodes, objects, scratch_bytes = hit
    loaded = target.LoadedObject(objects)
    n_in, n_out = len(graph.inputs), len(graph.outputs)
    compiled = CompiledGraph(
        graph=graph, entry=ENTRY_CFUNC(loaded.address("run")), n_inputs=n_in,
        n_outputs=n_out, slots=n_in + n_out + 1, arena=_new_arena(plan, graph, scratch_bytes), plan=plan,
        kernel_names=names, kernel_nodes=nodes,
        compile_seconds=time.perf_counter() - start, _object=loaded,
    )
    compiled.ticks_global = loaded.address(TICKS_SYMBOL)
    return compiled


__all__ = ["compile_graph", "CompiledGraph", "LOWERINGS", "lowering", "KERNEL_TYPE"]

from . import lower_nn  # noqa: E402,F401  (contraction lowerings register themselves)
from . import lower_conv  # noqa: E402,F401  (window-op lowerings register themselves)
from . import random  # noqa: E402,F401  (random_uniform's lowering)
