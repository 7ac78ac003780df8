"""Clock reads between kernels, for the measured kernel table.

A graph compiled with `profile=True` stores `clock_gettime(CLOCK_MONOTONIC)`
in nanoseconds into `ticks[i]` just before kernel i starts, and into
`ticks[n]` after the last one, so kernel i took `ticks[i+1] - ticks[i]`. The
ticks array is reached through the global `profile_ticks` (an `i64*` that the
loader points at a NumPy array), so the entry keeps its `run(i8** buffers)`
signature and graphs compiled without profiling contain none of this code.
A vDSO clock read costs ~20-30 ns, small against any kernel.
"""

from __future__ import annotations

import ctypes

from llvmlite import ir

from .emit import I32, I64

TICKS_SYMBOL = "profile_ticks"
_TIMESPEC = ir.LiteralStructType([I64, I64])
_CLOCK_MONOTONIC = 1


def _global(module: ir.Module, name: str, type_: ir.Type) -> ir.GlobalVariable:
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    variable = ir.GlobalVariable(module, type_, name)
    variable.initializer = ir.Constant(type_, None)
    return variable


def emit_tick(module: ir.Module, builder: ir.IRBuilder, index: int) -> None:
    """Store the monotonic clock in nanoseconds into `profile_ticks[index]`."""
    clock = module.globals.get("clock_gettime") or ir.Function(
        module, ir.FunctionType(I32, [I32, _TIMESPEC.as_pointer()]), "clock_gettime")
    timespec = _global(module, "profile_timespec", _TIMESPEC)
    ticks = _global(module, TICKS_SYMBOL, I64.as_pointer())
    builder.call(clock, [I32(_CLOCK_MONOTONIC), timespec])
    seconds = builder.load(builder.gep(timespec, [I32(0), I32(0)]))
    nanoseconds = builder.load(builder.gep(timespec, [I32(0), I32(1)]))
    now = builder.add(builder.mul(seconds, I64(1_000_000_000)), nanoseconds)
    builder.store(now, builder.gep(builder.load(ticks), [I64(index)]))


def bind_ticks(global_address: int, ticks_address: int) -> None:
    """Point the loaded code's `profile_ticks` at a ticks array."""
    ctypes.c_void_p.from_address(global_address).value = ticks_address
