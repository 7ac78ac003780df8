"""Inspection API on traced functions, the cost model, f.dump / jitgine.jit.load, JITGINE_DUMP / JITGINE_LOG."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import jitgine as jg
import jitgine.functional as F
import jitgine.module as M
import jitgine.optimizer as optim
from ir.cost import node_bytes, node_flops
from ir.graph import GraphBuilder
from ir.parser import parse_graph
from ir.passes._pipeline import optimize
from ir.types import DType, TensorType
from jitgine import serialization
from jitgine.autodiff import GradManager
from jitgine.jit import DumpError, load, trace
from jitgine.jit.inspection import split_assembly

F32 = DType.parse("f32")


@pytest.fixture(scope="module")
def mlp_step():
    """A traced SGD-with-momentum step of a two-layer MLP, called twice."""
    jg.random.seed(1)
    net = M.Sequential(M.Linear(12, 16), M.ReLU(), M.Linear(16, 3))
    gm = GradManager().attach(net.parameters())
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        with gm:
            logits = net(x)
            loss = F.loss.cross_entropy(logits, y)
            gm.backward(loss)
        opt.step().clear_grad()
        return {"loss": loss, "logits": [logits]}

    traced = trace(step)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 12)).astype(np.float32)
    y = rng.integers(0, 3, 9).astype(np.int32)
    traced(x, y)
    return traced, net, x, y


def test_stages_print_and_parse_back(mlp_step):
    traced = mlp_step[0]
    names = traced.stage_names
    assert names[0] == "input" and names[-1] == "optimized" and "fuse_elementwise" in names
    for stage in names:
        text = traced.ir(stage)
        assert str(parse_graph(text)) == text
    with pytest.raises(KeyError, match="stages are"):
        traced.ir("no_such_pass")


def test_fusion_groups_and_kernel_costs(mlp_step):
    traced = mlp_step[0]
    groups = traced.fusion_groups()
    assert list(groups) == [k.name for k in traced.kernels()]
    assert any("exp" in prims for prims in groups.values())  # softmax's exp fused into some kernel
    matmuls = [k for k in traced.kernels() if k.op in ("matmul", "fused_matmul")]
    forward = next(k for k in matmuls if k.node.operands[0].shape == (9, 12))
    assert forward.flops >= 2 * 9 * 12 * 16
    assert all(k.bytes > 0 for k in traced.kernels())


def test_llvm_ir_and_assembly_of_one_kernel():
    # Elementwise kernels only: optimising and printing a module with GEMMs takes tens of seconds.
    traced = trace(lambda x: (F.exp(x) * 2.0, F.tanh(x).sum()))
    traced(np.ones((5, 7), np.float32))
    kernel = traced.kernels()[0].name
    generated = traced.llvm_ir(kernel)
    assert f'define void @"{kernel}"' in generated or f"define void @{kernel}(" in generated
    assert "define void @run" not in generated  # only this kernel's functions
    assert "define" in traced.llvm_ir(kernel, optimized=True)
    asm = traced.asm(kernel)
    assert f"{kernel}:" in asm and "ret" in asm
    assert set(split_assembly(traced.asm())) >= {"run", kernel}
    with pytest.raises(KeyError, match="kernels are"):
        traced.asm("k999_nothing")


def test_graph_and_report_from_the_api(tmp_path):
    traced = trace(lambda x, y: (F.exp(x) * y).sum(axis=1))
    traced(np.ones((4, 3), np.float32), np.ones((4, 3), np.float32))
    dot = (tmp_path / "g.dot")
    assert traced.graph(str(dot)) == str(dot)
    text = dot.read_text()
    assert text.startswith('digraph "<lambda>"') and "subgraph cluster_" in text and 'label="exp"' in text
    if shutil.which("dot"):
        traced.report(str(tmp_path / "r.html"), repeat=2)
        page = (tmp_path / "r.html").read_text()
        assert "<svg" in page and "Kernels (measured)" in page and "k0_fused_reduce" in page
    with pytest.raises(ValueError, match="extension"):
        traced.graph(str(tmp_path / "g.jpg"))


def test_profile_measures_every_kernel_on_copies_of_the_state(mlp_step):
    traced, net, x, y = mlp_step
    before = [p.numpy().copy() for p in net.parameters()]
    table = traced.profile(x, y, repeat=5)
    assert [k.name for k in table.kernels] == [k.name for k in traced.kernels()]
    assert all(s >= 0 for s in table.seconds) and table.kernel_seconds > 0 and table.step_seconds > 0
    assert table.kernel_seconds <= 10 * table.step_seconds  # one clock per kernel, not garbage
    for p, b in zip(net.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), b)  # profiling did not train the model
    text = str(table)
    assert "GFLOP/s" in text and "kernels cover" in text
    with pytest.raises(ValueError, match="argument 0"):
        traced.profile(x[:3], y)


def test_cost_model_counts_contractions_and_regions():
    b = GraphBuilder("g")
    x = b.input(TensorType((2, 3, 8, 8), F32))
    w = b.input(TensorType((4, 3, 3, 3), F32))
    conv = b.add("conv2d", [x, w])
    assert node_flops(conv) == 2 * (2 * 4 * 6 * 6) * (3 * 3 * 3)
    assert node_bytes(conv) == 4 * (2 * 3 * 8 * 8 + 4 * 3 * 3 * 3 + 2 * 4 * 6 * 6)
    a = b.input(TensorType((5, 7), F32))
    c = b.input(TensorType((7, 2), F32))
    assert node_flops(b.add("matmul", [a, c])) == 2 * 5 * 2 * 7
    assert node_flops(b.add("exp", [a])) == 35
    assert node_flops(b.add("reshape", [a], shape=(35,))) == 0

    e = GraphBuilder("h")
    u = e.input(TensorType((6, 5), F32))
    fused, _ = optimize(e.output(e.apply("reduce_sum", e.apply("mul", e.apply("exp", u), u), axes=(1,))))
    (node,) = [n for n in fused.nodes if n.region is not None]
    assert node_flops(node) == 30 * 3  # exp, mul and the reduction's add per element
    assert node_bytes(node) == 4 * (30 + 6)

    c = GraphBuilder("c")
    x = c.input(TensorType((2, 3, 8, 8), F32))
    w = c.input(TensorType((4, 3, 3, 3), F32))
    fused, _ = optimize(c.output(c.apply("exp", c.apply("conv2d", x, w))))
    (node,) = [n for n in fused.nodes if n.region is not None]
    assert node.op == "fused_conv2d"
    assert node_flops(node) == 2 * (2 * 4 * 6 * 6) * (3 * 3 * 3) + 2 * 4 * 6 * 6  # the conv, then exp per point


# ---------------------------------------------------------------------------- dump / load

def test_dump_load_runs_and_keeps_training_like_the_original(tmp_path, mlp_step):
    traced, net, x, y = mlp_step
    path = tmp_path / "mlp.jgd"
    traced.dump(path)
    loaded = load(path)
    assert loaded.signatures == ["(float32[9,12], int32[9])"]
    assert sum(name.endswith("momentum_buffer") for name in loaded.state) == 4
    assert any(name.endswith("0.weight") for name in loaded.state)
    for _ in range(3):  # both continue from the same weights and momentum
        a, b = traced(x, y), loaded(x, y)
        assert set(b) == {"loss", "logits"} and isinstance(b["logits"], list)
        np.testing.assert_array_equal(a["loss"].numpy(), b["loss"].numpy())
        np.testing.assert_array_equal(a["logits"][0].numpy(), b["logits"][0].numpy())
    for name, param in net.named_parameters():
        np.testing.assert_array_equal(param.numpy(), loaded.state[f"net.{name}"])
    # A re-dump of the loaded function carries its trained state.
    loaded.dump(tmp_path / "again.jgd")
    again = load(tmp_path / "again.jgd")
    np.testing.assert_array_equal(again(x, y)["loss"].numpy(), loaded(x, y)["loss"].numpy())
    with pytest.raises(TypeError, match="dumped for the signature"):
        loaded(x[:4], y[:4])


def test_dump_keeps_every_signature_scalars_and_kwargs(tmp_path):
    w = jg.Parameter(np.arange(6, dtype=np.float32))

    @trace
    def f(x, scale, *, bias):
        return (x * w * scale + bias).sum(), None

    rng = np.random.default_rng(3)
    calls = [(rng.standard_normal((2, 6)).astype(np.float32), 2.0), (rng.standard_normal((4, 6)).astype(np.float32), 3.0)]
    expected = [f(x, s, bias=np.ones(6, np.float32))[0].numpy() for x, s in calls]
    f.dump(tmp_path / "f.jgd")
    loaded = load(tmp_path / "f.jgd")
    assert len(loaded.signatures) == 2
    for (x, s), want in zip(calls, expected):
        got, nothing = loaded(x, s, bias=np.ones(6, np.float32))
        assert nothing is None
        np.testing.assert_array_equal(got.numpy(), want)
    with pytest.raises(TypeError, match="called with"):
        loaded(calls[0][0], 5.0, bias=np.ones(6, np.float32))


@pytest.fixture()
def dumped(tmp_path, mlp_step):
    path = tmp_path / "mlp.jgd"
    mlp_step[0].dump(path)
    return path


def test_damaged_files_are_clear_errors(dumped, tmp_path):
    data = dumped.read_bytes()
    cases = {
        "truncated.jgd": (data[: len(data) // 2], "truncated"),
        "flipped.jgd": (data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:], "checksum mismatch"),
        "empty.jgd": (b"", "empty"),
        "model.pkl": (pickle.dumps({"w": np.ones(3)}), "pickle"),
        "text.ir": (b"func @f() {\n  return\n}\n", "not a jitgine file"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DumpError, match=message) as error:
            load(path)
        assert str(path) in str(error.value)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.jgd")


def test_foreign_and_inconsistent_dumps_are_clear_errors(dumped, tmp_path):
    state_dict = tmp_path / "weights.mge"
    serialization.save({"w": np.ones(3, np.float32)}, state_dict)
    with pytest.raises(DumpError, match="not a function dumped"):
        load(state_dict)
    root = serialization.load(dumped)

    def broken(name: str, change) -> str:
        copy = serialization.load(dumped)
        change(copy)
        path = tmp_path / name
        serialization.save(copy, path)
        return path

    cases = [
        (lambda r: r.update(version=99), "version 99"),
        (lambda r: r["signatures"][0].update(graph="func @f(%0: f32[2]) {\n  return %9\n}\n"), "does not parse"),
        (lambda r: r["signatures"][0].update(state=[0]), "takes .* inputs"),
        (lambda r: r["signatures"][0].update(outputs=5), "declares 5 results"),
        (lambda r: r["state"][0].update(array=np.zeros(7, np.float32)), "in the file"),
        (lambda r: r["signatures"][0].update(structure={"type": "tensor", "index": 40}), "result 40"),
        (lambda r: r.update(signatures=[]), "no compiled signatures"),
    ]
    for i, (change, message) in enumerate(cases):
        with pytest.raises(DumpError, match=message):
            load(broken(f"bad{i}.jgd", change))
    assert root["format"] == "jitgine.jit.dump"


# ---------------------------------------------------------------------------- environment switches

def test_jitgine_dump_writes_every_stage_per_signature(tmp_path, monkeypatch):
    monkeypatch.setenv("JITGINE_DUMP", str(tmp_path))
    w = jg.Parameter(np.ones((4, 3), np.float32))

    @trace
    def g(x):
        return F.relu(F.matmul(x, w)).sum()

    g(np.ones((2, 4), np.float32))
    g(np.ones((5, 4), np.float32))
    folders = sorted(os.listdir(tmp_path))
    assert len(folders) == 2 and all(f.startswith("g-") for f in folders)
    files = sorted(os.listdir(tmp_path / folders[0]))
    assert files[0] == "00-input.ir" and {"kernels.txt", "signature.txt", "step.jgd"} <= set(files)
    assert any(f.endswith("-asm.s") for f in files) and any(f.endswith("-llvm-opt.ll") for f in files)
    for name in files:
        if name.endswith(".ir"):
            parse_graph((tmp_path / folders[0] / name).read_text())
    signatures = [(tmp_path / f / "signature.txt").read_text() for f in folders]
    assert any("first call" in s for s in signatures) and any("changed from" in s for s in signatures)
    loaded = load(tmp_path / folders[0] / "step.jgd")
    assert len(loaded.signatures) == 1 and list(loaded.state) == ["w"]


def test_jitgine_log_prints_compile_and_retrace_events():
    script = (
        "import numpy as np, jitgine.functional as F\n"
        "from jitgine.jit import trace\n"
        "f = trace(lambda x: F.exp(x).sum())\n"
        "f(np.ones(3, np.float32)); f(np.ones(4, np.float32)); f(np.ones(4, np.float32))\n"
    )
    env = {**os.environ, "JITGINE_LOG": "1"}
    env.pop("JITGINE_DUMP", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("[jitgine")]
    assert len(lines) == 2, done.stderr
    assert "first call" in lines[0] and "compile" in lines[0] and " s" in lines[0]
    assert "retrace #1" in lines[1] and "changed from" in lines[1]


def test_kernel_code_includes_the_shared_helpers_it_calls():
    """A fused matmul's own functions are its driver and epilogue; the loop nest and micro-kernels
    it runs are shared by every GEMM of the module and shown with each kernel that calls them."""
    w = np.linspace(-1, 1, 7 * 5, dtype=np.float32).reshape(7, 5)
    traced = trace(lambda x: F.relu(F.matmul(x, w) + 1.0))
    traced(np.ones((3, 7), np.float32))
    kernel = next(k.name for k in traced.kernels() if k.op == "fused_matmul")
    generated = traced.llvm_ir(kernel)
    assert re.search(rf'@"?{kernel}\.epilogue\b', generated)
    assert re.search(r'define internal void @"?gemm\.float32\.body\d\d\b', generated)
    assert re.search(r'define internal void @"?gemm\.float32\.micro\d+x\d\b', generated)
    asm = split_assembly(traced.asm(kernel))
    assert kernel in asm and any(name.startswith("gemm.float32.micro") for name in asm)
