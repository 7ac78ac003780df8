"""The disk cache's whole-graph entries: a second process loads a traced graph without building LLVM IR,
a changed graph misses, a damaged entry is rebuilt, and the LLVM IR is still there on demand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import jitgine.functional as F
    from codegen import cache
    from jitgine.jit import trace

    n = int(sys.argv[1])
    w = np.linspace(-1, 1, 6 * n, dtype=np.float32).reshape(6, n)
    f = trace(lambda x: (F.relu(F.matmul(x, w) + 0.5), F.exp(x).sum()))
    x = np.linspace(-2, 2, 30, dtype=np.float32).reshape(5, 6)
    out = [o.numpy() for o in f(x)]
    s = cache.stats
    counts = {k: getattr(s, k) for k in ("hits", "misses", "rebuilt", "graph_hits", "graph_misses")}
    if "--ir" in sys.argv:  # the IR lowered again on demand is the text the object code was built from
        compiled = f.last.compiled
        counts["ir_is_cached_text"] = (cache.cache_dir() / (cache.key_of(compiled.llvm_ir) + ".o")).exists()
        counts["kernel_ir"] = "define" in f.llvm_ir(compiled.kernel_names[0])
    print(json.dumps({"counts": counts, "out": [o.tolist() for o in out]}))
""")


def run_script(cache_dir: Path, n: int = 4, *flags: str) -> dict:
    # One compile job: the module stays whole, so its text is the object's cache key (split
    # modules are tests/test_split.py's).
    env = dict(os.environ, JITGINE_CACHE_DIR=str(cache_dir), JITGINE_NUM_THREADS="1", JITGINE_COMPILE_JOBS="1")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(n), *flags], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_warm_process_compiles_nothing_and_changed_graph_misses(tmp_path):
    cold = run_script(tmp_path)
    assert cold["counts"]["graph_misses"] == 1 and cold["counts"]["graph_hits"] == 0
    assert len(list(tmp_path.glob("*.graph"))) == 1

    warm = run_script(tmp_path, 4, "--ir")
    counts = warm["counts"]
    assert counts["graph_hits"] == 1 and counts["graph_misses"] == 0
    assert counts["misses"] == 0 and counts["hits"] == 0  # no LLVM IR built, nothing compiled
    assert warm["out"] == cold["out"]
    assert counts["ir_is_cached_text"] and counts["kernel_ir"]

    changed = run_script(tmp_path, 5)
    assert changed["counts"]["graph_misses"] == 1 and changed["counts"]["graph_hits"] == 0
    assert len(list(tmp_path.glob("*.graph"))) == 2


def test_damaged_graph_entry_is_rebuilt(tmp_path):
    cold = run_script(tmp_path)
    (entry,) = tmp_path.glob("*.graph")
    data = entry.read_bytes()
    for damaged in (data[: len(data) // 2], data[:-10] + bytes(b ^ 0xFF for b in data[-10:])):
        entry.write_bytes(damaged)
        rebuilt = run_script(tmp_path)
        counts = rebuilt["counts"]
        assert counts["rebuilt"] == 1 and counts["graph_misses"] == 1 and counts["graph_hits"] == 0
        assert counts["hits"] == 1  # the object entry (keyed by the LLVM IR) is still whole
        assert rebuilt["out"] == cold["out"]
    assert run_script(tmp_path)["counts"]["graph_hits"] == 1
