"""random_uniform (Philox-4x32-10 kernel) vs NumPy's and PyTorch's uniform generators, same process.

    python benchmarks/random_uniform.py [--sizes 4096,262144,4194304] [--threads N]

Without --threads it re-runs itself at 1 thread and at every core. Each
contender fills a float32 array of `size` values in [0, 1): jitgine's eager
`random_uniform` (the compiled kernel plus the dispatch of one primitive),
NumPy's `Generator(PCG64).random(dtype=float32)` (one thread), its Philox
bit generator (the same cipher family, 4x64) and `torch.rand` when installed.
Prints the median time per call, GB/s written and NumPy-PCG64 / jitgine.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402  (before NumPy: unsets OPENBLAS_CORETYPE)

import numpy as np  # noqa: E402

import jitgine as jg  # noqa: E402
from jitgine.core.dispatch import apply  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096,262144,4194304")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads is None:
        _common.run_per_thread_count(__file__, ["--sizes", args.sizes])
        return
    _common.set_threads(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    print(f"threads {args.threads}, load {_common.load_average()}")
    state = jg.tensor(np.array([1234, 0], np.int64))
    pcg, philox = np.random.Generator(np.random.PCG64(0)), np.random.Generator(np.random.Philox(0))
    for size in (int(s) for s in args.sizes.split(",")):
        contenders = {
            "jitgine": lambda: apply("random_uniform", state, shape=(size,), dtype="float32"),
            "numpy PCG64": lambda: pcg.random(size, dtype=np.float32),
            "numpy Philox4x64": lambda: philox.random(size, dtype=np.float32),
        }
        if torch is not None:
            contenders["torch.rand"] = lambda: torch.rand(size)
        times = dict(zip(contenders, _common.interleaved(list(contenders.values()), settle=0.05)))
        line = ", ".join(f"{name} {t * 1e6:9.1f} us ({size * 4 / t / 1e9:5.2f} GB/s)" for name, t in times.items())
        print(f"n={size:>8}: {line}; PCG64/jitgine {times['numpy PCG64'] / times['jitgine']:.2f}x")


if __name__ == "__main__":
    main()
