"""A first look at jitgine: eager ops on compiled kernels, then a whole graph
fused and compiled into one native function.

    python -m jitgine.examples.demo
"""

from __future__ import annotations

import time

import numpy as np

import jitgine as jg
import jitgine.functional as F
from codegen import kernels
from codegen.compiler import compile_graph
from ir.graph import GraphBuilder
from ir.passes import PassManager
from ir.types import DType, TensorType


def eager_tour() -> None:
    print("== eager: every op below runs a kernel generated for this CPU ==")
    x = jg.tensor(np.linspace(-2, 2, 7, dtype=np.float32))
    w = jg.tensor([[1.0], [0.5]])
    print("x               =", x)
    print("relu(x) * 2     =", F.relu(x) * 2)
    print("tanh(x)         =", F.tanh(x))
    print("w * x (bcast)   =", (w * x).shape, "sum over axis 1 =", (w * x).sum(axis=1))
    print("softmax-ish     =", F.exp(x - x.max()) / F.exp(x - x.max()).sum())
    print(f"kernels compiled: {kernels.stats.kernels} in {kernels.stats.seconds:.2f} s "
          f"(a second run reads them from the disk cache)")


def graph_tour() -> None:
    print("\n== graph: y = sum(tanh(x * 0.5 + b) * x), fused into one kernel ==")
    n = 1 << 20
    g = GraphBuilder("demo")
    x = g.input(TensorType((n,), DType.float32))
    b = g.input(TensorType((n,), DType.float32))
    half = g.apply("constant", value=0.5, shape=(n,), dtype="float32")
    t = g.apply("tanh", g.apply("add", g.apply("mul", x, half), b))
    graph = g.output(g.apply("reduce_sum", g.apply("mul", t, x), axes=(0,)))
    passes = PassManager(["fuse_elementwise", "dce"])
    fused = passes.run(graph)
    print("IR before fusion:\n" + str(graph))
    print("IR after fusion:\n" + str(fused))
    start = time.perf_counter()
    compiled = compile_graph(fused)
    print(f"compiled {len(compiled.kernel_names)} kernel(s) in {time.perf_counter() - start:.3f} s")
    rng = np.random.default_rng(0)
    xs, bs = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    (result,) = compiled(xs, bs)
    reference = np.sum(np.tanh(xs.astype(np.float64) * 0.5 + bs) * xs)
    print(f"result {float(result):.4f}   NumPy float64 reference {reference:.4f}")


def main() -> None:
    eager_tour()
    graph_tour()


if __name__ == "__main__":
    main()
