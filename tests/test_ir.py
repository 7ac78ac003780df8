"""The IR core: text round trip on generated graphs, verifier and op-check errors.

`graphs()` (random chains of elementwise, layout, reduction and fused ops over
shapes with 0 and 1 dims, every dtype where the op allows it) and
`random_inputs()` are shared with tests/test_passes.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ir.graph import Graph, GraphBuilder, Node, Value, freeze_attrs
from ir.interpret import NP_DTYPES
from ir.ops import ARITHMETIC, COMPARISONS, FLOAT_UNARY, LOGICAL, NUMERIC_UNARY, REDUCTIONS, OpError, infer
from ir.parser import ParseError, parse_graph
from ir.printer import print_graph
from ir.types import DType, TensorType
from ir.verify import VerifyError, verify

DIMS = st.sampled_from([0, 1, 1, 2, 3, 5])
SHAPES = st.lists(DIMS, min_size=0, max_size=3).map(tuple)
# ir.interpret returns rank-0 results as shape (1,) (np.ascontiguousarray makes ndim >= 1), so
# graphs that the interpreter must run keep every value at rank >= 1.
NONSCALAR_SHAPES = st.lists(DIMS, min_size=1, max_size=3).map(tuple)
DTYPES = list(DType)
CONSTANTS = {
    "float": [0.0, -0.0, 1.0, 2.5, -1.0, 0.5],
    "int": [0, 1, 2, -3],
    "bool": [True, False],
}
ELEMENTWISE_KINDS = ["unary", "binary", "binary", "compare", "select", "cast"]
KINDS = ELEMENTWISE_KINDS + ["reshape", "broadcast", "permute", "slice", "reduce", "constant"]


def _family(dtype: DType) -> str:
    return "float" if dtype.is_float else "int" if dtype.is_int else "bool"


def _constant(b: GraphBuilder, draw, shape, dtype: DType) -> Value:
    value = draw(st.sampled_from(CONSTANTS[_family(dtype)]))
    return b.apply("constant", value=value, shape=shape, dtype=dtype.value)


def _partner(b: GraphBuilder, draw, pool: list[Value], x: Value) -> Value:
    """A value of x's type: another such value, a splat, or a broadcast of a smaller one."""
    same = [v for v in pool if v.type == x.type and v is not x]
    smaller = [v for v in pool if v.dtype == x.dtype and v.shape != x.shape and v.type.rank <= x.type.rank
               and all(d in (1, e) for d, e in zip(v.shape[::-1], x.shape[::-1]))]
    choice = draw(st.sampled_from(["same", "constant", "broadcast", "self"]))
    if choice == "same" and same:
        return draw(st.sampled_from(same))
    if choice == "broadcast" and smaller:
        return b.apply("broadcast", draw(st.sampled_from(smaller)), shape=x.shape)
    if choice == "constant":
        return _constant(b, draw, x.shape, x.dtype)
    return x


def _reshape_target(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    size = int(np.prod(shape))
    options = [(size,), (1, *shape), tuple(reversed(shape)), shape]
    if len(shape) >= 2:
        options.append((shape[0] * shape[1], *shape[2:]))
    if size and size % 2 == 0:
        options.append((2, size // 2))
    return draw(st.sampled_from(options))


def _step(b: GraphBuilder, draw, pool: list[Value], x: Value, kinds: list[str] = KINDS,
          rank0: bool = True) -> Value | None:
    kind = draw(st.sampled_from(kinds))
    family = _family(x.dtype)
    if kind == "unary":
        ops = {"float": FLOAT_UNARY + NUMERIC_UNARY, "int": NUMERIC_UNARY, "bool": ("logical_not",)}[family]
        return b.apply(draw(st.sampled_from(ops)), x)
    if kind == "binary":
        ops = {"float": ARITHMETIC + ("pow",), "int": ARITHMETIC, "bool": LOGICAL}[family]
        y = _partner(b, draw, pool, x)
        a, c = draw(st.sampled_from([(x, y), (y, x)]))
        return b.apply(draw(st.sampled_from(ops)), a, c)
    if kind == "compare":
        return b.apply(draw(st.sampled_from(COMPARISONS)), x, _partner(b, draw, pool, x))
    if kind == "select":
        cond = b.apply(draw(st.sampled_from(COMPARISONS)), x, _partner(b, draw, pool, x))
        return b.apply("select", cond, x, _partner(b, draw, pool, x))
    if kind == "cast":
        return b.apply("cast", x, dtype=draw(st.sampled_from(DTYPES)).value)
    if kind == "reshape":
        return b.apply("reshape", x, shape=_reshape_target(draw, x.shape))
    if kind == "broadcast":
        expanded = tuple(draw(st.sampled_from([1, 2, 3])) if d == 1 else d for d in x.shape)
        lead = draw(st.lists(st.sampled_from([1, 2, 3]), max_size=1))
        return b.apply("broadcast", x, shape=(*lead, *expanded))
    if kind == "permute":
        return b.apply("permute", x, perm=tuple(draw(st.permutations(range(x.type.rank)))))
    if kind == "slice":
        starts, stops, steps = [], [], []
        for d in x.shape:
            start = draw(st.integers(0, d))
            starts.append(start)
            stops.append(draw(st.integers(start, d)))
            steps.append(draw(st.integers(1, 3)))
        return b.apply("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    if kind == "reduce":
        op = draw(st.sampled_from(REDUCTIONS))
        if x.dtype.is_bool or x.type.rank == 0:
            return None
        allowed = [a for a, d in enumerate(x.shape) if op == "reduce_sum" or d > 0]
        axes = tuple(sorted(draw(st.sets(st.sampled_from(allowed), min_size=1)))) if allowed else None
        if not axes or (not rank0 and len(axes) == x.type.rank):
            return None
        return b.apply(op, x, axes=axes)
    return _constant(b, draw, draw(SHAPES if rank0 else NONSCALAR_SHAPES), draw(st.sampled_from(DTYPES)))


def _fused(b: GraphBuilder, draw, pool: list[Value], reduce: bool, rank0: bool) -> Value | None:
    """A fused node over the shape of a pool value: contiguous or splat (stride 0) views."""
    shape = draw(st.sampled_from(pool)).shape
    chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
    operands, views = [], []
    for v in chosen:
        if v.shape == shape:
            operands.append(v)
            views.append((0, *(np.cumprod((1, *shape[::-1]))[:-1][::-1].tolist() if shape else ())))
        elif v.type.size:
            operands.append(v)
            views.append((0,) + (0,) * len(shape))
    if not operands:
        return None
    rb = GraphBuilder("region")
    params = [rb.input(TensorType((), v.dtype)) for v in operands]
    scalars = list(params)
    for _ in range(draw(st.integers(0, 3))):
        x = draw(st.sampled_from(scalars))
        scalars.append(_step(rb, draw, scalars, x, ELEMENTWISE_KINDS))
    region_out = draw(st.sampled_from(scalars))
    region = rb.output(region_out)
    attrs = {"shape": shape, "views": tuple(views)}
    if reduce:
        if len(shape) <= (0 if rank0 else 1) or region_out.dtype.is_bool or not all(shape):
            return None
        return b.add("fused_reduce", operands, region, reduce=draw(st.sampled_from(REDUCTIONS)),
                     axes=(draw(st.integers(0, len(shape) - 1)),), **attrs).result
    return b.add("fused", operands, region, **attrs).results[0]


@st.composite
def graphs(draw, max_ops: int = 8, fused: bool = False, rank0: bool = True) -> Graph:
    """A random verified graph with 1-3 inputs and 1-3 outputs (no rank-0 values unless rank0)."""
    b = GraphBuilder()
    shapes = SHAPES if rank0 else NONSCALAR_SHAPES
    base = draw(shapes)
    pool = [b.input(TensorType(base if i == 0 or draw(st.booleans()) else draw(shapes),
                               draw(st.sampled_from(DTYPES)))) for i in range(draw(st.integers(1, 3)))]
    for _ in range(draw(st.integers(1, max_ops))):
        if fused and draw(st.integers(0, 3)) == 0:
            value = _fused(b, draw, pool, draw(st.booleans()), rank0)
        else:
            value = _step(b, draw, pool, draw(st.sampled_from(pool)), rank0=rank0)
        if value is not None:
            pool.append(value)
    extra = draw(st.lists(st.sampled_from(pool), max_size=2))
    return verify(b.output(pool[-1], *extra))


def random_inputs(graph: Graph, seed: int) -> list[np.ndarray]:
    """Inputs with zeros of both signs, ones and small values, in each input's dtype."""
    rng = np.random.default_rng(seed)
    arrays = []
    for v in graph.inputs:
        if v.dtype.is_float:
            data = rng.uniform(-3, 3, v.shape)
            data = np.where(rng.random(v.shape) < 0.15, rng.choice([0.0, -0.0, 1.0], v.shape), data)
        elif v.dtype.is_int:
            data = rng.integers(-5, 6, v.shape)
        else:
            data = rng.random(v.shape) < 0.5
        arrays.append(np.asarray(data).astype(NP_DTYPES[v.dtype.value]))
    return arrays


# ---------------------------------------------------------------- round trip

@given(graphs(fused=True))
def test_print_parse_print_round_trip(graph):
    text = print_graph(graph)
    again = parse_graph(text)
    assert print_graph(again) == text
    assert [v.type for v in again.inputs] == [v.type for v in graph.inputs]
    assert [v.type for v in again.outputs] == [v.type for v in graph.outputs]


def test_round_trip_keeps_special_float_attributes():
    b = GraphBuilder()
    x = b.input(TensorType((2,), DType.float32))
    values = [b.apply("constant", value=v, shape=(2,), dtype="f32")
              for v in (float("nan"), float("inf"), float("-inf"), -0.0, 1e-30, 0.1)]
    graph = b.output(x, *values)
    text = print_graph(graph)
    assert print_graph(parse_graph(text)) == text
    assert "-inf" in text and "nan" in text and "-0.0" in text


# ---------------------------------------------------------------- verifier

def _simple() -> tuple[Graph, Value]:
    b = GraphBuilder()
    x = b.input(TensorType((2, 3), DType.float32))
    y = b.apply("exp", x)
    return b.output(b.apply("add", y, x)), x


def test_verifier_rejects_use_before_definition():
    graph, _ = _simple()
    swapped = Graph(graph.inputs, graph.nodes[::-1], graph.outputs)
    with pytest.raises(VerifyError, match=r"node 0 \(add\) uses %\d+, which is not defined before it"):
        verify(swapped)


def test_verifier_rejects_wrong_declared_type():
    graph, x = _simple()
    node = graph.nodes[0]
    bad = Node(node.op, node.operands, node.attrs, (Value(TensorType((3, 2), DType.float32)),))
    with pytest.raises(VerifyError, match=r"exp\) declares result types \['f32\[3,2\]'\] but infers \['f32\[2,3\]'\]"):
        verify(Graph(graph.inputs, [bad], [bad.result]))


def test_verifier_rejects_bad_attributes():
    graph, x = _simple()
    wrong = Node("reshape", (x,), freeze_attrs({"shape": (4,)}), (Value(TensorType((4,), DType.float32)),))
    with pytest.raises(VerifyError, match=r"reshape\(f32\[2,3\]\): cannot reshape 6 elements into shape \(4,\)"):
        verify(Graph(graph.inputs, [wrong], [wrong.result]))
    missing = Node("reshape", (x,), (), (Value(TensorType((6,), DType.float32)),))
    with pytest.raises(VerifyError, match=r"reshape: missing attribute\(s\) \['shape'\]"):
        verify(Graph(graph.inputs, [missing], [missing.result]))


def test_verifier_rejects_undefined_output_and_double_definition():
    graph, x = _simple()
    with pytest.raises(VerifyError, match="output %.* is not defined"):
        verify(Graph(graph.inputs, [], graph.outputs))
    with pytest.raises(VerifyError, match="defined twice"):
        verify(Graph(graph.inputs, [graph.nodes[0], graph.nodes[0]], graph.outputs))


def test_verifier_rejects_region_reaching_outside():
    b = GraphBuilder()
    x = b.input(TensorType((3,), DType.float32))
    rb = GraphBuilder("region")
    p = rb.input(TensorType((), DType.float32))
    outer = Value(TensorType((), DType.float32))
    leak = Node("add", (p, outer), (), (Value(TensorType((), DType.float32)),))
    region = Graph([p], [leak], [leak.result], "region")
    fused = Node("fused", (x,), freeze_attrs({"shape": (3,), "views": ((0, 1),)}),
                 (Value(TensorType((3,), DType.float32)),), region)
    with pytest.raises(VerifyError, match=r"region: node 0 \(add\) uses"):
        verify(Graph([x], [fused], [fused.result]))


def test_parser_reports_bad_text():
    graph, _ = _simple()
    text = print_graph(graph)
    with pytest.raises(ParseError, match="the text says result types"):
        parse_graph(text.replace("exp(%0) : f32[2,3]", "exp(%0) : f32[3,2]"))
    with pytest.raises(ParseError, match="used before it is defined"):
        parse_graph(text.replace("add(%1, %0)", "add(%9, %0)"))


def test_fused_views_are_checked():
    b = GraphBuilder()
    x = b.input(TensorType((3,), DType.float32))
    rb = GraphBuilder("region")
    region = rb.output(rb.input(TensorType((), DType.float32)))
    with pytest.raises(OpError, match=r"fused\(f32\[3\]\): view 0 \(0, 2\) reads outside its operand of 3 elements"):
        b.add("fused", [x], region, shape=(3,), views=((0, 2),))


# ---------------------------------------------------------------- op checks

def _t(shape, dtype=DType.float32) -> TensorType:
    return TensorType(shape, dtype)


def test_infer_rejects_shape_mismatch_naming_op_and_shapes():
    with pytest.raises(OpError, match=r"add\(f32\[2,3\], f32\[3\]\): operands must have one shape"):
        infer("add", [_t((2, 3)), _t((3,))], {})
    with pytest.raises(OpError, match=r"select\(bool\[2\], f32\[2\], f32\[3\]\)"):
        infer("select", [_t((2,), DType.bool), _t((2,)), _t((3,))], {})
    with pytest.raises(OpError, match=r"broadcast\(f32\[2,3\]\): cannot broadcast to shape \(3, 3\)"):
        infer("broadcast", [_t((2, 3))], {"shape": (3, 3)})


def test_infer_rejects_bad_dtypes():
    with pytest.raises(OpError, match=r"exp\(i32\[4\]\): needs a float operand"):
        infer("exp", [_t((4,), DType.int32)], {})
    with pytest.raises(OpError, match=r"add\(f32\[4\], f64\[4\]\): operands must have one dtype"):
        infer("add", [_t((4,)), _t((4,), DType.float64)], {})
    with pytest.raises(OpError, match=r"reduce_sum\(bool\[4\]\): needs a numeric operand"):
        infer("reduce_sum", [_t((4,), DType.bool)], {"axes": (0,)})


def test_infer_rejects_bad_axes():
    with pytest.raises(OpError, match=r"reduce_sum\(f32\[2,3\]\): axes \(2,\) must be sorted, unique and in \[0, 2\)"):
        infer("reduce_sum", [_t((2, 3))], {"axes": (2,)})
    with pytest.raises(OpError, match=r"reduce_max\(f32\[2,0\]\): cannot reduce an empty axis"):
        infer("reduce_max", [_t((2, 0))], {"axes": (1,)})
    with pytest.raises(OpError, match=r"permute\(f32\[2,3\]\): perm \(0, 0\) is not a permutation"):
        infer("permute", [_t((2, 3))], {"perm": (0, 0)})


@given(SHAPES, SHAPES)
def test_elementwise_infer_accepts_exactly_equal_shapes(a, b):
    if a == b:
        assert infer("mul", [_t(a), _t(b)], {}) == [_t(a)]
    else:
        with pytest.raises(OpError, match=rf"mul\({_t(a)}, {_t(b)}\)".replace("[", r"\[").replace("]", r"\]")):
            infer("mul", [_t(a), _t(b)], {})


def test_interpreter_keeps_rank0_results():
    from ir.interpret import run

    b = GraphBuilder()
    x = b.input(TensorType((), DType.float32))
    graph = b.output(b.apply("broadcast", b.apply("exp", x), shape=()))
    assert run(graph, [np.float32(1)])[0].shape == ()
