"""conv2d forward (float32, NCHW) vs PyTorch CPU, same process, same data, 1 and 2 threads.

    python benchmarks/conv.py [--repeat 15]

Shapes: LeNet's two convolutions at batch 64 (1->6 k5 on 32x32, 6->16 k5 on
14x14) and a ResNet-style layer (N=32, 64->64, k3, pad 1, 56x56).
GFLOP/s counts 2*N*O*OH*OW*C/groups*KH*KW for both; the ratio is jitgine / torch.
"""

from __future__ import annotations

import os

os.environ.pop("OPENBLAS_CORETYPE", None)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import jitgine as jg  # noqa: E402
from jitgine.core.dispatch import apply1  # noqa: E402

SHAPES = [  # (N, C, H, W, O, K, pad)
    (64, 1, 32, 32, 6, 5, 0),
    (64, 6, 14, 14, 16, 5, 0),
    (32, 64, 56, 56, 64, 3, 1),
]


def median_seconds(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print(f"{'shape':<34} {'threads':>7} {'jitgine GF/s':>12} {'torch GF/s':>10} {'ratio':>6}")
    for n, c, h, w, o, k, pad in SHAPES:
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        weight = rng.standard_normal((o, c, k, k)).astype(np.float32)
        oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
        flops = 2.0 * n * o * oh * ow * c * k * k
        xt, wt = jg.tensor(x), jg.tensor(weight)
        for threads in (1, 2):
            jg.set_num_threads(threads)
            ours = median_seconds(lambda: apply1("conv2d", xt, wt, padding=(pad, pad)), args.repeat)
            theirs = float("nan")
            if torch is not None:
                torch.set_num_threads(threads)
                tx, tw = torch.from_numpy(x), torch.from_numpy(weight)
                with torch.no_grad():
                    theirs = median_seconds(lambda: torch.nn.functional.conv2d(tx, tw, padding=pad), args.repeat)
            label = f"N={n} {c}->{o} k{k} {h}x{w} pad{pad}"
            print(f"{label:<34} {threads:>7} {flops / ours / 1e9:>12.1f} {flops / theirs / 1e9:>10.1f} "
                  f"{theirs / ours:>6.2f}")


if __name__ == "__main__":
    main()
