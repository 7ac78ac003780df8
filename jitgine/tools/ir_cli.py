"""`jitgine-ir`: look at what jitgine compiled, from the command line.

    jitgine-ir show    FILE [--stage STAGE]           the graph (IR text; parses back with ir.parser)
    jitgine-ir passes  FILE [--diff-only]             the graph after each pass, with its diff
    jitgine-ir kernels FILE [--repeat N] [--top N]    the kernel table with measured times
    jitgine-ir asm     FILE [--kernel NAME] [--llvm | --llvm-opt]   assembly (or LLVM IR)
    jitgine-ir graph   FILE -o out.svg|png|dot [--collapse] [--measure]
    jitgine-ir report  FILE -o report.html [--repeat N]

FILE is a file written by `f.dump(path)`, a `JITGINE_DUMP` folder (or the
whole dump directory when it holds one function), an IR text file (such as
`00-input.ir` from a dump folder), or `module:function` / `script.py:function`
with example inputs given as `--input 64x1x32x32 --input 64:int32` (shape,
then an optional dtype; floats are N(0,1), integers in [0, 2)).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ir.graph import Graph
from ir.parser import ParseError, parse_graph

from .. import serialization
from ..jit.inspection import KernelTable, Program, format_table, kernel_code, measure, random_array, stage_diffs


class UsageError(Exception):
    """A problem with the command line or the FILE; printed without a traceback."""


@dataclass
class Source:
    """Something to inspect: a graph as given, and how to compile it into a `Program`."""

    name: str
    graph: Graph  # as traced / as written in the file (before the passes)
    compile: Callable[[], Program]
    summary: str = ""

    def stages(self) -> dict[str, Graph]:
        from ir.passes import PassManager

        from ..jit.trace import PIPELINE

        manager = PassManager(list(PIPELINE))
        manager.run(self.graph)
        return manager.stages


def _from_dump(path: str, signature: int | None) -> Source:
    from ..jit.dump import load

    loaded = load(path)
    signatures = loaded.bundle.signatures
    index = len(signatures) - 1 if signature is None else signature
    if not 0 <= index < len(signatures):
        raise UsageError(f"{path} has {len(signatures)} signature(s): {loaded.signatures}; --signature {signature} "
                         "is out of range")
    lines = [f"function {loaded.__name__}, dumped signatures:"]
    lines += [f"  [{i}] {s}" for i, s in enumerate(loaded.signatures)]
    lines += [f"state: {len(loaded.state)} arrays"]
    lines += [f"  {name}: {a.dtype}{list(a.shape)}" for name, a in loaded.state.items()]
    return Source(loaded.__name__, signatures[index].graph, lambda: loaded.program(index), "\n".join(lines))


def _from_ir(path: str) -> Source:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        graph = parse_graph(text)
    except (ParseError, ValueError) as e:
        raise UsageError(f"{path}: not IR text ir.parser can read: {e}") from None

    def build() -> Program:
        from ..jit.dump import compile_traced

        stages, compiled = compile_traced(graph)
        return Program(graph.name, stages, compiled, len(graph.inputs), [], [],
                       "(" + ", ".join(str(v.type) for v in graph.inputs) + ")")

    return Source(graph.name, graph, build, f"IR file {path}: {len(graph.inputs)} inputs, {len(graph.nodes)} nodes")


def _dump_folder(path: str) -> str:
    step = os.path.join(path, "step.jgd")
    if os.path.isfile(step):
        return step
    found = sorted(d for d in os.listdir(path) if os.path.isfile(os.path.join(path, d, "step.jgd")))
    if len(found) == 1:
        return os.path.join(path, found[0], "step.jgd")
    if not found:
        raise UsageError(f"{path} is not a JITGINE_DUMP folder: no step.jgd in it or in its subfolders")
    raise UsageError(f"{path} holds several compilations; pick one: " + ", ".join(found))


def parse_input(text: str) -> np.ndarray:
    """'64x1x32x32' or '64,1,32,32:float32' or ':int32' (a scalar array) -> a random example array."""
    shape_text, _, dtype_text = text.partition(":")
    try:
        shape = tuple(int(d) for d in shape_text.replace(",", "x").split("x") if d.strip())
        dtype = np.dtype(dtype_text or "float32")
    except (ValueError, TypeError):
        raise UsageError(f"--input {text!r}: expected a shape like 64x1x32x32, optionally :dtype") from None
    return random_array(shape, dtype, np.random.default_rng(len(shape)))


def _import(module: str):
    if module.endswith(".py") or os.sep in module:
        name = os.path.splitext(os.path.basename(module))[0]
        spec = importlib.util.spec_from_file_location(name, module)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot import {module}")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
        return loaded
    return importlib.import_module(module)


def _from_function(spec: str, inputs: list[str]) -> Source:
    from ..jit.trace import trace

    module_name, _, function_name = spec.rpartition(":")
    try:
        module = _import(module_name)
    except ImportError as e:
        raise UsageError(f"cannot import {module_name!r}: {e}") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise UsageError(f"{module_name} has no function {function_name!r}")
    traced = function if isinstance(function, trace) else trace(function)
    traced(*[parse_input(i) for i in inputs])
    program = traced._program()
    return Source(program.name, program.stages["input"], lambda: program, f"{spec} traced with {program.signature}")


def open_source(spec: str, inputs: list[str] | None = None, signature: int | None = None) -> Source:
    """What FILE names: a dump, a JITGINE_DUMP folder, an IR file or module:function."""
    if os.path.isdir(spec):
        return _from_dump(_dump_folder(spec), signature)
    if os.path.isfile(spec):
        with open(spec, "rb") as f:
            head = f.read(len(serialization.MAGIC))
        return _from_dump(spec, signature) if head == serialization.MAGIC else _from_ir(spec)
    if ":" in spec:
        return _from_function(spec, inputs or [])
    raise UsageError(f"{spec}: no such file or folder (or module:function)")


# ---------------------------------------------------------------------------- subcommands

def _show(source: Source, args) -> None:
    if args.summary:
        print(source.summary)
        return
    stages = source.stages() if args.stage != "input" else {"input": source.graph}
    if args.stage == "optimized":
        print(str(list(stages.values())[-1]), end="")
    elif args.stage in stages:
        print(str(stages[args.stage]), end="")
    else:
        raise UsageError(f"unknown stage {args.stage!r}; stages are {list(stages)} and 'optimized'")


def _passes(source: Source, args) -> None:
    stages = source.stages()
    for name, text, diff in stage_diffs(stages):
        print(f"===== after {name}: {len(stages[name].nodes)} nodes =====" if name != "input"
              else f"===== input (as traced): {len(stages[name].nodes)} nodes =====")
        if diff:
            print(diff, end="" if diff.endswith("\n") else "\n")
        elif name != "input":
            print("(no change)")
        if not args.diff_only or name == "input":
            print(text, end="")


def _measure(source: Source, args) -> tuple[Program, KernelTable]:
    if args.threads:
        from .. import runtime

        runtime.set_num_threads(args.threads)
    program = source.compile()
    return program, measure(program, repeat=args.repeat)


def _kernels(source: Source, args) -> None:
    program, table = _measure(source, args)
    print(f"{program.name} {program.signature}")
    print(format_table(table, args.top))


def _asm(source: Source, args) -> None:
    program = source.compile()
    level = "llvm" if args.llvm else "llvm-opt" if args.llvm_opt else "asm"
    try:
        print(kernel_code(program.compiled, args.kernel, level), end="")
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None


def _graph(source: Source, args) -> None:
    from .graphviz import write_graph

    if args.measure:
        program, table = _measure(source, args)
    else:
        program, table = source.compile(), None
    try:
        write_graph(program, args.output, collapse=args.collapse, table=table)
    except (ValueError, RuntimeError) as e:
        raise UsageError(str(e)) from None
    print(f"wrote {args.output}")


def _report(source: Source, args) -> None:
    from .report import write_report

    program, table = _measure(source, args)
    write_report(program, args.output, table=table)
    print(f"wrote {args.output} ({len(table.kernels)} kernels, step {table.step_seconds * 1e3:.3f} ms)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jitgine-ir", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("file", help="dump file, JITGINE_DUMP folder, IR file or module:function")
        sub.add_argument("--input", action="append", default=[], metavar="SHAPE[:DTYPE]",
                         help="example input for module:function (repeat per argument)")
        sub.add_argument("--signature", type=int, default=None, help="which dumped signature (default: last)")
        sub.set_defaults(run=run)
        return sub

    def timing(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--repeat", type=int, default=20, help="timed runs (the faster half is averaged)")
        sub.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")

    show = command("show", _show, "print the graph as IR text")
    show.add_argument("--stage", default="input", help="input (as traced), a pass name, or optimized")
    show.add_argument("--summary", action="store_true", help="describe the file instead (signatures, state)")
    passes = command("passes", _passes, "run the pass pipeline, print the graph after each pass with a diff")
    passes.add_argument("--diff-only", action="store_true", help="print only the diffs after the input")
    kernels = command("kernels", _kernels, "measure every kernel: time, FLOPs, bytes, GFLOP/s, GB/s, share")
    timing(kernels)
    kernels.add_argument("--top", type=int, default=None, help="only the N slowest kernels")
    asm = command("asm", _asm, "print the assembly (or LLVM IR) of one kernel or of the whole step")
    asm.add_argument("--kernel", default=None, help="kernel name as in `kernels` (default: everything)")
    level = asm.add_mutually_exclusive_group()
    level.add_argument("--llvm", action="store_true", help="LLVM IR as generated")
    level.add_argument("--llvm-opt", action="store_true", help="LLVM IR after optimisation")
    graph = command("graph", _graph, "draw the graph with fused kernels as clusters (Graphviz)")
    graph.add_argument("-o", "--output", required=True, help="out.svg, out.png or out.dot")
    graph.add_argument("--collapse", action="store_true", help="one box per kernel")
    graph.add_argument("--measure", action="store_true", help="colour kernels by measured time")
    timing(graph)
    report = command("report", _report, "write one static HTML page with all of the above")
    report.add_argument("-o", "--output", required=True, help="report.html")
    timing(report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        source = open_source(args.file, args.input, args.signature)
        args.run(source, args)
    except (UsageError, ValueError) as e:
        print(f"jitgine-ir {args.command}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `jitgine-ir asm ... | head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
