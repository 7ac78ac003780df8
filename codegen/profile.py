"""Clock reads between kernels, for the measured kernel table.

Before kernel i starts, and once after the last kernel, the entry checks the
global `profile_ticks` (an `i64*`); when it is not null it stores
`clock_gettime(CLOCK_MONOTONIC)` in nanoseconds into `ticks[i]`, so kernel i
took `ticks[i+1] - ticks[i]`. Normally the pointer is null and the check costs
one load and one predictable branch per kernel. Profiling this way measures
the very machine code that runs normally, and needs no second compilation
(tens of seconds for a training step). A vDSO clock read costs ~20-30 ns.
"""

from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import ir

from .emit import I32, I64, module_global

TICKS_SYMBOL = "profile_ticks"
_TIMESPEC = ir.LiteralStructType([I64, I64])
_CLOCK_MONOTONIC = 1


def emit_tick(module: ir.Module, builder: ir.IRBuilder, index: int) -> None:
    """If `profile_ticks` is set, store the monotonic clock in nanoseconds into `profile_ticks[index]`."""
    clock = module.globals.get("clock_gettime") or ir.Function(
        module, ir.FunctionType(I32, [I32, _TIMESPEC.as_pointer()]), "clock_gettime")
    timespec = module_global(module, "profile_timespec", _TIMESPEC)
    ticks = builder.load(module_global(module, TICKS_SYMBOL, I64.as_pointer()))
    with builder.if_then(builder.icmp_unsigned("!=", ticks, ir.Constant(ticks.type, None)), likely=False):
        builder.call(clock, [I32(_CLOCK_MONOTONIC), timespec])
        seconds = builder.load(builder.gep(timespec, [I32(0), I32(0)]))
        nanoseconds = builder.load(builder.gep(timespec, [I32(0), I32(1)]))
        now = builder.add(builder.mul(seconds, I64(1_000_000_000)), nanoseconds)
        builder.store(now, builder.gep(ticks, [I64(index)]))


def set_ticks(ticks_global: int, ticks: np.ndarray | None) -> None:
    """Point a loaded graph's `profile_ticks` (at address `ticks_global`) at an int64 array, or
    back at null. The array needs one entry per kernel plus one and must outlive the runs."""
    if ticks is not None and (ticks.dtype != np.int64 or not ticks.flags.c_contiguous):
        raise ValueError("profile ticks must be a contiguous int64 array")
    ctypes.c_void_p.from_address(ticks_global).value = None if ticks is None else ticks.ctypes.data
