"""codegen.vmath kernels vs NumPy's ufuncs, one thread, same process, same data.

    python benchmarks/vmath.py [--size 1M] [--repeat 15]

Each function runs as a plain scalar loop over a contiguous array that LLVM
vectorises (the way fused elementwise kernels use vmath), against the NumPy
ufunc (libm / SVML-style loops inside NumPy). Prints the median time per
element and the NumPy/jitgine ratio (> 1: jitgine is faster).
"""

from __future__ import annotations

import os

os.environ.pop("OPENBLAS_CORETYPE", None)  # measure the peer at its best

import argparse  # noqa: E402
import ctypes  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from llvmlite import ir  # noqa: E402

from codegen import target, vmath  # noqa: E402

FUNCS = ("exp", "expm1", "log", "log1p", "tanh", "logistic", "erf", "sin", "cos", "pow", "sqrt", "rsqrt")


def _compile(dtype) -> tuple:
    """One scalar loop per function, `void f(T* in0[, T* in1], T* out, i64 n)`, left to LLVM to vectorise."""
    elem = ir.FloatType() if dtype == np.float32 else ir.DoubleType()
    module = ir.Module(name="vmath_bench")
    for name in FUNCS:
        arity = 2 if name == "pow" else 1
        i64 = ir.IntType(64)
        func = ir.Function(module, ir.FunctionType(ir.VoidType(), [elem.as_pointer()] * (arity + 1) + [i64]), name)
        *ins, out, n = func.args
        for arg in (*ins, out):
            arg.add_attribute("noalias")
        entry, body, done = (func.append_basic_block(s) for s in ("entry", "body", "done"))
        b = ir.IRBuilder(entry)
        b.cbranch(b.icmp_signed(">", n, ir.Constant(i64, 0)), body, done)
        b.position_at_end(body)
        i = b.phi(i64)
        i.add_incoming(ir.Constant(i64, 0), entry)
        value = getattr(vmath, name)(b, *[b.load(b.gep(p, [i])) for p in ins])
        b.store(value, b.gep(out, [i]))
        nxt = b.add(i, ir.Constant(i64, 1))
        i.add_incoming(nxt, body)
        b.cbranch(b.icmp_signed("<", nxt, n), body, done)
        b.position_at_end(done)
        b.ret_void()
    loaded = target.LoadedObject(target.object_code(str(module)))
    ptr = ctypes.POINTER(ctypes.c_float if dtype == np.float32 else ctypes.c_double)
    funcs = {}
    for name in FUNCS:
        arity = 2 if name == "pow" else 1
        proto = ctypes.CFUNCTYPE(None, *[ptr] * (arity + 1), ctypes.c_int64)
        funcs[name] = proto(loaded.address(name))
    return loaded, funcs, ptr


def _inputs(name: str, n: int, dtype, rng) -> tuple[np.ndarray, ...]:
    if name in ("log", "sqrt", "rsqrt"):
        return (rng.uniform(1e-3, 1e3, n).astype(dtype),)
    if name == "log1p":
        return (rng.uniform(-0.9, 10, n).astype(dtype),)
    if name == "pow":
        return rng.uniform(0.1, 10, n).astype(dtype), rng.uniform(-5, 5, n).astype(dtype)
    return (rng.uniform(-10, 10, n).astype(dtype),)


def _numpy(name: str):
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return {
        "logistic": lambda x: 1 / (1 + np.exp(-x)),
        "rsqrt": lambda x: 1 / np.sqrt(x),
        "erf": lambda x: erf(x).astype(x.dtype),  # NumPy has no erf ufunc: a Python loop
        "pow": np.power,
    }.get(name) or getattr(np, name)


def _median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="1M")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    n = int(float(args.size.rstrip("M")) * 1_000_000) if args.size.endswith("M") else int(args.size)
    rng = np.random.default_rng(0)
    print(f"threads: 1 (jitgine kernel and NumPy), {n} elements, median of {args.repeat}")
    print(f"{'function':10s} {'dtype':8s} {'jitgine ns/elt':>15s} {'numpy ns/elt':>13s} {'ratio':>7s}")
    for dtype in (np.float32, np.float64):
        loaded, funcs, ptr = _compile(dtype)
        for name in FUNCS:
            xs = _inputs(name, n, dtype, rng)
            out = np.empty(n, dtype)
            pointers = [a.ctypes.data_as(ptr) for a in (*xs, out)]
            ours = _median_time(lambda: funcs[name](*pointers, n), args.repeat)
            peer_repeat = 1 if name == "erf" else args.repeat
            theirs = _median_time(lambda: _numpy(name)(*xs), peer_repeat)
            print(f"{name:10s} {np.dtype(dtype).name:8s} {ours / n * 1e9:15.2f} {theirs / n * 1e9:13.2f} "
                  f"{theirs / ours:7.2f}")

if __name__ == "__main__":
    main()
