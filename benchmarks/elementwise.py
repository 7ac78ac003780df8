"""Fused elementwise chain (+ reduction) vs NumPy, same process, same data.

    python benchmarks/elementwise.py [--sizes 1M,16M,64M] [--repeat 15]

The chain is 8 elementwise ops with a tanh in it:
    y = tanh(x * 0.5 + b) * x - 0.25 * x + 1 ; then y itself, or sum(y)
jitgine traces it into an IR graph, fuses it (one kernel) and compiles it;
NumPy evaluates it op by op. Throughput counts the minimum memory traffic
(read x and b, write y - or only read for the reduction), the same bytes for
both, so the ratio is a ratio of times. The roof is a large NumPy copy.
"""

from __future__ import annotations

import os

os.environ.pop("OPENBLAS_CORETYPE", None)  # measure the peer at its best (see FIELD-NOTES)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import jitgine  # noqa: E402
from codegen.compiler import compile_graph  # noqa: E402
from ir.graph import GraphBuilder  # noqa: E402
from ir.passes import PassManager  # noqa: E402
from ir.types import DType, TensorType  # noqa: E402


def median_seconds(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def chain_graph(n: int, reduce: bool):
    g = GraphBuilder("chain")
    f32 = DType.float32
    x = g.input(TensorType((n,), f32))
    b = g.input(TensorType((n,), f32))

    def const(v):
        return g.apply("constant", value=v, shape=(n,), dtype="float32")

    t = g.apply("tanh", g.apply("add", g.apply("mul", x, const(0.5)), b))
    y = g.apply("add", g.apply("sub", g.apply("mul", t, x), g.apply("mul", const(0.25), x)), const(1.0))
    if reduce:
        y = g.apply("reduce_sum", y, axes=(0,))
    return g.output(y)


def numpy_chain(x, b, out, reduce: bool):
    np.multiply(x, 0.5, out=out)
    out += b
    np.tanh(out, out=out)
    out *= x
    out -= 0.25 * x
    out += 1.0
    return out.sum() if reduce else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,16M,64M")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(s[:-1]) * (1 << 20) if s.endswith("M") else int(s) for s in args.sizes.split(",")]

    rng = np.random.default_rng(0)
    print(f"# elementwise chain (8 ops incl. tanh), float32; median of {args.repeat} runs")
    for threads in sorted({1, os.cpu_count() or 1}):
        jitgine.set_num_threads(threads)
        print(f"\n## jitgine threads: {threads} (NumPy elementwise is single-threaded)")
        print(f"{'n':>10} {'kind':>7} {'numpy GB/s':>11} {'jitgine GB/s':>13} {'ratio':>6} {'copy roof GB/s':>15} {'% roof':>7}")
        for n in sizes:
            x = rng.standard_normal(n, dtype=np.float32)
            b = rng.standard_normal(n, dtype=np.float32)
            scratch = np.empty_like(x)
            dst = np.empty_like(x)
            roof = 2 * x.nbytes / median_seconds(lambda: np.copyto(dst, x), args.repeat) / 1e9
            for reduce in (False, True):
                graph, stages = chain_graph(n, reduce), PassManager(["fuse_elementwise", "dce"])
                compiled = compile_graph(stages.run(graph))
                kernels = [k for k in compiled.kernel_names if not k.startswith("out")]
                out = [np.empty(v.shape, np.float32) for v in compiled.graph.outputs]
                jit_t = median_seconds(lambda: compiled.run_into([x, b], out), args.repeat)
                np_t = median_seconds(lambda: numpy_chain(x, b, scratch, reduce), args.repeat)
                bytes_moved = 2 * x.nbytes + (0 if reduce else x.nbytes)
                expected = numpy_chain(x, b, scratch, reduce)
                assert np.allclose(out[0], expected, rtol=1e-3, atol=1e-2 * (np.sqrt(n) if reduce else 1)), \
                    "jitgine and NumPy disagree"
                kind = "reduce" if reduce else "map"
                jit_bw, np_bw = bytes_moved / jit_t / 1e9, bytes_moved / np_t / 1e9
                print(f"{n:>10} {kind:>7} {np_bw:>11.2f} {jit_bw:>13.2f} {np_t / jit_t:>5.1f}x {roof:>15.2f} "
                      f"{100 * jit_bw / roof:>6.0f}%   ({len(kernels)} kernel{'s' if len(kernels) > 1 else ''})")


if __name__ == "__main__":
    main()
