"""conv2d (forward, grad_input, grad_weight) and pooling (forward, backward), float32 NCHW:
jitgine's eager ops vs PyTorch CPU, same process, same data, 1 thread and every core
(each count in its own subprocess, so every runtime reads its thread variables first).

    python benchmarks/conv.py [--shapes lenet resnet] [--samples 9]

Shapes: LeNet's training layers at batch 64 (conv1 1->6 k5 on 32x32, max pool 2,
conv2 6->16 k5 on 14x14, max pool 2) and a ResNet-style layer (N=32, 64->64,
k3, pad 1, 56x56). GFLOP/s counts 2*N*O*OH*OW*C/groups*KH*KW multiply-adds for
each of the three convolution ops (pooling prints times only); the ratio is
torch time / jitgine time (> 1: jitgine faster). Each row interleaves the two
contenders (median of `--samples` samples) so background load hits both alike;
at one thread the clock is the thread's CPU time (load-proof), else wall time.
PyTorch's gradients are `aten.convolution_backward` with one output requested and
`aten.max_pool2d_with_indices_backward` (it reuses the forward's argmax indices;
jitgine recomputes the argmax from x).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import _common  # noqa: F401  (before NumPy: unsets OPENBLAS_CORETYPE)
from _common import describe_peak, interleaved, load_average, peak_flops, run_per_thread_count, set_threads

import numpy as np

import jitgine as jg
from jitgine.core.dispatch import apply1

# (label, N, C, H, W, O, K, pad, pool after) per layer
SHAPES = {
    "lenet": [("conv1", 64, 1, 32, 32, 6, 5, 0, True), ("conv2", 64, 6, 14, 14, 16, 5, 0, True)],
    "resnet": [("resnet", 32, 64, 56, 56, 64, 3, 1, False)],
}


def torch_module(threads: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def conv_cases(torch, n, c, h, w, o, k, pad, rng):
    """[(op, jitgine fn, torch fn or None)] for the three convolution ops on one shape."""
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((o, c, k, k)).astype(np.float32)
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    dy = rng.standard_normal((n, o, oh, ow)).astype(np.float32)
    xt, wt, dyt = jg.tensor(x), jg.tensor(weight), jg.tensor(dy)
    attrs = dict(padding=(pad, pad))
    ours = {
        "conv fwd": lambda: apply1("conv2d", xt, wt, **attrs),
        "grad_input": lambda: apply1("conv2d_grad_input", dyt, wt, input_hw=(h, w), **attrs),
        "grad_weight": lambda: apply1("conv2d_grad_weight", xt, dyt, kernel_hw=(k, k), **attrs),
    }
    theirs = dict.fromkeys(ours)
    if torch is not None:
        tx, tw, tdy = torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(dy)
        backward = torch.ops.aten.convolution_backward

        def grad(mask):
            return lambda: backward(tdy, tx, tw, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask)

        theirs = {
            "conv fwd": lambda: torch.nn.functional.conv2d(tx, tw, padding=pad),
            "grad_input": grad([True, False, False]),
            "grad_weight": grad([False, True, False]),
        }
    return [(op, ours[op], theirs[op]) for op in ours]


def pool_cases(torch, n, c, h, w, rng):
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    dy = rng.standard_normal((n, c, h // 2, w // 2)).astype(np.float32)
    xt, dyt = jg.tensor(x), jg.tensor(dy)
    attrs = dict(kernel=(2, 2), stride=(2, 2))
    ours = [("maxpool fwd", lambda: apply1("max_pool2d", xt, **attrs)),
            ("maxpool bwd", lambda: apply1("max_pool2d_grad", xt, dyt, **attrs))]
    theirs = [None, None]
    if torch is not None:
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        _, indices = torch.nn.functional.max_pool2d(tx, 2, return_indices=True)
        theirs = [lambda: torch.nn.functional.max_pool2d(tx, 2),
                  lambda: torch.ops.aten.max_pool2d_with_indices_backward(tdy, tx, [2, 2], [2, 2], [0, 0], [1, 1],
                                                                          False, indices)]
    return [(op, fn, peer) for (op, fn), peer in zip(ours, theirs)]


def run(threads: int, shapes: list[str], samples: int) -> None:
    set_threads(threads)
    jg.set_num_threads(threads)
    torch = torch_module(threads)
    peak = peak_flops(threads)
    settle = 0.05 if threads > 1 else 0.0
    # One thread: both contenders run on this thread, so its CPU time is their time even when other
    # processes share the cores. Several threads: wall time (meaningful only on an idle machine).
    timer = time.thread_time if threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    print(f"\n== {threads} thread(s); load average {load_average()}; "
          f"{'thread CPU time' if threads == 1 else 'wall time'}; {describe_peak(threads)}")
    print(f"{'layer':<40} {'op':<12} {'jitgine us':>10} {'GF/s':>6} {'%peak':>6} {'torch us':>9} {'GF/s':>6} "
          f"{'ratio':>6}")
    for name in shapes:
        for label, n, c, h, w, o, k, pad, pool in SHAPES[name]:
            oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
            flops = 2.0 * n * o * oh * ow * c * k * k
            layer = f"{label} N={n} {c}->{o} k{k} {h}x{w} pad{pad}"
            rows = [(layer, flops, case) for case in conv_cases(torch, n, c, h, w, o, k, pad, rng)]
            if pool:
                rows += [(f"{label} pool N={n} C={o} {oh}x{ow} k2 s2", None, case)
                         for case in pool_cases(torch, n, o, oh, ow, rng)]
            for text, work, (op, ours, theirs) in rows:
                seconds = interleaved([ours] + ([theirs] if theirs else []), samples, settle=settle, timer=timer)
                line = f"{text:<40} {op:<12} {seconds[0] * 1e6:>10.1f}"
                line += f" {work / seconds[0] / 1e9:>6.1f} {work / seconds[0] / peak:>6.1%}" if work else " " * 14
                if theirs:
                    line += f" {seconds[1] * 1e6:>9.1f}"
                    line += f" {work / seconds[1] / 1e9:>6.1f}" if work else " " * 7
                    line += f" {seconds[1] / seconds[0]:>6.2f}"
                print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["lenet", "resnet"])
    parser.add_argument("--samples", type=int, default=9)
    parser.add_argument("--threads", type=int, help="run one thread count in this process (set by the parent)")
    args = parser.parse_args()
    if args.threads is None:
        run_per_thread_count(os.path.abspath(__file__), ["--shapes", *args.shapes, "--samples", str(args.samples)])
    else:
        run(args.threads, args.shapes, args.samples)


if __name__ == "__main__":
    sys.exit(main())
