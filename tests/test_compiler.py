"""Whole-graph compilation: a compiled graph computes what the interpreter computes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codegen.compiler import compile_graph
from ir import interpret
from ir.graph import GraphBuilder
from ir.types import DType, TensorType

F32 = DType.float32


def _check(graph, *inputs, rtol=1e-5, atol=1e-5):
    compiled = compile_graph(graph)
    got = compiled(*inputs)
    want = interpret.run(graph, list(inputs))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return compiled


def _fused_region(n_inputs: int):
    builder = GraphBuilder("region")
    params = [builder.input(TensorType((), F32)) for _ in range(n_inputs)]
    value = params[0]
    for p in params[1:]:
        value = builder.apply("mul", builder.apply("add", value, p), p)
    return builder.output(value)


@given(rows=st.integers(0, 9), cols=st.integers(1, 37))
def test_fused_with_broadcast_view_and_reduction(rows, cols):
    g = GraphBuilder("fused")
    x = g.input(TensorType((rows, cols), F32))
    b = g.input(TensorType((cols,), F32))
    y = g.add("fused", [x, b], region=_fused_region(2), shape=(rows, cols),
              views=((0, cols, 1), (0, 0, 1))).result
    identity = GraphBuilder("region")
    s = g.add("fused_reduce", [y], region=identity.output(identity.input(TensorType((), F32))),
              shape=(rows, cols), views=((0, cols, 1),), reduce="reduce_max" if rows else "reduce_sum",
              axes=(1,) if rows else (0,)).result
    graph = g.output(y, s)
    rng = np.random.default_rng(rows * 100 + cols)
    _check(graph, rng.standard_normal((rows, cols), dtype=np.float32),
           rng.standard_normal(cols, dtype=np.float32))


def test_layout_ops_copy_and_alias():
    g = GraphBuilder("layout")
    x = g.input(TensorType((4, 6), F32))
    p = g.apply("permute", x, perm=(1, 0))
    s = g.apply("slice", x, starts=(1, 0), stops=(4, 6), steps=(2, 3))
    r = g.apply("reshape", x, shape=(3, 8))
    b = g.apply("broadcast", g.apply("reshape", x, shape=(1, 4, 6)), shape=(2, 4, 6))
    pad = g.apply("pad", s, low=(1, 2), high=(0, 1), value=-1.0)
    cat = g.apply("concat", x, x, axis=1)
    graph = g.output(p, s, r, b, pad, cat, x)
    _check(graph, np.arange(24, dtype=np.float32).reshape(4, 6))


def test_argmax_iota_constant_and_int_dtypes():
    g = GraphBuilder("misc")
    x = g.input(TensorType((5, 7), F32))
    a = g.apply("argmax", x, axis=1)
    i = g.apply("iota", shape=(3, 4), axis=1, dtype="int64")
    c = g.apply("constant", value=3, shape=(2,), dtype="int32")
    graph = g.output(a, i, c)
    _check(graph, np.random.default_rng(0).standard_normal((5, 7), dtype=np.float32))


@pytest.mark.parametrize("transpose_a,transpose_b", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_lowering(transpose_a, transpose_b):
    rng = np.random.default_rng(1)
    m, k, n = 13, 29, 7
    a = rng.standard_normal((k, m) if transpose_a else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if transpose_b else (k, n), dtype=np.float32)
    g = GraphBuilder("mm")
    va, vb = g.input(TensorType(a.shape, F32)), g.input(TensorType(b.shape, F32))
    graph = g.output(g.apply("matmul", va, vb, transpose_a=transpose_a, transpose_b=transpose_b))
    _check(graph, a, b, rtol=1e-4, atol=1e-4)


def test_assign_updates_state_in_place():
    g = GraphBuilder("step")
    state = g.input(TensorType((3,), F32))
    region = GraphBuilder("region")
    x = region.input(TensorType((), F32))
    double = region.output(region.apply("add", x, x))
    new = g.add("fused", [state], region=double, shape=(3,), views=((0, 1),)).result
    g.add("assign", [state, new])
    compiled = compile_graph(g.output(new))
    array = np.array([1.0, 2.0, 3.0], np.float32)
    (out,) = compiled(array)
    (out2,) = compiled(array)
    np.testing.assert_array_equal(out, [2, 4, 6])
    np.testing.assert_array_equal(out2, [4, 8, 12])
    np.testing.assert_array_equal(array, [4, 8, 12])
    assert compiled.calls == 2


def test_wrong_input_is_a_clear_error():
    g = GraphBuilder("f")
    x = g.input(TensorType((2,), F32))
    compiled = compile_graph(g.output(x))
    with pytest.raises(ValueError, match=r"needs float32\[2\]"):
        compiled(np.zeros(3, np.float32))
