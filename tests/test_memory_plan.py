"""Memory planning (codegen/memory.py): buffers never clash, planned graphs compute what the
interpreter computes, state updates happen in place where safe, and the arena beats the naive sum.

The clash oracle replays a plan on shadow memory: every node checks that the 64-byte chunks it
reads still hold the values it needs, then marks the chunks it writes; the copies after the last
node move contents; at the end every output slot and every assigned state must hold its value.
It knows only the IR's meaning (a reshape or an assign result has its operand's contents), not
how the planner computes liveness, so a buffer reused too early fails it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.compiler import compile_graph
from codegen.memory import ALIGN, Home, MemoryPlan, overlapping, plan_memory
from ir.graph import Graph, GraphBuilder, Value
from ir.interpret import run
from ir.passes._pipeline import optimize
from ir.types import DType, TensorType
from ir.verify import verify
from test_ir import graphs, random_inputs
from test_passes import _assert_same
from test_trace import _sgd, mlp_training_step


@st.composite
def stateful_graphs(draw) -> Graph:
    """A random graph whose inputs are partly state: each gets one assign, of an existing value of
    its type (another state: swaps) or of an optimizer-like update that reads the state itself."""
    graph = draw(graphs(fused=True, max_ops=6))
    builder = GraphBuilder(graph.name)
    builder.graph = graph
    pool = list(graph.inputs) + [r for n in graph.nodes for r in n.results]
    states = draw(st.lists(st.sampled_from(graph.inputs), unique_by=lambda v: v.id, max_size=3))
    updates = []
    for state in states:
        value = draw(st.sampled_from([v for v in pool if v.type == state.type]))
        if state.dtype.is_float and draw(st.booleans()):
            half = builder.apply("constant", value=0.5, shape=state.shape, dtype=state.dtype.value)
            value = builder.apply("sub", state, builder.apply("mul", value, half))
        updates.append((state, value))
    for state, value in updates:
        builder.add("assign", [state, value])
    return verify(graph)


def _content(graph: Graph) -> dict[Value, Value]:
    """Value -> the value whose contents it has (reshape and assign results have their operand's)."""
    content = {v: v for v in graph.inputs}
    for node in graph.nodes:
        for r in node.results:
            content[r] = r
        if node.op == "reshape":
            content[node.result] = content[node.operands[0]]
        elif node.op == "assign":
            content[node.result] = content[node.operands[1]]
    return content


def _chunks(home: Home, type: TensorType) -> list[tuple]:
    if home.kind != "arena":
        return [(home.kind, home.index)]
    return [("arena", home.index + i) for i in range(0, max(ALIGN, type.nbytes), ALIGN)]


def _replay(graph: Graph, plan: MemoryPlan) -> None:
    """Shadow-memory check of a plan (see the module doc)."""
    content = _content(graph)
    memory: dict[tuple, Value] = {}

    def write(home: Home, type: TensorType, value: Value) -> None:
        for chunk in _chunks(home, type):
            memory[chunk] = value

    def check(value: Value, when: str) -> None:
        held = {memory.get(c) for c in _chunks(plan.homes[value], value.type)}
        assert held == {content[value]}, f"%{value.id} clobbered {when}: its buffer holds {held}"

    for value in graph.inputs:
        write(plan.homes[value], value.type, value)
    for value in plan.constants:
        write(plan.homes[value], value.type, value)
    for t, node in enumerate(graph.nodes):
        if node.op == "iota":
            continue
        reads = node.operands[1:] if node.op == "assign" else node.operands
        for operand in reads:
            check(operand, f"before node {t} ({node.op}) reads it")
        if node not in plan.views:
            for r in node.results:
                write(plan.homes[r], r.type, content[r])
    for copy in plan.end_copies:
        sources = {memory.get(c) for c in _chunks(copy.source, copy.type)}
        assert len(sources) == 1, f"copy source {copy.source} holds a mix of values {sources}"
        write(copy.target, copy.type, sources.pop())
    for i, value in enumerate(graph.outputs):
        assert memory[("output", i)] is content[value], f"output {i} does not hold %{value.id}"
    for node in graph.nodes:
        if node.op == "assign":
            state, value = node.operands
            assert memory[("input", graph.inputs.index(state))] is content[value], f"state %{state.id} not updated"


@given(stateful_graphs())
@settings(max_examples=150)
def test_plan_never_clobbers_a_live_buffer(graph):
    for candidate in (graph, optimize(graph)[0]):
        plan = plan_memory(candidate)
        assert overlapping(plan) == []
        assert all(i.offset % ALIGN == 0 and i.size % ALIGN == 0 for i in plan.intervals)
        assert plan.arena_bytes <= plan.naive_bytes
        _replay(candidate, plan)


def _expected(graph: Graph, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """The interpreter's outputs, and each assigned input's value after the step."""
    assigns = [n for n in graph.nodes if n.op == "assign"]
    values = run(Graph(graph.inputs, graph.nodes, graph.outputs + [n.operands[1] for n in assigns]), inputs)
    states = {graph.inputs.index(n.operands[0]): v for n, v in zip(assigns, values[len(graph.outputs):])}
    return values[:len(graph.outputs)], states


@given(stateful_graphs(), st.integers(0, 2**31))
@settings(max_examples=15)
def test_planned_graph_computes_what_the_interpreter_computes(graph, seed):
    inputs = random_inputs(graph, seed)
    outputs, states = _expected(graph, inputs)
    optimized = optimize(graph)[0]
    arrays = [a.copy() for a in inputs]
    got = compile_graph(optimized)(*arrays)
    _assert_same(outputs, got, exact=False)
    _assert_same([states[i] for i in sorted(states)], [arrays[i] for i in sorted(states)], exact=False)


def _update_graph(n: int, reads_state_late: bool) -> Graph:
    """w <- w - 0.1 * g; optionally returning a value that reads the old w after the update."""
    b = GraphBuilder("update")
    w, g = b.input(TensorType((n,), DType.float32)), b.input(TensorType((n,), DType.float32))
    lr = b.apply("constant", value=0.1, shape=(n,), dtype="f32")
    new = b.apply("sub", w, b.apply("mul", lr, g))
    outputs = [b.apply("reduce_sum", b.apply("mul", new, w), axes=(0,))] if reads_state_late else []
    b.add("assign", [w, new])
    return optimize(b.output(*outputs))[0]


def test_update_reading_the_state_at_the_same_element_is_in_place():
    graph = _update_graph(37, reads_state_late=False)
    compiled = compile_graph(graph)
    assert len(compiled.plan.in_place) == 1 and compiled.plan.end_copies == []
    w, g = np.arange(37, dtype=np.float32), np.ones(37, np.float32)
    compiled(w, g)
    np.testing.assert_allclose(w, np.arange(37) - 0.1, rtol=1e-6)


def test_state_read_after_its_update_keeps_the_copy():
    """sum(new * w) needs the old w after new is computed, in a reduction (another element order)."""
    graph = _update_graph(37, reads_state_late=True)
    compiled = compile_graph(graph)
    w, g = np.arange(37, dtype=np.float32), np.ones(37, np.float32)
    old = w.copy()
    (total,) = compiled(w, g)
    np.testing.assert_allclose(total, np.sum((old - 0.1) * old), rtol=1e-5)
    np.testing.assert_allclose(w, old - 0.1, rtol=1e-6)


def test_swapping_two_states_is_staged():
    b = GraphBuilder("swap")
    x, y = b.input(TensorType((5,), DType.float32)), b.input(TensorType((5,), DType.float32))
    b.add("assign", [x, y])
    b.add("assign", [y, x])
    graph = b.output()
    plan = plan_memory(graph)
    assert len(plan.end_copies) == 3  # x (read after the first copy overwrites it) staged, then both copies
    x0, y0 = np.zeros(5, np.float32), np.ones(5, np.float32)
    compile_graph(graph)(x0, y0)
    np.testing.assert_array_equal(x0, 1)
    np.testing.assert_array_equal(y0, 0)


def test_arena_is_smaller_than_the_naive_sum_on_an_mlp_training_step():
    _, _, step, *_ = mlp_training_step(_sgd)  # the step test_trace runs: compiled once per session
    step(np.ones((5, 8), np.float32), np.zeros(5, np.int32))
    compiled = step.last.compiled
    assert compiled.arena_bytes < 0.75 * compiled.naive_bytes, compiled.plan.summary()
    assert len(compiled.plan.in_place) >= 6, compiled.plan.summary()  # of 4 params + 4 momentum slots


def test_state_inputs_must_be_writable_and_unshared():
    graph = _update_graph(6, reads_state_late=False)
    compiled = compile_graph(graph)
    assert compiled.state_inputs == [0]
    w = np.zeros(6, np.float32)
    with pytest.raises(ValueError, match="shares memory with input"):
        compiled(w, w)
    with pytest.raises(ValueError, match="C-contiguous, writable"):
        compiled(np.zeros(12, np.float32)[::2], np.ones(6, np.float32))
