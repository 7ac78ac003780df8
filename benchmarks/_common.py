"""Shared benchmark helpers. Import this module BEFORE NumPy.

- Unsets OPENBLAS_CORETYPE (the environment pins OpenBLAS to a slower core
  type; the peer should run its best kernels).
- `median_seconds`: median over samples of one call, batched so each sample
  lasts long enough for the timer; `interleaved` times several contenders
  in alternation so background load hits them alike.
- Thread counts: `thread_counts()` (1 and every usable core), `set_threads`
  (libgomp, plus OpenBLAS/MKL through threadpoolctl when installed) and
  `run_per_thread_count`, which re-runs a script in a subprocess per count
  with OPENBLAS_NUM_THREADS / JITGINE_NUM_THREADS set before NumPy loads.
- `peak_flops`: the machine's FMA peak, cores x FMA pipes x lanes x 2 x clock,
  with the clock measured by a chain of dependent integer adds (one per cycle
  on every x86 core); `describe_peak` says how it was computed.
"""

from __future__ import annotations

import ctypes
import functools
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Sequence

os.environ.pop("OPENBLAS_CORETYPE", None)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from codegen import parallel, target  # noqa: E402

# FMA datapath width where it is narrower than the registers (the CPU splits
# each instruction): Zen 1 runs a ymm FMA as two 128-bit halves, Zen 4 a zmm
# FMA as two 256-bit halves. Everything else listed by LLVM with AVX2/AVX-512
# has two full-width FMA pipes.
FMA_DATAPATH_BITS = {"znver1": 128, "znver4": 256}
FMA_PIPES = 2


def thread_counts() -> list[int]:
    """1 and every core this process may use (just [1] on one core)."""
    cores = len(os.sched_getaffinity(0))
    return [1] if cores == 1 else [1, cores]


def set_threads(count: int) -> None:
    """Thread count for jitgine (libgomp) and, if threadpoolctl is installed, BLAS."""
    parallel.set_num_threads(count)
    try:
        import threadpoolctl
    except ImportError:
        return  # the subprocess got OPENBLAS_NUM_THREADS from run_per_thread_count
    threadpoolctl.threadpool_limits(count)


def run_per_thread_count(script: str, args: Sequence[str], counts: Sequence[int] | None = None) -> None:
    """Run `script args --threads N` once per count, with every runtime's thread variable set."""
    for count in counts or thread_counts():
        env = dict(os.environ)
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "JITGINE_NUM_THREADS"):
            env[name] = str(count)
        env.pop("OPENBLAS_CORETYPE", None)
        subprocess.run([sys.executable, script, *args, "--threads", str(count)], env=env, check=True)


def median_seconds(fn: Callable[[], object], samples: int = 9, min_sample: float = 0.02) -> float:
    """Median seconds per call of `fn` over `samples` samples of >= `min_sample` s each."""
    return interleaved([fn], samples, min_sample)[0]


def interleaved(fns: Sequence[Callable[[], object]], samples: int = 9, min_sample: float = 0.02,
                settle: float = 0.0, timer: Callable[[], float] = time.perf_counter) -> list[float]:
    """Median seconds per call of each function, sampling them in alternation.

    `settle` seconds of sleep before each sample: with several threads, one
    runtime's workers keep spinning for a while after a call (OpenBLAS about
    0.1 s, libgomp less) and would steal cores from the next contender.
    `timer=time.thread_time` counts the calling thread's CPU time: single-threaded
    contenders on a loaded machine are then timed without the time they wait for a core.
    """
    batches = []
    for fn in fns:
        fn()  # warm up (compilation, page faults, caches)
        count = 1
        while True:
            start = timer()
            for _ in range(count):
                fn()
            elapsed = timer() - start
            if elapsed >= min_sample or count >= 1 << 20:
                break
            count *= 2 if elapsed <= 0 else max(2, min(100, int(min_sample / elapsed * 1.2) + 1))
        batches.append(count)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(samples):
        for i, fn in enumerate(fns):
            if settle:
                time.sleep(settle)
            start = timer()
            for _ in range(batches[i]):
                fn()
            times[i].append((timer() - start) / batches[i])
    return [statistics.median(t) for t in times]


@functools.lru_cache(maxsize=None)
def clock_hz() -> float:
    """The core clock under load: dependent adds (latency 1 cycle) per second of thread CPU time
    (the best of several runs: a run can only lose cycles, to interrupts or migration)."""
    from llvmlite import ir

    from codegen.loops import for_range

    i64 = ir.IntType(64)
    module = ir.Module(name="clock")
    module.triple = target.host().triple
    fn = ir.Function(module, ir.FunctionType(i64, [i64]), "spin")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    adds = ir.InlineAsm(ir.FunctionType(i64, [i64]), "\n".join(["addq $$1, $0"] * 100), "=r,0,~{flags}",
                        side_effect=True)
    slot = b.alloca(i64)
    b.store(i64(0), slot)
    with for_range(b, i64(0), fn.args[0]):
        b.store(b.call(adds, [b.load(slot)]), slot)
    b.ret(b.load(slot))
    loaded = target.LoadedObject(target.object_code(str(module)))
    spin = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(loaded.address("spin"))
    spin(100_000)  # let the clock ramp up
    rates = []
    for _ in range(7):
        start = time.thread_time()  # CPU time: other processes' load does not count
        spin(500_000)
        rates.append(500_000 * 100 / (time.thread_time() - start))
    return max(rates)


def fma_lanes_per_cycle(dtype_bytes: int) -> int:
    """FMA lanes one core retires per cycle: pipes x datapath width / element width."""
    info = target.host()
    if not info.has_fma:
        return 0
    bits = min(info.vector_bits, FMA_DATAPATH_BITS.get(info.cpu, info.vector_bits))
    return FMA_PIPES * bits // (8 * dtype_bytes)


def peak_flops(cores: int, dtype_bytes: int = 4) -> float:
    return cores * fma_lanes_per_cycle(dtype_bytes) * 2 * clock_hz()


def describe_peak(cores: int, dtype_bytes: int = 4) -> str:
    info = target.host()
    bits = min(info.vector_bits, FMA_DATAPATH_BITS.get(info.cpu, info.vector_bits))
    return (f"peak = {cores} cores x {FMA_PIPES} FMA pipes x {bits // (8 * dtype_bytes)} lanes "
            f"({bits}-bit datapath on {info.cpu}, {info.vector_bits}-bit registers) x 2 flops x "
            f"{clock_hz() / 1e9:.2f} GHz (measured) = {peak_flops(cores, dtype_bytes) / 1e9:.1f} GFLOP/s")


def load_average() -> str:
    """The 1-minute load average: other processes on the machine skew wall-clock timings."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"
