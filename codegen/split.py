"""Splitting a compiled graph's module into parts that compile in parallel.

LLVM's optimiser and code generator run on one core, and llvmlite serialises
all LLVM calls in a process, so a training step's module (a megabyte of IR,
seconds of compile time) would keep one core busy while the others wait.
`plan` cuts the module's functions into `parts` sets of about equal size;
`codegen.jobs` forks a process per part that prints its part (`part_text`:
printing a megabyte of IR with llvmlite takes a sizeable fraction of the
compile, so it is shared out too) and compiles it, and the object files are
loaded into one engine, which links the calls between them.

A part is a set of whole call trees: `run` (the entry), then each kernel it
calls with every function only that kernel reaches (so an epilogue stays in
the module of the kernel that inlines it), then each helper several kernels
share (a GEMM loop nest, each micro-kernel, shared convolution kernels) with
what only it reaches. Units go to the smallest part, largest first (size:
instructions). Calls are read from the instructions' operands; a function
called from another part loses its internal linkage and is declared there;
global variables live in the part of `run` and are declared where else they
are used. `part_text` checks every reference in the printed part against the
plan and raises `SplitError` rather than print a part that would not link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llvmlite import ir

_REFERENCE = re.compile(r'@"([^"]+)"')
_LINKAGE = re.compile(r"^(define|@\"[^\"]+\" =) (internal|private) ", re.MULTILINE)
# Below this many instructions per part (about half a second of compile time) a fork costs more
# than it saves.
MIN_PART_INSTRUCTIONS = 1500
OPTNONE_SPEEDUP = 10


class SplitError(RuntimeError):
    """A printed part references a function the plan did not export (compile the module whole)."""


@dataclass(frozen=True)
class SplitPlan:
    bins: tuple[tuple[str, ...], ...]  # the defined functions of each part; run's is first
    exported: frozenset[str]  # defined functions some other part calls


def _cost(function: ir.Function) -> int:
    """A function's compile cost in instructions; an `optnone` one (the entry: 1,572 instructions,
    0.04 s, where optimised ones take about 0.25 ms each) skips the optimiser and compiles ten times
    faster."""
    count = sum(len(block.instructions) for block in function.blocks)
    return count // OPTNONE_SPEEDUP if "optnone" in function.attributes else count


def _calls(function: ir.Function) -> set[str]:
    """The functions `function`'s instructions use (called, or passed as pointers)."""
    return {op.name for block in function.blocks for instruction in block.instructions
            for op in instruction.operands if isinstance(op, ir.Function) and op is not function}


def _reach(start: str, calls: dict[str, set[str]], stop: set[str]) -> list[str]:
    """Functions reachable from `start` through defined functions, not entering `stop`."""
    seen, order, pending = {start}, [start], [start]
    while pending:
        for callee in sorted(calls[pending.pop()]):
            if callee in calls and callee not in seen and callee not in stop:
                seen.add(callee)
                order.append(callee)
                pending.append(callee)
    return order


def _units(entry: str, calls: dict[str, set[str]]) -> list[list[str]]:
    """Call trees: the entry, each kernel with the functions only it reaches, then each shared
    helper with the functions only it reaches."""
    kernels = [name for name in sorted(calls[entry]) if name in calls]
    reached: dict[str, int] = {}
    for kernel in kernels:
        for name in _reach(kernel, calls, {entry}):
            reached[name] = reached.get(name, 0) + 1
    shared = {name for name, count in reached.items() if count > 1 and name not in kernels}
    units = [[entry]] + [_reach(kernel, calls, shared | {entry}) for kernel in kernels]
    assigned = {name for unit in units for name in unit}
    for name in sorted(shared - assigned):
        unit = [n for n in _reach(name, calls, (shared - {name}) | {entry}) if n not in assigned]
        assigned.update(unit)
        units.append(unit)
    unreached = sorted(set(calls) - assigned)
    units[0].extend(unreached)  # nothing in a graph's module; kept with the entry if there is
    return units


def plan(module: ir.Module, parts: int, entry: str = "run") -> SplitPlan | None:
    """How to cut `module` into at most `parts` parts (one per MIN_PART_INSTRUCTIONS at least);
    None when it should stay whole."""
    if parts <= 1:
        return None
    defined = [f for f in module.functions if f.blocks]
    sizes = {f.name: _cost(f) for f in defined}
    parts = min(parts, sum(sizes.values()) // MIN_PART_INSTRUCTIONS)
    if parts <= 1 or entry not in sizes:
        return None
    calls = {f.name: _calls(f) for f in defined}
    units = _units(entry, calls)
    bins: list[list[str]] = [[] for _ in range(min(parts, len(units)))]
    loads = [0] * len(bins)
    bins[0].extend(units[0])
    loads[0] += sum(sizes[name] for name in units[0])
    for unit in sorted(units[1:], key=lambda unit: -sum(sizes[name] for name in unit)):
        smallest = loads.index(min(loads))
        bins[smallest].extend(unit)
        loads[smallest] += sum(sizes[name] for name in unit)
    home = {name: i for i, names in enumerate(bins) for name in names}
    exported = frozenset(callee for name in calls for callee in calls[name]
                         if callee in home and home[callee] != home[name])
    return SplitPlan(tuple(tuple(names) for names in bins), exported)


def _declaration(function: ir.Function) -> str:
    return str(ir.Function(ir.Module(), function.function_type, function.name)).strip()


def _exported(text: str) -> str:
    """A definition's text with internal/private linkage dropped (another part calls it)."""
    return _LINKAGE.sub(lambda m: m.group(1) + " ", text, count=1)


def part_text(module: ir.Module, split: SplitPlan, index: int) -> str:
    """The LLVM IR text of part `index`: its functions, declarations of what it uses from other
    parts (and libraries), every global variable in part 0 and declared elsewhere."""
    functions = {f.name: f for f in module.functions}
    variables = {g.name: g for g in module.global_values if isinstance(g, ir.GlobalVariable)}
    names = split.bins[index]
    home = {name: i for i, part in enumerate(split.bins) for name in part}
    texts = [str(functions[name]) for name in names]
    used = set().union(*(_REFERENCE.findall(text) for text in texts)) - set(names)
    hidden = sorted(name for name in used if name in home and name not in split.exported)
    if hidden:
        raise SplitError(f"part {index} of {module.name} uses {hidden[:3]}, which the split plan keeps "
                         "internal to another part")
    lines = [f'target triple = "{module.triple}"', f'target datalayout = "{module.data_layout}"']
    lines += [t.get_declaration() for t in module.get_identified_types().values()]
    for name, variable in variables.items():
        if index == 0:
            lines.append(_exported(str(variable)))
        elif name in used:
            lines.append(f'@"{name}" = external global {variable.value_type}')
    lines += [_declaration(functions[name]) for name in sorted(used) if name in functions]
    lines += [_exported(text) if name in split.exported else text for name, text in zip(names, texts)]
    lines += [str(md) for md in module.metadata]
    return "\n".join(lines) + "\n"


def partition(module: ir.Module, parts: int, entry: str = "run") -> list[str]:
    """`module` as at most `parts` LLVM IR texts that, loaded together, define what it defines
    (all printed here; `codegen.jobs` prints each part in the process that compiles it)."""
    split = plan(module, parts, entry)
    if split is None:
        return [str(module)]
    return [part_text(module, split, i) for i in range(len(split.bins))]


__all__ = ["MIN_PART_INSTRUCTIONS", "SplitError", "SplitPlan", "partition", "part_text", "plan"]
