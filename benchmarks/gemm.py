"""sgemm: jitgine vs NumPy/OpenBLAS (and PyTorch if importable), square
M = N = K, at 1 thread and at every core (each count in its own subprocess,
so OpenBLAS reads OPENBLAS_NUM_THREADS before NumPy loads).

For small sizes a second table times REPS products inside one native call
(a generated driver loop calling the GEMM; `static` bakes the shape in)
against REPS NumPy calls from Python.

    python benchmarks/gemm.py [--sizes 64 128 ...] [--samples 9]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys

import _common  # noqa: F401  (before NumPy: unsets OPENBLAS_CORETYPE)
from _common import describe_peak, interleaved, load_average, peak_flops, run_per_thread_count, set_threads

import numpy as np
from llvmlite import ir

from codegen import cache, target
from codegen.gemm import compile_gemm, define_gemm
from codegen.loops import for_range

SIZES = [64, 128, 256, 512, 1024, 2048]
SMALL = [64, 128]
REPS = 100


def torch_matmul():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("JITGINE_NUM_THREADS", "1")))
    return torch


def native_loops(n: int):
    """(dynamic, static) ctypes functions `void loop(A, B, C, reps)` running `reps` n^3 products."""
    i64 = ir.IntType(64)
    f32p = ir.FloatType().as_pointer()
    module = ir.Module(name=f"gemm_loop{n}")
    module.triple = target.host().triple
    kernels = {"dynamic": define_gemm(module, "gemm", "float32", False, False),
               "static": define_gemm(module, "gemm_static", "float32", False, False, static_shape=(1, n, n, n))}
    for label, kernel in kernels.items():
        loop = ir.Function(module, ir.FunctionType(ir.VoidType(), [f32p, f32p, f32p, i64]), f"loop_{label}")
        b = ir.IRBuilder(loop.append_basic_block("entry"))
        a, bb, c, reps = loop.args
        with for_range(b, i64(0), reps):
            b.call(kernel, [a, bb, c, i64(1), i64(n), i64(n), i64(n), i64(n), i64(n), i64(n),
                            i64(0), i64(0), i64(0)])
        b.ret_void()
    loaded = target.LoadedObject(cache.cached_object(str(module), target.object_code))
    signature = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    return loaded, {label: signature(loaded.address(f"loop_{label}")) for label in kernels}


def run(threads: int, sizes: list[int], samples: int) -> None:
    set_threads(threads)
    torch = torch_matmul()
    peak = peak_flops(threads)
    settle = 0.3 if threads > 1 else 0.0
    gemm = compile_gemm("float32", False, False)
    rng = np.random.default_rng(0)
    print(f"\n== {threads} thread(s); load average {load_average()}; {describe_peak(threads)}")
    print("   n |  jitgine GFLOP/s  %peak |    NumPy GFLOP/s | jit/NumPy" + (" | torch GFLOP/s" if torch else ""))
    for n in sizes:
        a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
        b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
        c_jit = np.empty((n, n), np.float32)
        c_np = np.empty((n, n), np.float32)
        gemm(a, b, out=c_jit)
        np.testing.assert_allclose(c_jit, a.astype(np.float64) @ b, rtol=1e-3, atol=1e-4 * np.sqrt(n))
        contenders = [lambda: gemm(a, b, out=c_jit), lambda: np.matmul(a, b, out=c_np)]
        if torch:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            contenders.append(lambda: torch.matmul(ta, tb))
        seconds = interleaved(contenders, samples, settle=settle)
        flops = [2 * n**3 / s for s in seconds]
        line = (f"{n:5d} | {flops[0] / 1e9:15.1f}  {flops[0] / peak:5.0%} | {flops[1] / 1e9:16.1f} | "
                f"{seconds[1] / seconds[0]:8.2f}x")
        if torch:
            line += f" | {flops[2] / 1e9:13.1f}"
        print(line, flush=True)

    small = [n for n in sizes if n in SMALL]
    if small:
        print(f"\n   n | {REPS} products in one native call vs {REPS} NumPy calls (GFLOP/s, ratio to NumPy)")
        for n in small:
            a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
            b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
            c = np.empty((n, n), np.float32)
            c_np = np.empty((n, n), np.float32)
            _, loops = native_loops(n)
            pointers = (a.ctypes.data, b.ctypes.data, c.ctypes.data)

            def numpy_loop():
                for _ in range(REPS):
                    np.matmul(a, b, out=c_np)

            seconds = interleaved([lambda: loops["dynamic"](*pointers, REPS), lambda: loops["static"](*pointers, REPS),
                                   numpy_loop], samples, settle=settle)
            gf = [REPS * 2 * n**3 / s / 1e9 for s in seconds]
            print(f"{n:5d} | dynamic {gf[0]:6.1f} ({seconds[2] / seconds[0]:.2f}x)  static {gf[1]:6.1f} "
                  f"({seconds[2] / seconds[1]:.2f}x)  NumPy {gf[2]:6.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--threads", type=int, help="run one thread count in this process (set by the parent)")
    args = parser.parse_args()
    if args.threads is None:
        run_per_thread_count(os.path.abspath(__file__),
                             ["--sizes", *map(str, args.sizes), "--samples", str(args.samples)])
    else:
        run(args.threads, args.sizes, args.samples)


if __name__ == "__main__":
    sys.exit(main())
