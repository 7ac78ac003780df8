"""Environment switches that watch every compilation.

`JITGINE_LOG=1` (or `info`) prints each trace and retrace with its reason
and timings to stderr; `JITGINE_LOG=debug` adds the kernel list. Any other
value of `logging`'s level names works too; unset, the "jitgine" logger
stays quiet unless the application configures logging itself.

`JITGINE_DUMP=DIR` writes every stage of every compilation, like XLA's
`--xla_dump_to`: one folder per traced function and signature,
`DIR/<function>-<signature hash>/`, holding

    signature.txt       arguments, why it was compiled, timings
    00-input.ir ...     the IR as traced, then after each pass (ir.printer text)
    NN-llvm.ll          the LLVM IR the back end generated
    NN-llvm-opt.ll      the LLVM IR after LLVM's optimisation
    NN-asm.s            the assembly
    kernels.txt         every kernel: the primitives it holds, FLOPs, bytes
    step.jgd            the graph and its state as at compile time (f.dump format;
                        `jitgine-ir kernels DIR/<folder>` measures it)
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time

import numpy as np

log = logging.getLogger("jitgine")


def _configure_log() -> None:
    level = os.environ.get("JITGINE_LOG", "").strip()
    if not level or level.lower() in ("0", "off", "no", "false"):
        return
    number = logging.INFO if level.lower() in ("1", "on", "yes", "true") else logging.getLevelName(level.upper())
    if not isinstance(number, int):
        number = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[jitgine %(asctime)s.%(msecs)03d] %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(number)


_configure_log()


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def signature_text(key: tuple) -> str:
    parts = []
    for item in key:
        if item[0] == "array":
            parts.append(f"{np.dtype(item[2]).name}{list(item[1])}")
        elif item[0] == "scalar":
            parts.append(repr(item[1]))
        elif item[0] == "kwargs" and item[1]:
            parts.append(f"kwargs={list(item[1])}")
        elif item[0] == "modules" and item[1]:
            parts.append(f"modules={item[1]}")
    return ", ".join(parts)


def folder_name(function_name: str, key: tuple) -> str:
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in function_name)
    return f"{safe}-{digest}"


def dump_stages(traced, executable, key: tuple, reason: str, root: str) -> str:
    """Write every stage of one compilation to a new folder under `root`; returns the folder."""
    from .dump import bundle_from_trace, select, write_dump
    from .inspection import kernel_asm, kernel_infos, kernel_llvm_ir

    folder = os.path.join(root, folder_name(traced.__name__, key))
    os.makedirs(folder, exist_ok=True)
    compiled = executable.compiled
    timings = ", ".join(f"{k} {v:.3f} s" for k, v in executable.timings.items())
    _atomic_write(os.path.join(folder, "signature.txt"),
                  f"function {traced.__name__}\nsignature ({signature_text(key)})\ncompiled because: {reason}\n"
                  f"timings: {timings}\nkernels: {len(compiled.kernel_names)}\n")
    stages = list(executable.stages.items())
    for i, (stage, graph) in enumerate(stages):
        _atomic_write(os.path.join(folder, f"{i:02d}-{stage}.ir"), str(graph))
    n = len(stages)
    _atomic_write(os.path.join(folder, f"{n:02d}-llvm.ll"), compiled.llvm_ir)
    _atomic_write(os.path.join(folder, f"{n + 1:02d}-llvm-opt.ll"), kernel_llvm_ir(compiled, optimized=True))
    _atomic_write(os.path.join(folder, f"{n + 2:02d}-asm.s"), kernel_asm(compiled))
    lines = [f"{'kernel':<28} {'FLOPs':>12} {'bytes':>12}  primitives"]
    lines += [f"{k.name:<28} {k.flops:>12} {k.bytes:>12}  {' '.join(k.primitives)}" for k in kernel_infos(compiled)]
    _atomic_write(os.path.join(folder, "kernels.txt"), "\n".join(lines) + "\n")
    bundle = bundle_from_trace(traced)
    write_dump(select(bundle, [s for s in bundle.signatures if s.graph is executable.stages["input"]]),
               os.path.join(folder, "step.jgd"))
    return folder


def compiled(traced, executable, key: tuple, reason: str) -> None:
    """Called by `trace` after every compilation: log it, dump it."""
    first = len(traced.executables) == 1
    what = "trace" if first else f"retrace #{traced.retraces}"
    timings = ", ".join(f"{k} {v:.3f} s" for k, v in executable.timings.items())
    log.info("%s %s (%s): %s; %d primitives -> %d kernels; %s", what, traced.__name__, signature_text(key),
             reason, executable.primitives, len(executable.compiled.kernel_names), timings)
    log.debug("kernels of %s: %s", traced.__name__, " ".join(executable.compiled.kernel_names))
    root = os.environ.get("JITGINE_DUMP")
    if root:
        start = time.perf_counter()
        folder = dump_stages(traced, executable, key, reason, root)
        log.info("dumped %s to %s in %.3f s", traced.__name__, folder, time.perf_counter() - start)
