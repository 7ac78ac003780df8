"""Epilogue fusion: matmul / conv2d + their elementwise consumers as one fused node.

The pass must keep the interpreter's results exactly (the fused op evaluates
the contraction with the same rule), the compiled fused kernels must match
the original graph, give the same bits as the unfused kernels and at every
thread count, the IR must print and parse back, and the pass must fire on a
traced training step and stay away from contractions whose result is used
elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jitgine as jg
import jitgine.functional as F
import jitgine.module as M
import jitgine.optimizer as optim
from codegen.compiler import compile_graph
from codegen.gemm_kernel import blocking_for
from ir.graph import Graph, GraphBuilder, Value
from ir.interpret import run
from ir.ops_conv import conv_out_hw
from ir.parser import parse_graph
from ir.passes import PassManager
from ir.printer import print_graph
from ir.types import DType, TensorType
from jitgine.autodiff import GradManager
from jitgine.jit import trace
from test_ir import random_inputs

BEFORE = ["fuse_elementwise", "dce"]
AFTER = ["fuse_elementwise", "fuse_epilogue", "dce"]
FUSED_OPS = ("fused_matmul", "fused_conv2d")
STEPS = ("add_broadcast", "mul_broadcast", "add_transposed", "add_residual", "relu", "scale", "tanh")


@pytest.fixture(autouse=True)
def _restore_threads():
    count = jg.get_num_threads()
    yield
    jg.set_num_threads(count)


def _epilogue(draw, b: GraphBuilder, y: Value) -> list[Value]:
    """Elementwise work on `y` drawn from STEPS, returning the graph's outputs (one or several)."""
    shape, dtype = y.shape, y.dtype
    zero = b.apply("constant", value=0.0, shape=shape, dtype=dtype.value)
    value, outputs = y, []
    for step in draw(st.lists(st.sampled_from(STEPS), min_size=1, max_size=4)):
        if step in ("add_broadcast", "mul_broadcast"):
            # Keep a random subset of the dims: bias rows/columns/channels and non-mergeable views alike.
            kept = tuple(d if draw(st.booleans()) else 1 for d in shape)
            operand = b.apply("broadcast", b.input(TensorType(kept, dtype)), shape=shape)
            value = b.apply(step.split("_")[0], value, operand)
        elif step == "add_transposed" and len(shape) >= 2:
            swapped = shape[:-2] + (shape[-1], shape[-2])
            perm = tuple(range(len(shape) - 2)) + (len(shape) - 1, len(shape) - 2)
            value = b.apply("add", value, b.apply("permute", b.input(TensorType(swapped, dtype)), perm=perm))
        elif step == "add_residual":
            value = b.apply("add", value, b.input(TensorType(shape, dtype)))
        elif step == "relu":
            if draw(st.booleans()):
                outputs.append(value)  # the pre-activation too: a second result
            mask = b.apply("gt", value, zero)
            if draw(st.booleans()):
                outputs.append(mask)  # a bool result, as relu's backward keeps
            value = b.apply("maximum", value, zero)
        elif step == "scale":
            value = b.apply("mul", value, b.apply("constant", value=0.5, shape=shape, dtype=dtype.value))
        else:
            value = b.apply("tanh", value)
    return [value] + [v for v in outputs if v is not y and v is not value]


@st.composite
def matmul_graphs(draw) -> Graph:
    dtype = draw(st.sampled_from([DType.float32, DType.float64]))
    sizes = st.sampled_from([1, 2, 3, 5, 7, 8, 13, 17, 23, 31])
    m, n, k = draw(sizes), draw(sizes), draw(st.sampled_from([0, 1, 2, 7, 16, 29]))
    ta, tb = draw(st.booleans()), draw(st.booleans())
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    a_batch = batch if draw(st.booleans()) else ()
    b_batch = batch if not a_batch or draw(st.booleans()) else ()
    b = GraphBuilder()
    x = b.input(TensorType(a_batch + ((k, m) if ta else (m, k)), dtype))
    w = b.input(TensorType(b_batch + ((n, k) if tb else (k, n)), dtype))
    y = b.apply("matmul", x, w, transpose_a=ta, transpose_b=tb)
    return b.output(*_epilogue(draw, b, y))


@st.composite
def conv_graphs(draw) -> Graph:
    groups = draw(st.integers(1, 3))
    n, c, o = draw(st.integers(1, 3)), groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    x_type = TensorType((n, c, h, w), DType.float32)
    w_type = TensorType((o, c // groups, kh, kw), DType.float32)
    try:
        conv_out_hw("conv2d", [x_type, w_type], (h, w), (kh, kw), stride, padding, dilation)
    except ValueError:
        padding = ((dilation[0] * (kh - 1)) // 2 + 1, (dilation[1] * (kw - 1)) // 2 + 1)
    b = GraphBuilder()
    y = b.apply("conv2d", b.input(x_type), b.input(w_type), stride=stride, padding=padding,
                dilation=dilation, groups=groups)
    return b.output(*_epilogue(draw, b, y))


def _fused_nodes(graph: Graph):
    return [node for node in graph.nodes if node.op in FUSED_OPS]


def _check_interpreted(graph: Graph, seed: int) -> tuple[Graph, list[np.ndarray]]:
    before = PassManager(BEFORE).run(graph)
    after = PassManager(AFTER).run(graph)
    assert len(_fused_nodes(after)) == 1
    assert not any(node.op in ("matmul", "conv2d") for node in after.nodes)
    text = print_graph(after)
    assert print_graph(parse_graph(text)) == text
    inputs = random_inputs(graph, seed)
    expected = run(before, inputs)
    for e, got in zip(expected, run(after, inputs)):
        assert e.dtype == got.dtype and e.shape == got.shape
        np.testing.assert_array_equal(got, e)
    return after, inputs


def _check_compiled(graph: Graph, seed: int) -> None:
    after, inputs = _check_interpreted(graph, seed)
    expected = run(graph, inputs)
    got = compile_graph(after)(*inputs)
    for e, g in zip(expected, got):
        assert e.dtype == g.dtype and e.shape == g.shape
        if e.dtype == bool:  # a mask may flip where the value rounds across zero
            assert np.mean(e != g) <= 0.05
            continue
        tol = 1e-4 if e.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol * max(1.0, float(np.abs(e).max(initial=0))))


SEEDS = st.integers(0, 2**31)


@given(graph=matmul_graphs(), seed=SEEDS)
def test_matmul_epilogue_keeps_results(graph, seed):
    _check_interpreted(graph, seed)


@given(graph=conv_graphs(), seed=SEEDS)
@settings(max_examples=15)
def test_conv_epilogue_keeps_results(graph, seed):
    _check_interpreted(graph, seed)


# Compiling costs 2-3 s of CPU per graph (GEMM micro-kernels): few examples.
@given(graph=matmul_graphs(), seed=SEEDS)
@settings(max_examples=6)
def test_compiled_matmul_epilogue_matches_the_graph(graph, seed):
    _check_compiled(graph, seed)


@given(graph=conv_graphs(), seed=SEEDS)
@settings(max_examples=4)
def test_compiled_conv_epilogue_matches_the_graph(graph, seed):
    _check_compiled(graph, seed)


def _linear_relu(batch: tuple[int, ...], m: int, k: int, n: int) -> Graph:
    b = GraphBuilder()
    x = b.input(TensorType(batch + (m, k), DType.float32))
    w = b.input(TensorType((n, k), DType.float32))
    bias = b.input(TensorType((n,), DType.float32))
    shape = batch + (m, n)
    z = b.apply("add", b.apply("matmul", x, w, transpose_b=True), b.apply("broadcast", bias, shape=shape))
    zero = b.apply("constant", value=0.0, shape=shape, dtype="f32")
    return b.output(b.apply("maximum", z, zero), b.apply("gt", z, zero))


def _conv_bias_relu(n: int, c: int, hw: int, o: int, k: int, groups: int = 1) -> Graph:
    b = GraphBuilder()
    x = b.input(TensorType((n, c, hw, hw), DType.float32))
    w = b.input(TensorType((o, c // groups, k, k), DType.float32))
    bias = b.input(TensorType((1, o, 1, 1), DType.float32))
    y = b.apply("conv2d", x, w, padding=(1, 1), groups=groups)
    z = b.apply("add", y, b.apply("broadcast", bias, shape=y.shape))
    zero = b.apply("constant", value=0.0, shape=y.shape, dtype="f32")
    return b.output(b.apply("maximum", z, zero), b.apply("gt", z, zero))


@pytest.mark.parametrize("graph", [
    _linear_relu((2,), 70, 61, 130),  # above the GEMM's threading threshold
    _conv_bias_relu(4, 8, 20, 16, 3, groups=2),
], ids=["matmul", "conv2d"])
def test_fused_kernels_give_the_unfused_bits_at_every_thread_count(graph):
    _check_unfused_bits(graph, 7)


def _check_unfused_bits(graph: Graph, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The fused graph gives the unfused graph's bits at 1 and 2 threads; returns the inputs and
    the unfused results."""
    inputs = random_inputs(graph, seed)
    unfused = compile_graph(PassManager(BEFORE).run(graph))(*inputs)
    fused_graph = compile_graph(PassManager(AFTER).run(graph))
    assert len(_fused_nodes(fused_graph.graph)) == 1
    for threads in (1, 2):
        jg.set_num_threads(threads)
        for want, got in zip(unfused, fused_graph(*inputs)):
            np.testing.assert_array_equal(got, want)
    return inputs, unfused


def _conv_with_operands(x_shape, o: int, k: int, groups: int, stride: tuple[int, int]) -> Graph:
    """conv2d, then operands read through every kind of view along either lane axis: a channel
    bias (1, O, 1, 1), a residual, a transposed (N, O, OW, OH) operand and a row (1, 1, 1, OW)
    (OH x OW not mergeable); results: tanh(relu(z)), z and z > 0."""
    b = GraphBuilder()
    x = b.input(TensorType(x_shape, DType.float32))
    w = b.input(TensorType((o, x_shape[1] // groups, k, k), DType.float32))
    y = b.apply("conv2d", x, w, stride=stride, padding=(1, 1), groups=groups)
    n, _, oh, ow = y.shape
    bias = b.apply("broadcast", b.input(TensorType((1, o, 1, 1), DType.float32)), shape=y.shape)
    row = b.apply("broadcast", b.input(TensorType((1, 1, 1, ow), DType.float32)), shape=y.shape)
    transposed = b.apply("permute", b.input(TensorType((n, o, ow, oh), DType.float32)), perm=(0, 1, 3, 2))
    z = b.apply("add", b.apply("mul", y, row), bias)
    z = b.apply("add", b.apply("add", z, b.input(TensorType(y.shape, DType.float32))), transposed)
    zero = b.apply("constant", value=0.0, shape=y.shape, dtype="f32")
    return b.output(b.apply("tanh", b.apply("maximum", z, zero)), z, b.apply("gt", z, zero))


@pytest.mark.parametrize("orientation,x_shape,o,groups,stride", [
    ("W", (2, 3, 9, 13), 5, 1, (1, 1)),  # rows of 13: a whole vector, then 5 lanes
    ("W", (3, 2, 6, 5), 4, 2, (1, 1)),  # rows of 5: masked vectors only
    ("C", (2, 4, 7, 9), 11, 1, (1, 2)),  # 11 channels: 8, then 3 lanes
    ("C", (3, 4, 5, 6), 6, 2, (1, 1)),  # 3 channels per group
    ("C", (2, 1, 5, 5), 1, 1, (1, 1)),  # one channel: one lane
])
def test_vector_epilogue_of_both_orientations_gives_the_unfused_bits(orientation, x_shape, o, groups, stride,
                                                                     monkeypatch):
    """The direct kernel applies the region on vectors along the row ("W") or along the output
    channels ("C"), partial vectors masked; every operand view kind, at 1 and 2 threads."""
    from codegen import conv_plan
    from test_conv import _forced

    original = conv_plan.plan
    monkeypatch.setattr(conv_plan, "plan", lambda *a, **k: _forced(original(*a, **k), orientation))
    graph = _conv_with_operands(x_shape, o, 3, groups, stride)
    inputs, unfused = _check_unfused_bits(graph, 11)
    for want, got in zip(run(graph, inputs), unfused):
        if want.dtype != bool:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


# ---------------------------------------------------------------- when it fires, and when not

def test_contraction_with_other_users_is_not_fused():
    b = GraphBuilder()
    x, w = b.input(TensorType((4, 5), DType.float32)), b.input(TensorType((5, 6), DType.float32))
    y = b.apply("matmul", x, w)
    relu = b.apply("maximum", y, b.apply("constant", value=0.0, shape=(4, 6), dtype="f32"))
    as_output = PassManager(AFTER).run(b.output(relu, y))  # y is also a graph output
    assert [n.op for n in as_output.nodes] == ["matmul", "fused"]

    b = GraphBuilder()
    x, w = b.input(TensorType((4, 5), DType.float32)), b.input(TensorType((5, 6), DType.float32))
    y = b.apply("matmul", x, w)
    relu = b.apply("maximum", y, b.apply("constant", value=0.0, shape=(4, 6), dtype="f32"))
    total = b.apply("reduce_sum", y, axes=(0,))  # a second kernel reads y
    assert "matmul" in [n.op for n in PassManager(AFTER).run(b.output(relu, total)).nodes]

    b = GraphBuilder()
    x, w = b.input(TensorType((4, 4), DType.float32)), b.input(TensorType((4, 4), DType.float32))
    y = b.apply("matmul", x, w)
    transposed = b.apply("add", y, b.apply("permute", y, perm=(1, 0)))  # y read through two views
    assert "matmul" in [n.op for n in PassManager(AFTER).run(b.output(transposed)).nodes]

    b = GraphBuilder()
    x, w = b.input(TensorType((4, 5), DType.float32)), b.input(TensorType((5, 6), DType.float32))
    y = b.apply("matmul", x, w)
    positive = b.apply("gt", y, b.apply("constant", value=0.0, shape=(4, 6), dtype="f32"))  # bool results only
    assert "matmul" in [n.op for n in PassManager(AFTER).run(b.output(positive)).nodes]

    b = GraphBuilder()
    x, w = b.input(TensorType((4, 5), DType.float32)), b.input(TensorType((5, 6), DType.float32))
    flat = b.apply("reshape", b.apply("matmul", x, w), shape=(24,))  # another index space
    assert "matmul" in [n.op for n in PassManager(AFTER).run(b.output(b.apply("exp", flat))).nodes]


def test_two_contractions_into_one_kernel_fuse_one():
    b = GraphBuilder()
    x, w1, w2 = (b.input(TensorType(s, DType.float32)) for s in [(3, 5), (5, 4), (5, 4)])
    total = b.apply("add", b.apply("matmul", x, w1), b.apply("matmul", x, w2))
    graph = b.output(total)
    after = PassManager(AFTER).run(graph)
    assert [n.op for n in after.nodes] == ["matmul", "fused_matmul"]
    inputs = random_inputs(graph, 3)
    np.testing.assert_array_equal(run(after, inputs)[0], run(PassManager(BEFORE).run(graph), inputs)[0])
    np.testing.assert_allclose(compile_graph(after)(*inputs)[0], run(graph, inputs)[0], rtol=1e-5, atol=1e-5)


def test_bad_fused_node_is_rejected_by_the_verifier():
    text = """func @main(%0: f32[2,3], %1: f32[3,4], %2: f32[4]) {
  %3 = fused_matmul(%0, %1, %2) {views=[[0,1]]} : f32[2,4] region (%4: f32[], %5: f32[]) {
    %6 = add(%4, %5) : f32[]
    return %6
  }
  return %3
}"""
    with pytest.raises(ValueError, match="view 1"):
        parse_graph(text)
    with pytest.raises(ValueError, match="contracted dims"):
        parse_graph(text.replace("f32[3,4]", "f32[5,4]").replace("[[0,1]]", "[[0,0,1]]"))
    good = parse_graph(text.replace("[[0,1]]", "[[0,0,1]]"))
    assert print_graph(good).count("fused_matmul") == 1


def _traced_step(model: M.Module, x: np.ndarray, labels: np.ndarray):
    gm = GradManager().attach(model.parameters())
    opt = optim.SGD(model.parameters(), lr=0.1)

    def step(images, targets):
        with gm:
            loss = F.loss.cross_entropy(model(images), targets)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    traced = trace(step, symbolic=True)
    loss = traced(x, labels)
    return traced, float(loss.item())


class _ConvNet(M.Module):
    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(2, 4, 3)
        self.fc = M.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(F.flatten(F.relu(self.conv(x)), 1))


def _model(kind: str) -> M.Module:
    jg.random.seed(0)
    return M.Sequential(M.Linear(6, 8), M.ReLU(), M.Linear(8, 3)) if kind == "linear" else _ConvNet()


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_pass_fires_on_a_traced_training_step(kind):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6) if kind == "linear" else (3, 2, 6, 6)).astype(np.float32)
    labels = rng.integers(0, 3, len(x)).astype(np.int32)
    model = _model(kind)
    traced, loss = _traced_step(model, x, labels)
    text = traced.ir()
    fused_op = "fused_matmul" if kind == "linear" else "fused_conv2d"
    head = next(line for line in text.splitlines() if f"= {fused_op}(" in line)
    assert "region (" in head
    body = text.split(head, 1)[1].split("\n  }", 1)[0]
    assert "select(" in body and "add(" in body  # bias and relu inside the contraction's epilogue
    if kind == "linear":  # the backward's mask product and the SGD updates fuse into matmuls too
        assert text.count("fused_matmul(") >= 3

    eager = _model(kind)  # the same step, eagerly
    gm = GradManager().attach(eager.parameters())
    opt = optim.SGD(eager.parameters(), lr=0.1)
    with gm:
        eager_loss = F.loss.cross_entropy(eager(jg.tensor(x)), jg.tensor(labels))
        gm.backward(eager_loss)
    opt.step().clear_grad()
    assert loss == pytest.approx(float(eager_loss.item()), rel=1e-5)
    for got, want in zip(model.parameters(), eager.parameters()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("blocks", [1, 2])
def test_weight_update_fused_into_the_gradient_matmul_is_in_place_only_with_one_k_block(blocks):
    """w -= lr * x.T @ dy as one fused_matmul: the new w may go straight into w's buffer only when
    the GEMM never parks partial sums in its output (codegen.epilogue.stores_once)."""
    kc = blocking_for("float32").kc
    k = kc // 4 if blocks == 1 else kc + 44
    b = GraphBuilder("sgd")
    x, dy = b.input(TensorType((k, 24), DType.float32)), b.input(TensorType((k, 20), DType.float32))
    w = b.input(TensorType((24, 20), DType.float32))
    lr = b.apply("constant", value=0.5, shape=(24, 20), dtype="f32")
    b.add("assign", [w, b.apply("sub", w, b.apply("mul", lr, b.apply("matmul", x, dy, transpose_a=True)))])
    graph = PassManager(AFTER).run(b.output())
    assert [n.op for n in graph.nodes] == ["fused_matmul", "assign"]
    compiled = compile_graph(graph)
    assert len(compiled.plan.in_place) == (1 if blocks == 1 else 0)
    inputs = random_inputs(b.graph, 5)
    expected = inputs[2] - 0.5 * (inputs[0].astype(np.float64).T @ inputs[1])
    compiled(*inputs)
    np.testing.assert_allclose(inputs[2], expected, rtol=1e-4, atol=1e-4)
