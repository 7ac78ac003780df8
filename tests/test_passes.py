"""Graph passes: every pass and the default pipeline keep the interpreter's results.

Property tests run the reference interpreter on generated graphs before and
after a pass; targeted tests check that each rewrite fires. The last tests
run the fused nodes that fusion produces on the compiled back end.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from ir.graph import Graph, GraphBuilder, Value
from ir.interpret import run, strided_view
from ir.ops import REDUCTIONS, is_elementwise
from ir.parser import parse_graph
from ir.passes import PASSES, PassManager, _load_all  # noqa: F401  (registers every pass)
from ir.passes._pipeline import DEFAULT_PIPELINE, optimize
from ir.printer import print_graph
from ir.types import DType, TensorType
from ir.verify import verify
from test_ir import graphs, random_inputs

F32 = DType.float32


def _assert_same(expected: list[np.ndarray], got: list[np.ndarray], exact: bool) -> None:
    assert len(expected) == len(got)
    for e, g in zip(expected, got):
        assert e.shape == g.shape and e.dtype == g.dtype
        if exact or e.dtype.kind != "f":
            np.testing.assert_array_equal(g, e)
            if e.dtype.kind == "f":  # signed zeros too: 1/x tells them apart
                np.testing.assert_array_equal(np.signbit(g), np.signbit(e))
        else:
            scale = max(1.0, float(np.max(np.abs(e[np.isfinite(e)]), initial=0.0)))
            tol = 1e-5 if e.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol * scale, equal_nan=True)


def _has_reduction(graph: Graph) -> bool:
    return any(n.op in REDUCTIONS or n.op == "fused_reduce" for n in graph.nodes)


def _check_pass(graph: Graph, seed: int, names: list[str]) -> Graph:
    inputs = random_inputs(graph, seed)
    expected = run(graph, inputs)
    result = PassManager(names).run(graph)
    assert result.inputs == graph.inputs and len(result.outputs) == len(graph.outputs)
    # Only reductions reassociate (fused reductions sum in another order); constant
    # folding evaluates transcendental ops on scalars, whose NumPy loops may differ by an ulp.
    exact = not _has_reduction(graph) and "constant_fold" not in names and "fuse_elementwise" not in names
    _assert_same(expected, run(result, inputs), exact)
    return result


SEEDS = st.integers(0, 2**31)


@pytest.mark.parametrize("name", ["dce", "cse", "constant_fold", "simplify", "fuse_elementwise"])
@given(graph=graphs(), seed=SEEDS)
def test_pass_keeps_results(name, graph, seed):
    _check_pass(graph, seed, [name])


@given(graph=graphs(max_ops=12), seed=SEEDS)
def test_pipeline_keeps_results_and_leaves_only_kernels(graph, seed):
    result = _check_pass(graph, seed, DEFAULT_PIPELINE)
    for node in result.nodes:
        assert not is_elementwise(node.op) and node.op not in REDUCTIONS, node.op
    assert print_graph(parse_graph(print_graph(result))) == print_graph(result)


@given(graph=graphs(max_ops=6, fused=True), seed=SEEDS)
def test_passes_accept_graphs_with_fused_nodes(graph, seed):
    _check_pass(graph, seed, DEFAULT_PIPELINE)


# ---------------------------------------------------------------- targeted: simplify

def _ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def _builder(*shapes, dtype=F32):
    b = GraphBuilder()
    return b, [b.input(TensorType(s, dtype)) for s in shapes]


@pytest.mark.parametrize("op, position, value, dtype", [
    ("mul", 1, 1.0, F32), ("mul", 0, 1.0, F32), ("div", 1, 1.0, F32),
    ("add", 1, 0, DType.int32), ("add", 0, 0, DType.int64), ("sub", 1, 0.0, F32),
    ("add", 1, -0.0, F32), ("add", 0, -0.0, DType.float64), ("mul", 1, 1, DType.int32),
])
def test_simplify_identity_operands(op, position, value, dtype):
    b, (x,) = _builder((3, 4), dtype=dtype)
    c = b.apply("broadcast", b.apply("constant", value=value, shape=(4,), dtype=dtype.value), shape=(3, 4))
    y = b.apply(op, *((x, c) if position == 1 else (c, x)))
    out = PASSES["dce"](PASSES["simplify"](b.output(y)))
    assert out.outputs == [x] and out.nodes == []


@pytest.mark.parametrize("op, value", [("add", 0.0), ("sub", -0.0), ("mul", 0.0), ("mul", 2.0)])
def test_simplify_keeps_inexact_rewrites(op, value):
    """x + 0.0 is not x for x = -0.0, and x * 0 is not 0 for NaN and inf."""
    b, (x,) = _builder((3,))
    y = b.apply(op, x, b.apply("constant", value=value, shape=(3,), dtype="f32"))
    out = PASSES["simplify"](b.output(y))
    assert op in _ops(out)
    inputs = [np.array([-0.0, np.inf, np.nan], np.float32)]
    _assert_same(run(b.graph, inputs), run(out, inputs), exact=True)


def test_simplify_layout_and_unary_rules():
    b, (x,) = _builder((2, 3, 4))
    nn = b.apply("neg", b.apply("neg", x))
    rr = b.apply("reshape", b.apply("reshape", x, shape=(6, 4)), shape=(4, 6))
    same = b.apply("reshape", x, shape=(2, 3, 4))
    bb = b.apply("broadcast", b.apply("broadcast", x, shape=(1, 2, 3, 4)), shape=(5, 2, 3, 4))
    bsame = b.apply("broadcast", x, shape=(2, 3, 4))
    pp = b.apply("permute", b.apply("permute", x, perm=(1, 2, 0)), perm=(2, 0, 1))
    pq = b.apply("permute", b.apply("permute", x, perm=(1, 2, 0)), perm=(1, 0, 2))
    cast = b.apply("cast", x, dtype="f32")
    back = b.apply("reshape", b.apply("reshape", x, shape=(24,)), shape=(2, 3, 4))
    graph = b.output(nn, rr, same, bb, bsame, pp, pq, cast, back)
    out = PASSES["dce"](PASSES["simplify"](graph))
    producers = out.producers()
    assert out.outputs[0] is x and out.outputs[2] is x and out.outputs[4] is x
    assert out.outputs[5] is x and out.outputs[7] is x and out.outputs[8] is x
    assert producers[out.outputs[1]].operands == (x,) and producers[out.outputs[1]].attr("shape") == (4, 6)
    assert producers[out.outputs[3]].operands == (x,) and producers[out.outputs[3]].attr("shape") == (5, 2, 3, 4)
    composed = producers[out.outputs[6]]
    assert composed.operands == (x,) and composed.attr("perm") == (2, 1, 0)
    assert len(out.nodes) == 3
    inputs = random_inputs(graph, 0)
    _assert_same(run(graph, inputs), run(out, inputs), exact=True)


def test_simplify_cast_to_other_dtype_stays():
    b, (x,) = _builder((3,))
    out = PASSES["simplify"](b.output(b.apply("cast", x, dtype="f64")))
    assert _ops(out) == ["cast"]


# ---------------------------------------------------------------- targeted: cse, dce, folding

def test_cse_merges_duplicates_but_not_assign():
    b, (x, s) = _builder((4,), (4,))
    e1, e2 = b.apply("exp", x), b.apply("exp", x)
    a1, a2 = b.apply("add", e1, x), b.apply("add", e2, x)
    c1 = b.apply("constant", value=0.0, shape=(4,), dtype="f32")
    c2 = b.apply("constant", value=-0.0, shape=(4,), dtype="f32")
    w1, w2 = b.apply("assign", s, a1), b.apply("assign", s, a2)
    graph = b.output(a1, a2, c1, c2, w1, w2)
    out = PASSES["cse"](graph)
    assert out.outputs[0] is out.outputs[1]
    assert out.outputs[2] is not out.outputs[3]  # -0.0 and 0.0 are different constants
    assert _ops(out).count("exp") == 1 and _ops(out).count("add") == 1 and _ops(out).count("assign") == 2


def test_cse_compares_regions_by_text():
    graph = parse_graph("""func @main(%0: f32[3]) {
  %1 = fused(%0) {shape=[3], views=[[0,1]]} : f32[3] region (%2: f32[]) {
    %3 = exp(%2) : f32[]
    return %3
  }
  %4 = fused(%0) {shape=[3], views=[[0,1]]} : f32[3] region (%5: f32[]) {
    %6 = exp(%5) : f32[]
    return %6
  }
  %7 = fused(%0) {shape=[3], views=[[0,1]]} : f32[3] region (%8: f32[]) {
    %9 = log(%8) : f32[]
    return %9
  }
  return %1, %4, %7
}""")
    out = PASSES["cse"](graph)
    assert out.outputs[0] is out.outputs[1] is not out.outputs[2]
    assert len(out.nodes) == 2


def test_dce_removes_dead_code_keeps_assign():
    b, (x, s) = _builder((4,), (4,))
    dead = b.apply("log", b.apply("exp", x))
    live = b.apply("neg", x)
    b.apply("assign", s, b.apply("sqrt", x))
    out = PASSES["dce"](b.output(live))
    assert _ops(out) == ["neg", "sqrt", "assign"]
    assert dead not in {r for n in out.nodes for r in n.results}


def test_dce_cleans_regions():
    graph = parse_graph("""func @main(%0: f32[3]) {
  %1 = fused(%0) {shape=[3], views=[[0,1]]} : f32[3] region (%2: f32[]) {
    %3 = exp(%2) : f32[]
    %4 = neg(%2) : f32[]
    return %4
  }
  return %1
}""")
    out = PASSES["dce"](graph)
    assert [n.op for n in out.nodes[0].region.nodes] == ["neg"]


def test_constant_fold_folds_elementwise_and_layout():
    b, (x,) = _builder((2, 3))
    third = b.apply("div", b.apply("constant", value=1.0, shape=(3,), dtype="f32"),
                    b.apply("constant", value=3.0, shape=(3,), dtype="f32"))
    wide = b.apply("broadcast", b.apply("exp", third), shape=(2, 3))
    ints = b.apply("add", b.apply("constant", value=2**31 - 1, shape=(1,), dtype="i32"),
                   b.apply("constant", value=1, shape=(1,), dtype="i32"))
    floor = b.apply("div", b.apply("constant", value=-7, shape=(2,), dtype="i64"),
                    b.apply("constant", value=2, shape=(2,), dtype="i64"))
    graph = b.output(b.apply("mul", x, wide), ints, floor)
    out = PASSES["dce"](PASSES["constant_fold"](graph))
    assert sorted(_ops(out)) == ["constant", "constant", "constant", "mul"]
    producers = out.producers()
    folded = producers[producers[out.outputs[0]].operands[1]]
    assert folded.op == "constant" and folded.result.shape == (2, 3)
    assert folded.attr("value") == float(np.exp(np.float32(1) / np.float32(3)))  # float32 all the way
    assert producers[out.outputs[1]].attr("value") == -(2**31)  # int32 wraps
    assert producers[out.outputs[2]].attr("value") == -4  # integer division floors
    inputs = random_inputs(graph, 1)
    _assert_same(run(graph, inputs), run(out, inputs), exact=True)
    assert print_graph(parse_graph(print_graph(out))) == print_graph(out)


# ---------------------------------------------------------------- targeted: fusion

def _softmax_denominator() -> Graph:
    b, (x,) = _builder((5, 7))
    m = b.apply("reduce_max", x, axes=(1,))
    mb = b.apply("broadcast", b.apply("reshape", m, shape=(5, 1)), shape=(5, 7))
    return b.output(b.apply("reduce_sum", b.apply("exp", b.apply("sub", x, mb)), axes=(1,)))


def test_fusion_turns_sum_exp_into_one_fused_reduce():
    graph = _softmax_denominator()
    out = PASSES["fuse_elementwise"](graph)
    assert _ops(out) == ["fused_reduce", "fused_reduce"]
    denominator = out.nodes[1]
    assert [n.op for n in denominator.region.nodes] == ["sub", "exp"]
    assert denominator.attr("reduce") == "reduce_sum" and denominator.attr("axes") == (1,)
    assert denominator.attr("views") == ((0, 7, 1), (0, 1, 0))  # m: reshape then broadcast = stride 0
    inputs = random_inputs(graph, 2)
    _assert_same(run(graph, inputs), run(out, inputs), exact=False)
    assert print_graph(parse_graph(print_graph(out))) == print_graph(out)


def _six_op_chain() -> Graph:
    b, (x, bias) = _builder((4, 6), (6,))
    y = b.apply("add", x, b.apply("broadcast", bias, shape=(4, 6)))
    y = b.apply("mul", y, y)
    y = b.apply("tanh", y)
    y = b.apply("sub", y, x)
    y = b.apply("maximum", y, b.apply("constant", value=0.0, shape=(4, 6), dtype="f32"))
    y = b.apply("abs", y)
    return b.output(y)


def test_fusion_turns_six_op_chain_with_bias_into_one_fused_node():
    graph = _six_op_chain()
    out, manager = optimize(graph)
    assert _ops(out) == ["fused"]
    fused = out.nodes[0]
    assert fused.operands == tuple(graph.inputs)
    assert fused.attr("views") == ((0, 6, 1), (0, 0, 1))
    assert [n.op for n in fused.region.nodes] == ["add", "mul", "tanh", "sub", "constant", "maximum", "abs"]
    assert len(manager.stages) == 1 + len(DEFAULT_PIPELINE) and manager.stages["input"] is graph
    text = print_graph(out)
    assert print_graph(parse_graph(text)) == text
    inputs = random_inputs(graph, 3)
    _assert_same(run(graph, inputs), run(out, inputs), exact=True)


def test_fusion_composes_layout_chains_into_views():
    b, (x,) = _builder((4, 6))
    t = b.apply("permute", b.apply("reshape", x, shape=(2, 12)), perm=(1, 0))  # (12, 2), strides (1, 12)
    s = b.apply("slice", t, starts=(1, 0), stops=(12, 2), steps=(3, 1))  # (4, 2), offset 1, strides (3, 12)
    w = b.apply("broadcast", b.apply("reshape", s, shape=(4, 2, 1)), shape=(3, 4, 2, 5))
    flat = b.apply("reshape", s, shape=(8,))  # merges dims that are not contiguous: no view
    graph = b.output(b.apply("neg", w), b.apply("abs", flat))
    out = PASSES["fuse_elementwise"](graph)
    assert sorted(_ops(out)) == ["fused", "fused", "permute", "reshape", "reshape", "slice"]
    producers = out.producers()
    broadcast, flattened = producers[out.outputs[0]], producers[out.outputs[1]]
    assert broadcast.operands == (x,) and broadcast.attr("views") == ((1, 0, 3, 12, 0),)
    assert producers[flattened.operands[0]].op == "reshape" and flattened.attr("views") == ((0, 1),)
    inputs = random_inputs(graph, 4)
    _assert_same(run(graph, inputs), run(out, inputs), exact=True)


def test_fusion_keeps_signed_zero_constants_apart():
    b, (x,) = _builder((3,))
    zero = b.apply("constant", value=0.0, shape=(3,), dtype="f32")
    negative_zero = b.apply("constant", value=-0.0, shape=(3,), dtype="f32")
    y = b.apply("div", x, b.apply("select", b.apply("eq", x, zero), x, negative_zero))
    graph = b.output(y)
    out = PASSES["fuse_elementwise"](graph)
    assert [n.attr("value") for n in out.nodes[0].region.nodes if n.op == "constant"] == [0.0, -0.0]
    inputs = [np.array([1.0, -2.0, 0.0], np.float32)]
    _assert_same(run(graph, inputs), run(out, inputs), exact=True)


def test_fusion_keeps_multiple_results_and_order():
    b, (x, y) = _builder((3, 4), (3, 4))
    e = b.apply("exp", x)
    s = b.apply("reduce_sum", e, axes=(0,))  # e is used by the reduction and below
    f = b.apply("mul", e, y)
    g = b.apply("add", f, b.apply("broadcast", s, shape=(3, 4)))  # needs s: a second kernel
    graph = b.output(g, f)
    out = PASSES["fuse_elementwise"](graph)
    assert _ops(out) == ["fused", "fused_reduce", "fused"]
    assert len(out.nodes[0].results) == 2  # e (for the reduction) and f (a graph output)
    inputs = random_inputs(graph, 5)
    _assert_same(run(graph, inputs), run(out, inputs), exact=False)


def test_fusion_keeps_a_reduced_value_that_is_also_an_output():
    b, (x,) = _builder((3, 4))
    e = b.apply("exp", x)
    graph = b.output(b.apply("reduce_sum", e, axes=(0,)), e)
    out = PASSES["fuse_elementwise"](graph)
    assert _ops(out) == ["fused", "fused_reduce"]
    inputs = random_inputs(graph, 10)
    _assert_same(run(graph, inputs), run(out, inputs), exact=False)


def test_fusion_never_crosses_assign_or_non_elementwise():
    b, (x, state) = _builder((4,), (4,))
    w = b.apply("assign", state, b.apply("exp", x))
    y = b.apply("add", w, x)
    z = b.apply("neg", b.apply("concat", y, y, axis=0))
    graph = b.output(z)
    out = PASSES["fuse_elementwise"](graph)
    assert _ops(out) == ["fused", "assign", "fused", "concat", "fused"]


def test_fusion_reduces_constants_and_plain_inputs():
    b, (x,) = _builder((3, 0))
    c = b.apply("broadcast", b.apply("constant", value=2.0, shape=(1, 4), dtype="f32"), shape=(3, 4))
    graph = b.output(b.apply("reduce_sum", c, axes=(0, 1)), b.apply("reduce_sum", x, axes=(1,)))
    out = PASSES["fuse_elementwise"](graph)
    assert [n.op for n in out.nodes].count("fused_reduce") == 2
    inputs = random_inputs(graph, 6)
    _assert_same(run(graph, inputs), run(out, inputs), exact=True)


# ---------------------------------------------------------------- the back end runs fused graphs

def _run_on_back_end(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Execute `graph`: fused nodes on compiled kernels, anything else with the interpreter."""
    from ir.interpret import evaluate_node
    from jitgine.core.eager import run_fused

    env: dict[Value, np.ndarray] = dict(zip(graph.inputs, inputs))
    for node in graph.nodes:
        args = [env[v] for v in node.operands]
        if node.op not in ("fused", "fused_reduce"):
            env.update(zip(node.results, evaluate_node(node, args)))
            continue
        shape = node.attr("shape")
        views = [strided_view(a, node.attr("views")[i], shape) for i, a in enumerate(args)]
        outs = [np.empty(r.shape, np.dtype(a.dtype)) for r, a in zip(node.results, evaluate_node(node, args))]
        reduce = node.attr("reduce")
        run_fused(node.region, print_graph(node.region), outs, views, reduce, node.attr("axes", ()))
        env.update(zip(node.results, outs))
    return [env[v] for v in graph.outputs]


def _needs_vmath(graph: Graph) -> bool:
    transcendental = {"exp", "expm1", "log", "log1p", "sqrt", "rsqrt", "tanh", "logistic", "sin", "cos", "erf", "pow"}
    return any(n.op in transcendental for n in graph.walk())


def _back_end_case(graph: Graph, seed: int) -> None:
    if _needs_vmath(graph):
        pytest.importorskip("codegen.vmath", reason="the back end's vector math is not in this tree yet")
    fused, _ = optimize(graph)
    inputs = random_inputs(graph, seed)
    _assert_same(run(graph, inputs), _run_on_back_end(fused, inputs), exact=False)


def test_back_end_runs_fused_kernels_without_transcendentals():
    b, (x, bias, k) = _builder((4, 6), (6,), (6, 4))
    y = b.apply("add", x, b.apply("broadcast", bias, shape=(4, 6)))
    y = b.apply("mul", y, b.apply("permute", k, perm=(1, 0)))  # a transposed operand
    y = b.apply("maximum", y, b.apply("constant", value=0.0, shape=(4, 6), dtype="f32"))
    s = b.apply("reduce_sum", b.apply("mul", y, y), axes=(1,))
    sliced = b.apply("slice", x, starts=(1, 0), stops=(4, 6), steps=(2, 3))
    i = b.apply("cast", b.apply("sub", sliced, b.apply("constant", value=0.5, shape=(2, 2), dtype="f32")),
                dtype="i32")
    m = b.apply("reduce_max", b.apply("cast", x, dtype="f64"), axes=(0,))
    _back_end_case(b.output(y, s, i, m), 7)


def test_back_end_runs_softmax_denominator_and_six_op_chain():
    _back_end_case(_softmax_denominator(), 8)
    _back_end_case(_six_op_chain(), 9)


@given(graph=graphs(max_ops=6), seed=SEEDS)
def test_back_end_runs_generated_fused_graphs(graph, seed):
    # NaN and out-of-range float -> int casts differ: NumPy gives INT_MIN, the kernels saturate.
    assume(not any(n.op == "cast" and n.operands[0].dtype.is_float and not n.result.dtype.is_float
                   for n in graph.nodes))
    if _needs_vmath(graph):
        pytest.importorskip("codegen.vmath", reason="the back end's vector math is not in this tree yet")
    fused, _ = optimize(graph)
    inputs = random_inputs(graph, seed)
    _assert_same(run(fused, inputs), _run_on_back_end(fused, inputs), exact=False)
