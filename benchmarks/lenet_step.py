"""One LeNet training step (batch 64, 1x32x32, cross-entropy, SGD lr 0.05): jitgine traced and
eager vs PyTorch eager and torch.compile, same process, same data, at 1 thread and every core
(each count in its own subprocess), then the traced step's first-call latency (trace + compile)
with an empty and with a warm disk cache (fresh subprocesses sharing one cache folder).

    python benchmarks/lenet_step.py [--steps 200] [--eager-steps 30]

Step times: every contender is warmed up (first call, then 10 steps), then timed one step at a
time, the contenders taking turns in rounds of `--chunk` steps so background load hits all of
them alike; the figure is the median step. A step is forward, loss, backward and the parameter
update, and returns the loss (jitgine: one native call for the traced step). torch.compile
compiles the network's forward+loss (its backward graph is compiled by AOTAutograd) and the
optimizer runs eagerly; when it cannot compile here the reason is printed and it is skipped.
Ratios are contender time / jitgine traced time (> 1: traced jitgine is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import _common  # noqa: F401  (before NumPy: unsets OPENBLAS_CORETYPE)
from _common import load_average, run_per_thread_count, set_threads

import numpy as np

BATCH, LR = 64, 0.05


def batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((BATCH, 1, 32, 32)).astype(np.float32), rng.integers(0, 10, BATCH).astype(np.int32)


def jitgine_steps() -> dict:
    import jitgine
    from jitgine.examples.lenet import make_train_step

    jitgine.random.seed(0)
    _, traced = make_train_step(lr=LR, traced=True)
    jitgine.random.seed(0)
    _, eager = make_train_step(lr=LR, traced=False)
    return {"jitgine traced": traced, "jitgine eager": eager}


def torch_steps(threads: int) -> dict:
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        print("PyTorch is not installed: jitgine only")
        return {}
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lenet_torch import LeNet

    torch.set_num_threads(threads)
    steps = {}
    for name in ("torch eager", "torch.compile"):
        torch.manual_seed(0)
        net = LeNet()
        optimizer = torch.optim.SGD(net.parameters(), lr=LR)

        def forward_loss(x, y, net=net):
            return TF.cross_entropy(net(x), y)

        if name == "torch.compile":
            forward_loss = torch.compile(forward_loss)

        def step(images, labels, forward_loss=forward_loss, optimizer=optimizer):
            loss = forward_loss(torch.from_numpy(images), torch.from_numpy(labels).long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss

        steps[name] = step
    return steps


def time_steps(args, threads: int) -> None:
    set_threads(threads)
    images, labels = batch()
    contenders = {**jitgine_steps(), **torch_steps(threads)}
    first, counts = {}, {}
    for name, step in list(contenders.items()):
        start = time.perf_counter()
        try:
            step(images, labels)
        except Exception as e:  # torch.compile needs a working C++ toolchain
            print(f"{name}: skipped, the first call failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            del contenders[name]
            continue
        first[name] = time.perf_counter() - start
        for _ in range(10):
            step(images, labels)
        counts[name] = args.eager_steps if name == "jitgine eager" else args.steps
    times = {name: [] for name in contenders}
    while any(len(times[n]) < counts[n] for n in contenders):
        for name, step in contenders.items():
            for _ in range(min(args.chunk, counts[name] - len(times[name]))):
                start = time.perf_counter()
                step(images, labels)
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    ours = median["jitgine traced"]
    print(f"\n{threads} thread(s) (jitgine {threads}, torch.get_num_threads() "
          f"{_torch_threads()}), load average {load_average()}")
    print(f"{'contender':16} {'median ms/step':>15} {'images/s':>9} {'steps':>6} {'first call s':>13} "
          f"{'time / jitgine traced':>22}")
    for name, t in median.items():
        print(f"{name:16} {1e3 * t:15.3f} {BATCH / t:9.0f} {len(times[name]):6d} {first[name]:13.2f} "
              f"{t / ours:22.2f}")


def _torch_threads() -> str:
    try:
        import torch
    except ImportError:
        return "n/a"
    return str(torch.get_num_threads())


def first_call() -> None:
    """In a fresh process (JITGINE_CACHE_DIR set by the parent): seconds to build and run the first traced step."""
    start = time.perf_counter()
    import jitgine
    from jitgine.examples.lenet import make_train_step

    imported = time.perf_counter()
    _, step = make_train_step(lr=LR)
    images, labels = batch()
    built = time.perf_counter()
    step(images, labels)
    done = time.perf_counter()
    executable = step.last
    print(json.dumps({"import": imported - start, "first_call": done - built, "compile": step.compile_seconds,
                      "primitives": executable.primitives, "kernels": len(executable.compiled.kernel_names),
                      "threads": jitgine.get_num_threads()}))


def measure_first_calls() -> None:
    print("\nFirst traced call (trace + passes + LLVM IR + compile or disk-cache hit + one step), "
          "each in a fresh process:")
    with tempfile.TemporaryDirectory(prefix="jitgine-cache-") as cache:
        env = dict(os.environ, JITGINE_CACHE_DIR=cache)
        for label in ("cold (empty cache folder)", "warm (disk cache from the cold run)"):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--first-call"], env=env,
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"  {label:38} first call {r['first_call']:6.2f} s (of which trace+compile "
                  f"{r['compile']:.2f} s), import jitgine {r['import']:.2f} s; "
                  f"{r['primitives']} primitives -> {r['kernels']} kernels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per contender")
    parser.add_argument("--eager-steps", type=int, default=30, help="timed steps for jitgine eager (slow)")
    parser.add_argument("--chunk", type=int, default=10, help="steps per contender per round")
    parser.add_argument("--threads", type=int, default=None, help="time at this count only (no subprocesses)")
    parser.add_argument("--first-call", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-first-call", action="store_true", help="skip the cold/warm first-call runs")
    args = parser.parse_args()
    if args.first_call:
        first_call()
    elif args.threads is not None:
        time_steps(args, args.threads)
    else:
        print(f"LeNet training step, batch {BATCH}, 1x32x32 input, SGD lr {LR}; cores {os.cpu_count()}")
        forwarded = ["--steps", str(args.steps), "--eager-steps", str(args.eager_steps), "--chunk", str(args.chunk)]
        run_per_thread_count(os.path.abspath(__file__), forwarded)
        if not args.no_first_call:
            measure_first_calls()


if __name__ == "__main__":
    main()
