"""Splitting a loop across cores with libgomp, called from generated code.

A kernel that wants threads defines a *body* `void body(i8* ctx, i64 begin,
i64 end)` that does iterations [begin, end) of its outermost loop, and asks
`define_parallel_for` for a driver `void driver(i8* ctx, i64 n, i64 grain)`.
The driver runs the body inline when the work is small (`n <= grain`) and
otherwise hands it to `GOMP_parallel`, which runs it on every thread of the
OpenMP team with a static, contiguous split: iteration i always lands in the
same chunk for a given thread count, and each iteration's arithmetic never
depends on which thread runs it, so results are identical for any count.

The thread count is libgomp's (`omp_set_num_threads`), which
`jitgine.runtime` sets from JITGINE_NUM_THREADS.
"""

from __future__ import annotations

import ctypes
import functools
import os

from llvmlite import ir

I8P = ir.IntType(8).as_pointer()
I64 = ir.IntType(64)
I32 = ir.IntType(32)
BODY_TYPE = ir.FunctionType(ir.VoidType(), [I8P, I64, I64])
DRIVER_TYPE = ir.FunctionType(ir.VoidType(), [I8P, I64, I64])


def _declare(module: ir.Module, name: str, ftype: ir.FunctionType) -> ir.Function:
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ftype, name)


def define_parallel_for(module: ir.Module, body: ir.Function) -> ir.Function:
    """Define `<body>.par(ctx, n, grain)` that runs `body` over [0, n) on all threads."""
    name = body.name + ".par"
    if name in module.globals:
        return module.globals[name]
    gomp_parallel = _declare(
        module,
        "GOMP_parallel",
        ir.FunctionType(
            ir.VoidType(),
            [ir.FunctionType(ir.VoidType(), [I8P]).as_pointer(), I8P, I32, I32],
        ),
    )
    thread_num = _declare(module, "omp_get_thread_num", ir.FunctionType(I32, []))
    num_threads = _declare(module, "omp_get_num_threads", ir.FunctionType(I32, []))
    closure_type = ir.LiteralStructType([I8P, I64])
    # Called once per thread's share of the work: inlining it into both callers below would
    # compile the loop nest three times for nothing.
    body.attributes.add("noinline")

    # The outlined function every team thread runs: take its contiguous share of [0, n).
    thunk = ir.Function(module, ir.FunctionType(ir.VoidType(), [I8P]), name + ".thunk")
    thunk.linkage = "internal"
    b = ir.IRBuilder(thunk.append_basic_block("entry"))
    closure = b.bitcast(thunk.args[0], closure_type.as_pointer())
    ctx = b.load(b.gep(closure, [I32(0), I32(0)]))
    n = b.load(b.gep(closure, [I32(0), I32(1)]))
    tid = b.sext(b.call(thread_num, []), I64)
    nthreads = b.sext(b.call(num_threads, []), I64)
    chunk = b.sdiv(b.add(n, b.sub(nthreads, I64(1))), nthreads)
    begin = b.mul(tid, chunk)
    end = b.add(begin, chunk)
    end = b.select(b.icmp_signed("<", end, n), end, n)
    with b.if_then(b.icmp_signed("<", begin, end)):
        b.call(body, [ctx, begin, end])
    b.ret_void()

    driver = ir.Function(module, DRIVER_TYPE, name)
    ctx_arg, n_arg, grain_arg = driver.args
    b = ir.IRBuilder(driver.append_basic_block("entry"))
    small = b.icmp_signed("<=", n_arg, grain_arg)
    with b.if_else(small) as (inline, threaded):
        with inline:
            b.call(body, [ctx_arg, I64(0), n_arg])
        with threaded:
            slot = b.alloca(closure_type)
            b.store(ctx_arg, b.gep(slot, [I32(0), I32(0)]))
            b.store(n_arg, b.gep(slot, [I32(0), I32(1)]))
            b.call(gomp_parallel, [thunk, b.bitcast(slot, I8P), I32(0), I32(0)])
    b.ret_void()
    return driver


# Below this much work (elements, or multiply-adds) a kernel runs on the calling thread: waking the
# team costs microseconds.
PARALLEL_MIN_WORK = 1 << 15


def grain(tasks: int, work: int, minimum: int = PARALLEL_MIN_WORK) -> int:
    """A driver's grain for `tasks` tasks doing `work` in all: every task inline (one thread) when the
    work is below `minimum`, else one task per split unit (all threads)."""
    return tasks if work < minimum else 1


# A thread that finishes its share of a parallel region spins this many times
# before sleeping. libgomp's default (300,000 spins, about a millisecond)
# assumes idle cores: with other processes running, a spinning thread holds
# the core its partner needs to finish. Measured on a 2-core machine at load
# ~5 (other processes), the traced LeNet step at 2 threads, mean of 100 steps
# in 3 alternating runs: 183/127/119 ms with the default, 60/49/34 ms with
# 10,000 spins (OMP_WAIT_POLICY=passive is alike; 1 thread: ~28 ms). 10,000
# spins still cover the gap between back-to-back kernels on an idle machine.
SPINCOUNT = "10000"


def prepare_environment() -> None:
    """Set libgomp's spin count unless the user chose one; effective only before libgomp loads."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPINCOUNT)


@functools.lru_cache(maxsize=None)
def _libgomp() -> ctypes.CDLL:
    prepare_environment()
    return ctypes.CDLL("libgomp.so.1", mode=ctypes.RTLD_GLOBAL)


def set_num_threads(count: int) -> None:
    """Set the number of threads generated kernels use (for this calling thread)."""
    if count < 1:
        raise ValueError(f"set_num_threads: the thread count must be at least 1, got {count}")
    _libgomp().omp_set_num_threads(int(count))


def get_num_threads() -> int:
    return int(_libgomp().omp_get_max_threads())


def count_setting(variable: str) -> int:
    """The positive integer in environment variable `variable` if set, else every core this
    process may run on."""
    text = os.environ.get(variable, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{variable} must be a positive integer, got {text!r}") from None
        if value < 1:
            raise ValueError(f"{variable} must be a positive integer, got {text!r}")
        return value
    return len(os.sched_getaffinity(0))


def default_num_threads() -> int:
    """JITGINE_NUM_THREADS if set, else every core this process may run on."""
    return count_setting("JITGINE_NUM_THREADS")
