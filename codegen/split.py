"""Splitting a compiled graph's module into parts that compile in parallel.

LLVM's optimiser and code generator run on one core, and llvmlite serialises
all LLVM calls in a process, so a training step's module (a megabyte of IR,
seconds of compile time) would keep one core busy while the others wait.
`partition` cuts the module into `parts` LLVM IR texts of about equal size;
`codegen.jobs` compiles them in worker processes, and the object files are
loaded into one engine, which links the calls between them.

A part is a set of whole call trees: `run` (the entry), then each kernel it
calls with every function only that kernel reaches (so an epilogue stays in
the module of the kernel that inlines it), then each helper several kernels
share (a GEMM loop nest, each micro-kernel, shared convolution kernels) with
what only it reaches. Units go to the smallest part, largest first. A function called
from another part loses its internal linkage and is declared there; global
variables live in the part of `run` and are declared where else they are used.
"""

from __future__ import annotations

import re
from llvmlite import ir

_REFERENCE = re.compile(r'@"([^"]+)"')
_LINKAGE = re.compile(r"^(define|@\"[^\"]+\" =) (internal|private) ", re.MULTILINE)


def _references(text: str, own: str) -> set[str]:
    return {name for name in _REFERENCE.findall(text) if name != own}


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
    return units


def _declaration(function: ir.Function) -> str:
    return str(ir.Function(ir.Module(), function.function_type, function.name)).strip()


def _exported(text: str) -> str:
    """A definition's text with internal/private linkage dropped (another part calls it)."""
    return _LINKAGE.sub(lambda m: m.group(1) + " ", text, count=1)


# Below this much LLVM IR per part (about half a second of compile time) a fork costs more than
# it saves.
MIN_PART_CHARS = 100_000


def _whole(module: ir.Module, texts: dict[str, str]) -> str:
    """The module's text (as str(module) prints it) from its functions' texts, already printed."""
    lines = [f'; ModuleID = "{module.name}"', f'target triple = "{module.triple}"',
             f'target datalayout = "{module.data_layout}"', ""]
    lines += [t.get_declaration() for t in module.get_identified_types().values()]
    lines += [texts.get(value.name) or str(value) for value in module.globals.values()]
    lines += [str(md) for md in module.metadata]
    return "\n".join(lines)


def partition(module: ir.Module, parts: int, entry: str = "run") -> list[str]:
    """`module` as at most `parts` LLVM IR texts (one per MIN_PART_CHARS at least) that, loaded
    together, define what it defines; a single part is the module's own text."""
    if parts <= 1:
        return [str(module)]
    functions = {f.name: f for f in module.functions}
    texts = {name: str(f) for name, f in functions.items() if f.blocks}
    parts = min(parts, sum(map(len, texts.values())) // MIN_PART_CHARS)
    if parts <= 1 or entry not in texts:
        return [_whole(module, texts)]
    calls = {name: _references(text, name) for name, text in texts.items()}
    variables = {g.name: g for g in module.global_values if isinstance(g, ir.GlobalVariable)}
    units = _units(entry, calls)
    unreached = sorted(set(texts) - {name for unit in units for name in unit})
    units[0].extend(unreached)  # nothing in a graph's module; kept with the entry if there is
    sizes = [sum(len(texts[name]) for name in unit) for unit in units]
    bins: list[list[str]] = [[] for _ in range(min(parts, len(units)))]
    loads = [0] * len(bins)
    bins[0].extend(units[0])
    loads[0] += sizes[0]
    for size, unit in sorted(zip(sizes[1:], units[1:]), key=lambda pair: -pair[0]):
        smallest = loads.index(min(loads))
        bins[smallest].extend(unit)
        loads[smallest] += size
    home = {name: i for i, names in enumerate(bins) for name in names}
    called_elsewhere = {callee for name in texts for callee in calls[name]
                        if callee in home and home[callee] != home[name]}
    header = [f'target triple = "{module.triple}"', f'target datalayout = "{module.data_layout}"']
    header += [t.get_declaration() for t in module.get_identified_types().values()]
    metadata = [str(md) for md in module.metadata]
    result = []
    for i, names in enumerate(bins):
        used = set(names).union(*(calls[name] for name in names))
        lines = list(header)
        for name, variable in variables.items():
            if i == 0:
                lines.append(_exported(str(variable)))
            elif name in used:
                lines.append(f'@"{name}" = external global {variable.value_type}')
        for name in sorted(used - set(names)):
            if name in functions:
                lines.append(_declaration(functions[name]))
        for name in names:
            lines.append(_exported(texts[name]) if name in called_elsewhere else texts[name])
        lines.extend(metadata)
        result.append("\n".join(lines) + "\n")
    return result



__all__ = ["partition"]
