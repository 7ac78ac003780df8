"""Epilogue fusion: compiled graphs with and without the `fuse_epilogue` pass, same process,
same data, 1 thread and every core (each count in its own subprocess).

    python benchmarks/epilogue.py [--samples 9] [--steps-only | --kernels-only]

Kernels: conv + bias + relu on LeNet's conv1 and conv2 shapes (N=64, 1->6, k5,
32x32: the direct kernel's "W" orientation; 6->16, k5, 14x14: "C") and
Linear + bias + relu on fc1 (64x400 @ 400x120), each as a graph whose outputs are
the activation and the relu mask (what a training step keeps); "separate" runs
the contraction, then one fused elementwise kernel, "fused" is one
fused_conv2d / fused_matmul. Step: the traced LeNet training step (batch 64,
SGD lr 0.05, 1x32x32 inputs, jitgine/examples/lenet.py) compiled with and
without the pass. Ratios are separate / fused (> 1: fusion is faster); each
row interleaves the two (median of `--samples` samples) so load hits both alike.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import _common  # noqa: F401  (before NumPy: unsets OPENBLAS_CORETYPE)
from _common import interleaved, load_average, run_per_thread_count, set_threads

import numpy as np

from codegen.compiler import compile_graph
from ir.graph import Graph, GraphBuilder
from ir.passes import PassManager
from ir.types import DType, TensorType

F32 = DType.float32
WITHOUT = ["fuse_elementwise", "dce"]
WITH = ["fuse_elementwise", "fuse_epilogue", "dce"]


def _bias_relu(b: GraphBuilder, y, bias) -> Graph:
    z = b.apply("add", y, b.apply("broadcast", bias, shape=y.shape))
    zero = b.apply("constant", value=0.0, shape=y.shape, dtype="f32")
    return b.output(b.apply("maximum", z, zero), b.apply("gt", z, zero))


def conv_graph(c: int = 6, o: int = 16, hw: int = 14) -> Graph:
    b = GraphBuilder()
    x, w = b.input(TensorType((64, c, hw, hw), F32)), b.input(TensorType((o, c, 5, 5), F32))
    bias = b.apply("reshape", b.input(TensorType((o,), F32)), shape=(o, 1, 1))
    return _bias_relu(b, b.apply("conv2d", x, w), bias)


def linear_graph() -> Graph:
    b = GraphBuilder()
    x, w = b.input(TensorType((64, 400), F32)), b.input(TensorType((120, 400), F32))
    return _bias_relu(b, b.apply("matmul", x, w, transpose_b=True), b.input(TensorType((120,), F32)))


def kernels(samples: int, threads: int) -> None:
    rng = np.random.default_rng(0)
    for label, graph in [("conv1+bias+relu", conv_graph(1, 6, 32)), ("conv2+bias+relu", conv_graph()),
                         ("fc1+bias+relu", linear_graph())]:
        inputs = [rng.standard_normal(v.shape).astype(np.float32) for v in graph.inputs]
        separate, fused = (compile_graph(PassManager(p).run(graph)) for p in (WITHOUT, WITH))
        outs = [[np.empty(v.shape, bool if v.dtype.is_bool else np.float32) for v in graph.outputs]
                for _ in range(2)]
        t_sep, t_fused = interleaved([lambda: separate.run_into(inputs, outs[0]),
                                      lambda: fused.run_into(inputs, outs[1])], samples)
        for a, b in zip(*outs):
            np.testing.assert_array_equal(a, b)
        print(f"{threads} thr  {label:16s} separate {t_sep * 1e6:8.1f} us  fused {t_fused * 1e6:8.1f} us  "
              f"ratio {t_sep / t_fused:5.2f}x")


def lenet_steps(samples: int, threads: int) -> None:
    import jitgine
    from jitgine.examples.lenet import make_train_step

    trace_module = importlib.import_module("jitgine.jit.trace")
    default = list(trace_module.PIPELINE)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 64).astype(np.int32)
    steps, kernel_counts = [], []
    for pipeline in ([p for p in default if p != "fuse_epilogue"], default):
        trace_module.PIPELINE[:] = pipeline
        jitgine.random.seed(0)
        _, step = make_train_step()
        step(x, labels)  # trace + compile (cached on disk after the first run)
        kernel_counts.append(len(step.last.compiled.kernel_names))
        steps.append(lambda step=step: step(x, labels))
    trace_module.PIPELINE[:] = default
    t_sep, t_fused = interleaved(steps, samples, min_sample=0.05)
    print(f"{threads} thr  LeNet train step  without {t_sep * 1e3:7.3f} ms ({kernel_counts[0]} kernels)  "
          f"with {t_fused * 1e3:7.3f} ms ({kernel_counts[1]} kernels)  ratio {t_sep / t_fused:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="(internal) run at this thread count")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--steps-only", action="store_true")
    which.add_argument("--kernels-only", action="store_true")
    args = parser.parse_args()
    if args.threads is None:
        print(f"load average {load_average()}; ratio = without the pass / with it")
        run_per_thread_count(os.path.abspath(__file__), sys.argv[1:])
        return
    set_threads(args.threads)
    if not args.steps_only:
        kernels(args.samples, args.threads)
    if not args.kernels_only:
        lenet_steps(args.samples, args.threads)


if __name__ == "__main__":
    main()
