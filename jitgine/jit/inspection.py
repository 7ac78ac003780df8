"""Seeing what the compiler did to one compiled signature.

A `Program` is one signature of a traced (or loaded) function: the graph as
traced, the graph after each pass, the compiled code, and where the
compiled entry's inputs come from (call arguments, then state tensors).
From it this module derives the fusion groups, the LLVM IR and assembly of
one kernel, and the kernel table: every kernel with the primitives it
holds, its FLOPs and bytes (ir.cost), and, when measured, its time from
clock reads between the kernels (codegen.profile), GFLOP/s, GB/s and its
share of the step. `Inspectable` puts all of it on `trace` objects and on
functions read back by `jitgine.jit.load`.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from codegen.compiler import CompiledGraph
from ir.cost import node_bytes, node_flops
from ir.graph import Graph, Node
from ir.interpret import NP_DTYPES


@dataclass
class Program:
    """One compiled signature and the arrays its entry is called with."""

    name: str
    stages: dict[str, Graph]  # 'input' (as traced), then the graph after each pass
    compiled: CompiledGraph
    n_args: int  # graph inputs [0, n_args) are call arguments, the rest state
    state: list[np.ndarray]  # current arrays of the state inputs
    state_names: list[str]
    signature: str = ""  # human-readable: argument shapes and scalars

    @property
    def graph(self) -> Graph:
        """The optimised graph that was compiled."""
        return self.compiled.graph

    def input_names(self) -> list[str]:
        return [f"arg{i}" for i in range(self.n_args)] + list(self.state_names)

    def example_arguments(self, seed: int = 0) -> list[np.ndarray]:
        """Random call arguments of the compiled types (floats ~N(0,1), integers in [0, 2), booleans)."""
        rng = np.random.default_rng(seed)
        return [random_array(v.shape, NP_DTYPES[v.dtype.value], rng) for v in self.graph.inputs[:self.n_args]]


def random_array(shape: tuple[int, ...], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """Example data: floats ~N(0,1), booleans, integers in [0, 2) (valid class labels and indices)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 2, shape).astype(dtype)


def stage_diffs(stages: dict[str, Graph]) -> list[tuple[str, str, str]]:
    """(stage, IR text after it, unified diff against the stage before) for every stage. Values are
    named by id, so a value a pass left alone reads the same before and after it."""
    from ir.printer import print_graph

    out, previous, previous_name = [], None, None
    for name, graph in stages.items():
        text = print_graph(graph, stable_names=True)
        diff = "" if previous is None else "".join(difflib.unified_diff(
            previous.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"before {name} ({previous_name})", tofile=f"after {name}", n=1))
        out.append((name, text, diff))
        previous, previous_name = text, name
    return out


# ---------------------------------------------------------------------------- kernels

@dataclass
class KernelInfo:
    """One kernel of a compiled graph and its cost."""

    name: str
    op: str  # the primitive it lowers ('copy' for the copies into output slots)
    primitives: list[str]  # what it computes: a fused kernel's region primitives, else [op]
    flops: int
    bytes: int
    node: Node | None = field(default=None, repr=False)


def primitives_of(node: Node) -> list[str]:
    """The primitives a kernel for `node` computes (constants and casts left out of regions)."""
    own = [] if node.op in ("fused", "fused_reduce") else [node.op.removeprefix("fused_")]
    if node.region is not None:
        own += [n.op for n in node.region.walk() if n.op not in ("constant", "cast")]
    if node.op == "fused_reduce":
        own.append(node.attr("reduce"))
    return own or [node.op]


def kernel_infos(compiled: CompiledGraph) -> list[KernelInfo]:
    """Every kernel in call order with its FLOPs and bytes."""
    infos = []
    # Kernels without a node copy values into output or state buffers at the end of the step,
    # one per entry of the memory plan's end_copies.
    copies = iter(getattr(getattr(compiled, "plan", None), "end_copies", ()))
    for name, node in zip(compiled.kernel_names, compiled.kernel_nodes):
        if node is None:
            copy = next(copies, None)
            infos.append(KernelInfo(name, "copy", ["copy"], 0, 2 * copy.type.nbytes if copy is not None else 0))
        else:
            infos.append(KernelInfo(name, node.op, primitives_of(node), node_flops(node), node_bytes(node), node))
    return infos


def fusion_groups(compiled: CompiledGraph) -> dict[str, list[str]]:
    """Kernel name -> the primitives it holds."""
    return {k.name: k.primitives for k in kernel_infos(compiled)}


def _check_kernel(compiled: CompiledGraph, kernel: str) -> None:
    if kernel not in compiled.kernel_names:
        raise KeyError(f"no kernel {kernel!r}; kernels are {', '.join(compiled.kernel_names)}")


_KERNEL_NAME = re.compile(r"k\d+_")


def _functions_of(functions: dict[str, str], kernel: str) -> list[str]:
    """A kernel's functions: its own (named '<kernel>' and '<kernel>.<part>'), then the helpers
    it calls that kernels share (a GEMM's loop nest and micro-kernels, a convolution's kernels;
    named '<family>.<dtype>.<variant>'), followed through their calls."""
    own = [n for n in functions if n == kernel or n.startswith(kernel + ".")]
    shared = [n for n in functions if not _KERNEL_NAME.match(n) and n != "run"]
    chosen, pending = list(own), list(own)
    while pending:
        text = functions[pending.pop()]
        for name in shared:
            if name not in chosen and re.search(r"(?<![\w.$])" + re.escape(name) + r"(?![\w.$])", text):
                chosen.append(name)
                pending.append(name)
    return chosen


@dataclass
class MachineCode:
    """A compiled graph's code at three levels, whole and split into functions."""

    llvm_ir: str  # as generated
    optimized_ir: str  # after LLVM's optimisation pipeline (codegen.target.PIPELINE)
    asm: str

    def functions(self, level: str) -> dict[str, str]:
        """Function name -> its text at `level` ('llvm', 'llvm-opt' or 'asm')."""
        if level == "asm":
            return split_assembly(self.asm)
        from codegen import target

        module = target.parse(self.llvm_ir if level == "llvm" else self.optimized_ir)
        return {f.name: str(f) for f in module.functions if not f.is_declaration}

    def text(self, level: str) -> str:
        return {"llvm": self.llvm_ir, "llvm-opt": self.optimized_ir, "asm": self.asm}[level]


_CODE: dict[str, MachineCode] = {}  # by hash of the LLVM IR: optimising a training step takes seconds


def machine_code(compiled: CompiledGraph) -> MachineCode:
    """Optimise once, print the IR and the assembly (what the disk cache's object code was built from).
    Kept per process for the last few modules, so every view of one graph shares the work."""
    from codegen import target

    key = hashlib.sha256(compiled.llvm_ir.encode()).hexdigest()
    code = _CODE.get(key)
    if code is None:
        module = target.parse(compiled.llvm_ir)
        target.optimize(module)
        code = MachineCode(compiled.llvm_ir, str(module), target.target_machine().emit_assembly(module))
        while len(_CODE) >= 4:
            _CODE.pop(next(iter(_CODE)))
        _CODE[key] = code
    return code


def kernel_code(compiled: CompiledGraph, kernel: str | None, level: str,
                functions: dict[str, str] | None = None) -> str:
    """One kernel's functions (its own and its '<kernel>.<part>' helpers) at `level` ('llvm',
    'llvm-opt', 'asm'), or the whole module when `kernel` is None. `functions` may pass
    `machine_code(compiled).functions(level)` when asking for many kernels."""
    code = machine_code(compiled) if functions is None or kernel is None else None
    if kernel is None:
        return code.text(level)
    _check_kernel(compiled, kernel)
    functions = functions if functions is not None else code.functions(level)
    chosen = _functions_of(functions, kernel)
    if not chosen:
        comment = "#" if level == "asm" else ";"
        return f"{comment} kernel {kernel} was inlined into another function by the optimiser\n"
    return "\n".join(functions[n] for n in chosen)


def kernel_llvm_ir(compiled: CompiledGraph, kernel: str | None = None, optimized: bool = False) -> str:
    """The LLVM IR of one kernel (all its functions), or of the whole module when `kernel` is None."""
    return kernel_code(compiled, kernel, "llvm-opt" if optimized else "llvm")


_FUNCTION_START = re.compile(r'^\s*\.type\s+"?([^",\s]+)"?\s*,\s*@function', re.MULTILINE)


def split_assembly(asm: str) -> dict[str, str]:
    """Function name -> its assembly (from its `.type` directive to its `.size` directive)."""
    pieces = {}
    for match in _FUNCTION_START.finditer(asm):
        name = match.group(1)
        end = re.compile(r'^\s*\.size\s+"?' + re.escape(name) + r'"?\s*,.*$', re.MULTILINE).search(asm, match.end())
        pieces[name] = asm[match.start():end.end() if end else len(asm)].strip("\n") + "\n"
    return pieces


def kernel_asm(compiled: CompiledGraph, kernel: str | None = None) -> str:
    """The assembly of one kernel (all its functions), or of the whole module when `kernel` is None."""
    return kernel_code(compiled, kernel, "asm")


# ---------------------------------------------------------------------------- measuring

@dataclass
class KernelTable:
    """Kernels with their measured times in seconds (see `measure` for which runs count)."""

    kernels: list[KernelInfo]
    seconds: list[float]
    step_seconds: float  # the whole native call timed from Python, in the runs the kernel times come from
    repeat: int
    threads: int
    plain_step_seconds: float = 0.0  # the same without clock reads between the kernels

    @property
    def kernel_seconds(self) -> float:
        return float(sum(self.seconds))

    @property
    def coverage(self) -> float:
        """Sum of kernel times over the measured step (1.0: the kernels account for all of it)."""
        return self.kernel_seconds / self.step_seconds if self.step_seconds else 0.0

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for k, s in zip(self.kernels, self.seconds):
            out.append({
                "kernel": k.name, "primitives": k.primitives, "flops": k.flops, "bytes": k.bytes,
                "seconds": s, "gflops": k.flops / s / 1e9 if s > 0 else 0.0,
                "gbytes": k.bytes / s / 1e9 if s > 0 else 0.0,
                "share": s / self.step_seconds if self.step_seconds else 0.0,
            })
        return out

    def __str__(self) -> str:
        return format_table(self)


def _shorten(items: list[str], width: int) -> str:
    text = "+".join(items)
    return text if len(text) <= width else text[:width - 3] + "..."


def format_table(table: KernelTable, top: int | None = None) -> str:
    """The kernel table as text; `top` keeps only the slowest `top` kernels (in call order)."""
    rows = table.rows()
    if top is not None and top < len(rows):
        keep = {id(r) for r in sorted(rows, key=lambda r: -r["seconds"])[:top]}
        rows = [r for r in rows if id(r) in keep]
    lines = [f"{'kernel':<26} {'primitives':<34} {'MFLOP':>9} {'MB':>8} {'time ms':>9} "
             f"{'GFLOP/s':>8} {'GB/s':>7} {'share':>6}"]
    for r in rows:
        lines.append(
            f"{r['kernel']:<26} {_shorten(r['primitives'], 34):<34} {r['flops'] / 1e6:>9.3f} "
            f"{r['bytes'] / 1e6:>8.3f} {r['seconds'] * 1e3:>9.3f} {r['gflops']:>8.2f} {r['gbytes']:>7.2f} "
            f"{100 * r['share']:>5.1f}%")
    flops = sum(k.flops for k in table.kernels)
    lines.append(
        f"{len(table.kernels)} kernels: {table.kernel_seconds * 1e3:.3f} ms, {flops / 1e6:.1f} MFLOP "
        f"({flops / table.kernel_seconds / 1e9 if table.kernel_seconds else 0:.2f} GFLOP/s); measured step "
        f"{table.step_seconds * 1e3:.3f} ms, kernels cover {100 * table.coverage:.1f}%; without clock reads "
        f"{table.plain_step_seconds * 1e3:.3f} ms (mean of the faster half of {table.repeat} runs, "
        f"{table.threads} thread(s))")
    return "\n".join(lines)


def measure(program: Program, arguments: Sequence[np.ndarray] | None = None, repeat: int = 20,
            warmup: int = 2) -> KernelTable:
    """Run the step `repeat` times with clock reads between its kernels and `repeat` times without
    (interleaved), on copies of the state (a training step's updates do not reach the model). Both
    execute the same machine code (codegen.profile).

    Kernel times and the step they are compared with come from the same runs: the step is the
    native call timed from Python, so whatever is not inside a kernel (the call, the entry's own
    work) shows up as the difference. Of the runs, the faster half is averaged: on a shared
    machine a run now and then loses milliseconds to preemption (with threads, a parallel region
    can wait a whole time slice for its second thread) in a random kernel; the faster half drops
    such runs whole, and a mean over one set of runs adds up exactly. `plain_step_seconds`, the
    same statistic for the runs without clock reads, shows what the clock reads cost.
    """
    from codegen import parallel
    from codegen.profile import set_ticks

    graph = program.graph
    args = list(arguments) if arguments is not None else program.example_arguments()
    if len(args) != program.n_args:
        raise ValueError(f"{program.name}: takes {program.n_args} argument array(s), got {len(args)}")
    for i, (value, array) in enumerate(zip(graph.inputs, args)):
        want = np.dtype(NP_DTYPES[value.dtype.value])
        if tuple(array.shape) != value.shape or array.dtype != want:
            raise ValueError(f"{program.name}: argument {i} is {array.dtype}{list(array.shape)}, the compiled "
                             f"signature takes {want}{list(value.shape)}")
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    inputs = [np.ascontiguousarray(a) for a in args] + [np.array(s, copy=True) for s in program.state]
    outputs = [np.empty(v.shape, NP_DTYPES[v.dtype.value]) for v in graph.outputs]
    compiled = program.compiled
    ticks = np.zeros(len(compiled.kernel_names) + 1, np.int64)
    plain, profiled, kernels = [], [], []
    try:
        for i in range(warmup + repeat):
            start = time.perf_counter()
            compiled.run_into(inputs, outputs)
            middle = time.perf_counter()
            set_ticks(compiled.ticks_global, ticks)
            start_profiled = time.perf_counter()
            compiled.run_into(inputs, outputs)
            end = time.perf_counter()
            set_ticks(compiled.ticks_global, None)
            if i >= warmup:
                plain.append(middle - start)
                profiled.append(end - start_profiled)
                kernels.append(np.diff(ticks) / 1e9)
    finally:
        set_ticks(compiled.ticks_global, None)
    keep = (repeat + 1) // 2
    fast = np.argsort(profiled, kind="stable")[:keep]
    per_kernel = np.array(kernels)[fast].mean(axis=0)
    step = float(np.array(profiled)[fast].mean())
    return KernelTable(kernel_infos(compiled), [float(s) for s in per_kernel], step, repeat,
                       parallel.get_num_threads(), float(np.sort(plain)[:keep].mean()))


# ---------------------------------------------------------------------------- the mixin

class Inspectable:
    """Inspection methods shared by `trace` and loaded functions; subclasses provide `_program()`."""

    def _program(self) -> Program:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    @property
    def stage_names(self) -> list[str]:
        """The names `ir(stage=...)` accepts: 'input' (as traced), then each pass, then 'optimized'."""
        return list(self._program().stages) + ["optimized"]

    def ir(self, stage: str = "optimized") -> str:
        """The IR text after `stage` ('input' = as traced, 'optimized' = after all passes)."""
        program = self._program()
        if stage == "optimized":
            return str(program.graph)
        if stage not in program.stages:
            raise KeyError(f"unknown stage {stage!r}; stages are {self.stage_names}")
        return str(program.stages[stage])

    def fusion_groups(self) -> dict[str, list[str]]:
        """Kernel name -> the primitives it holds, in call order."""
        return fusion_groups(self._program().compiled)

    def kernels(self) -> list[KernelInfo]:
        """Every kernel with its primitives, FLOPs and bytes (no running; see `profile`)."""
        return kernel_infos(self._program().compiled)

    def llvm_ir(self, kernel: str | None = None, optimized: bool = False) -> str:
        """LLVM IR before (or, `optimized=True`, after) LLVM's optimisation: one kernel or the whole step."""
        return kernel_llvm_ir(self._program().compiled, kernel, optimized)

    def asm(self, kernel: str | None = None) -> str:
        """Machine code (assembly text) of one kernel or of the whole step."""
        return kernel_asm(self._program().compiled, kernel)

    def profile(self, *arguments: Any, repeat: int = 20) -> KernelTable:
        """Measure every kernel. Arguments as for a call (default: random arrays of the traced types);
        the step runs on copies of its state, so profiling a training step does not train the model."""
        from ..tensor import Tensor

        arrays = [a._data("profiling") if isinstance(a, Tensor) else np.asarray(a) for a in arguments]
        return measure(self._program(), arrays or None, repeat)

    def graph(self, path: str, collapse: bool = False) -> str:
        """Draw the optimised graph, fused kernels as clusters, to .svg, .png or .dot; returns the path."""
        from ..tools.graphviz import write_graph

        return write_graph(self._program(), path, collapse=collapse)

    def report(self, path: str, repeat: int = 20) -> str:
        """Write one static HTML page with all of the above; returns the path."""
        from ..tools.report import write_report

        return write_report(self._program(), path, repeat=repeat)
