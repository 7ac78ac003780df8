"""The back end as a whole: vector code of the host's width, the disk cache, thread-count independence."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import jitgine as jg
import jitgine.functional as F
from codegen import kernels, target
from codegen.elementwise import define_fused_kernel
from codegen.plan import contiguous_view, plan_loops
from ir.graph import GraphBuilder
from ir.types import DType, TensorType

F32 = DType.float32
SCALAR = TensorType((), F32)


# ----------------------------------------------------------------------------- (a) vector width
def tanh_kernel() -> tuple[kernels.CompiledKernel, list[int]]:
    """A fused kernel out = tanh(x + y) over 1000 contiguous float32 elements."""
    builder = GraphBuilder("region")
    x, y = builder.input(SCALAR), builder.input(SCALAR)
    region = builder.output(builder.apply("tanh", builder.apply("add", x, y)))
    plan, meta = plan_loops((1000,), [(0, (1,))] * 3)
    kernel = kernels.get_kernel(
        ("test_codegen", "tanh(x+y)", plan),
        lambda module, name: define_fused_kernel(module, name, region, (F32,), (F32, F32), plan),
    )
    return kernel, meta


def row_sum_kernel(shape: tuple[int, int]) -> tuple[kernels.CompiledKernel, list[int]]:
    """A sum over the contiguous inner axis of a (rows, cols) float32 array."""
    builder = GraphBuilder("region")
    region = builder.output(builder.input(SCALAR))
    views = [contiguous_view(shape, (1,)), (0, (shape[1], 1))]
    plan, meta = plan_loops(shape, views, (1,), 1)
    kernel = kernels.get_kernel(
        ("test_codegen", "row_sum", plan),
        lambda module, name: define_fused_kernel(module, name, region, (F32,), (F32,), plan, "reduce_sum"),
    )
    return kernel, meta


def assert_full_width(llvm_ir: str) -> None:
    info = target.host()
    lanes = info.lanes(4)
    register = {512: "zmm", 256: "ymm"}.get(info.vector_bits, "xmm")
    optimized = target.optimized_ir(llvm_ir)
    found_ir = f"<{lanes} x float>" in optimized
    found_asm = re.search(rf"%{register}\d+", target.assembly(llvm_ir)) is not None
    assert found_ir or found_asm, (
        f"no <{lanes} x float> in the optimized IR and no {register} register in the assembly "
        f"(host {info.cpu}, {info.vector_bits}-bit vectors); vectors seen: "
        f"{sorted(set(re.findall(r'<[0-9]+ x float>', optimized)))}"
    )


def test_fused_tanh_kernel_is_vectorized_at_host_width():
    kernel, meta = tanh_kernel()
    a = np.linspace(-4, 4, 1000, dtype=np.float32)
    b = np.full(1000, 0.25, np.float32)
    out = np.empty(1000, np.float32)
    kernel([out, a, b], meta)
    np.testing.assert_allclose(out, np.tanh(a.astype(np.float64) + 0.25), rtol=1e-6, atol=1e-6)
    assert_full_width(kernel.llvm_ir)


def test_sum_reduction_kernel_is_vectorized_at_host_width():
    shape = (16, 1000)
    kernel, meta = row_sum_kernel(shape)
    a = (np.arange(16000, dtype=np.float32) % 13).reshape(shape)
    out = np.empty(16, np.float32)
    kernel([out, a], meta)
    np.testing.assert_array_equal(out, a.astype(np.float64).sum(axis=1))  # small ints: exact
    assert_full_width(kernel.llvm_ir)


# ----------------------------------------------------------------------------- (b) disk cache
SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import jitgine as jg
    import jitgine.functional as F
    from codegen import cache

    a = np.arange(1000, dtype=np.float32)
    b = np.full(1000, 0.5, np.float32)
    ok = np.array_equal(F.add(jg.tensor(a), jg.tensor(b)).numpy(), a + b)
    s = cache.stats
    print(json.dumps({"hits": s.hits, "misses": s.misses, "rebuilt": s.rebuilt, "ok": bool(ok)}))
""")


def run_script(cache_dir: Path) -> dict:
    env = dict(os.environ, JITGINE_CACHE_DIR=str(cache_dir), JITGINE_NUM_THREADS="1")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:  # flip one byte of the payload
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])


def test_disk_cache_hit_and_rebuild_after_corruption(tmp_path):
    first = run_script(tmp_path)
    assert first["ok"] and first["misses"] > 0 and first["hits"] == 0
    entries = sorted(tmp_path.glob("*.o"))
    assert len(entries) == first["misses"], entries
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"

    second = run_script(tmp_path)
    assert second == {"hits": first["misses"], "misses": 0, "rebuilt": 0, "ok": True}

    # Each damaged entry is detected, rebuilt and replaced: the next corruption finds one bad file
    # (the one it damaged), and a final process hits again.
    for how in ("truncate", "flip"):
        corrupt(entries[0], how)
        third = run_script(tmp_path)
        assert third["ok"], how
        assert third["rebuilt"] == 1 and third["misses"] == 1, (how, third)
    assert run_script(tmp_path)["misses"] == 0


# ----------------------------------------------------------------------------- (c) thread count
@pytest.fixture
def threads():
    before = jg.get_num_threads()
    yield
    jg.set_num_threads(before)


def at_threads(count: int, fn):
    jg.set_num_threads(count)
    assert jg.get_num_threads() == count
    return fn().numpy()


def test_results_do_not_depend_on_the_thread_count(threads):
    rng = np.random.default_rng(0)
    big = jg.tensor(rng.standard_normal(1 << 21, dtype=np.float32))  # 2M elements
    other = jg.tensor(rng.standard_normal(1 << 21, dtype=np.float32))
    matrix = jg.tensor(rng.standard_normal((1024, 2048), dtype=np.float32))
    cases = {
        "elementwise": lambda: F.maximum(big * other + 1.5, other),
        "full sum": lambda: F.sum(big),
        "row sum": lambda: F.sum(matrix, axis=1),
        "column sum": lambda: F.sum(matrix, axis=0),
        "max": lambda: F.max(matrix, axis=1),
        "mean": lambda: F.mean(big),
    }
    for name, fn in cases.items():
        one, two = at_threads(1, fn), at_threads(2, fn)
        assert one.tobytes() == two.tobytes(), name  # bitwise equal, not just close
    np.testing.assert_allclose(at_threads(2, cases["full sum"]), big.numpy().astype(np.float64).sum(),
                               rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(at_threads(2, cases["row sum"]), matrix.numpy().astype(np.float64).sum(axis=1),
                               rtol=1e-4, atol=1e-3)


def test_large_transcendental_does_not_depend_on_the_thread_count(threads):
    x = jg.tensor(np.linspace(-6, 6, (1 << 20) + 3, dtype=np.float32))
    one, two = at_threads(1, lambda: F.tanh(x)), at_threads(2, lambda: F.tanh(x))
    assert one.tobytes() == two.tobytes()
    np.testing.assert_allclose(two, np.tanh(x.numpy().astype(np.float64)), rtol=1e-6, atol=1e-6)


def test_data_pointer_reads_the_address_numpy_reports():
    base = np.arange(60, dtype=np.float32).reshape(6, 10)
    for array in (base, base[2:, 3:], base.T, base[:, ::3], np.empty(0, np.int64), np.asarray(5.0),
                  np.broadcast_to(base[0], (4, 10)), base.view(np.recarray)):
        assert kernels.data_pointer(array) == array.ctypes.data
