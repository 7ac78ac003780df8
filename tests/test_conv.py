"""conv2d and pooling: eager kernels and gradients against the float64 interpreter,
finite differences through GradManager, compiled graphs, thread-count independence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jitgine as jg
import jitgine.functional as F
from ir.graph import GraphBuilder
from ir.interpret import run
from ir.ops import OpError
from ir.types import DType, TensorType
from jitgine.autodiff import GradManager
from jitgine.core.dispatch import apply1


def reference(op, arrays, **attrs):
    builder = GraphBuilder("ref")
    ins = [builder.input(TensorType(a.shape, DType.float64)) for a in arrays]
    graph = builder.output(builder.add(op, ins, **attrs).result)
    return run(graph, [a.astype(np.float64) for a in arrays])[0]


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c, o = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 1)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 9))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 9))
    n = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((o, c // groups, kh, kw)).astype(dtype)
    return x, weight, dict(stride=stride, padding=padding, dilation=dilation, groups=groups), rng


def tolerance(dtype, terms):
    eps = 1e-6 if dtype == np.float32 else 1e-13
    return eps * max(1.0, math.sqrt(terms)) * 4


@settings(max_examples=40)
@given(case=conv_case())
def test_conv2d_forward_and_gradients_match_the_interpreter(case):
    x, w, attrs, rng = case
    y = apply1("conv2d", jg.tensor(x), jg.tensor(w), **attrs).numpy()
    terms = w[0].size
    np.testing.assert_allclose(y, reference("conv2d", [x, w], **attrs), atol=tolerance(x.dtype, terms), rtol=0)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    dx = apply1("conv2d_grad_input", jg.tensor(dy), jg.tensor(w), input_hw=x.shape[2:], **attrs).numpy()
    np.testing.assert_allclose(dx, reference("conv2d_grad_input", [dy, w], input_hw=x.shape[2:], **attrs),
                               atol=tolerance(x.dtype, w.shape[0] * w.shape[2] * w.shape[3]), rtol=0)
    dw = apply1("conv2d_grad_weight", jg.tensor(x), jg.tensor(dy), kernel_hw=w.shape[2:], **attrs).numpy()
    np.testing.assert_allclose(dw, reference("conv2d_grad_weight", [x, dy], kernel_hw=w.shape[2:], **attrs),
                               atol=tolerance(x.dtype, dy.size // dy.shape[1]), rtol=0)


@st.composite
def pool_case(draw):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    h = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 8))
    w = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 8))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)).astype(dtype)
    return x, dict(kernel=kernel, stride=stride, padding=padding), rng


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@settings(max_examples=25)
@given(case=pool_case())
def test_pooling_forward_and_backward_match_the_interpreter(op, case):
    x, attrs, rng = case
    atol = tolerance(x.dtype, 9)
    y = apply1(op, jg.tensor(x), **attrs).numpy()
    np.testing.assert_allclose(y, reference(op, [x], **attrs), atol=atol, rtol=0)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    if op == "max_pool2d":
        got = apply1("max_pool2d_grad", jg.tensor(x), jg.tensor(dy), **attrs).numpy()
        expected = reference("max_pool2d_grad", [x, dy], **attrs)
    else:
        got = apply1("avg_pool2d_grad", jg.tensor(dy), input_hw=x.shape[2:], **attrs).numpy()
        expected = reference("avg_pool2d_grad", [dy], input_hw=x.shape[2:], **attrs)
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)


def numeric_check(f, arrays, seed=0):
    params = [jg.Parameter(a) for a in arrays]
    gm = GradManager().attach(params)
    with gm:
        y = f(*params)
        dy = np.random.default_rng(seed).standard_normal(y.shape)
        gm.backward(y, jg.tensor(dy))
    for i, a in enumerate(arrays):
        expected = np.zeros_like(a)
        for index in np.ndindex(a.shape):
            values = []
            for sign in (1, -1):
                trial = [b.copy() for b in arrays]
                trial[i][index] += sign * 1e-6
                values.append(float(np.sum(dy * f(*[jg.tensor(b) for b in trial]).numpy())))
            expected[index] = (values[0] - values[1]) / 2e-6
        np.testing.assert_allclose(params[i].grad.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_conv2d_finite_differences_with_bias():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 2, 3, 2)), rng.standard_normal(4)
    numeric_check(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2), [x, w, b])


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pooling_finite_differences(pool):
    x = np.random.default_rng(2).permutation(2 * 3 * 5 * 5).reshape(2, 3, 5, 5) / 10.0  # no ties
    numeric_check(lambda x: pool(x, 3, stride=2, padding=1), [x])


def test_front_end_defaults_and_errors():
    x = jg.tensor(np.arange(2 * 16, dtype=np.float32).reshape(1, 2, 4, 4))
    assert F.max_pool2d(x, 2).shape == (1, 2, 2, 2)
    assert F.nn.avg_pool2d(x, (2, 2)).shape == (1, 2, 2, 2)
    assert F.conv2d(x, np.ones((3, 2, 3, 3), np.float32), padding=1).shape == (1, 3, 4, 4)
    with pytest.raises(OpError, match="divisible by groups"):
        F.conv2d(x, np.ones((3, 1, 3, 3), np.float32), groups=2)
    with pytest.raises(OpError, match="larger than the padded input"):
        F.conv2d(x, np.ones((3, 2, 5, 5), np.float32))


def test_one_and_two_threads_give_identical_results():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 6, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    results = []
    previous = jg.get_num_threads()
    try:
        for threads in (1, 2):
            jg.set_num_threads(threads)
            y = apply1("conv2d", jg.tensor(x), jg.tensor(w))
            dw = apply1("conv2d_grad_weight", jg.tensor(x), y, kernel_hw=(5, 5))
            dx = apply1("conv2d_grad_input", y, jg.tensor(w), input_hw=(20, 20))
            results.append([t.numpy() for t in (y, dw, dx, F.max_pool2d(y, 2), F.avg_pool2d(y, 2))])
    finally:
        jg.set_num_threads(previous)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_module_layers_shapes_init_and_parameters():
    import jitgine.module as M

    conv = M.Conv2d(6, 16, 5, groups=2)
    bound = 1 / math.sqrt(3 * 25)
    assert conv.weight.shape == (16, 3, 5, 5) and conv.bias.shape == (16,)
    assert np.abs(conv.weight.numpy()).max() <= bound and np.abs(conv.bias.numpy()).max() <= bound
    net = M.Sequential(M.Conv2d(1, 6, 5, padding=2), M.MaxPool2d(2), conv, M.AvgPool2d(2, stride=2))
    assert net(jg.tensor(np.ones((2, 1, 28, 28), np.float32))).shape == (2, 16, 5, 5)
    assert [name for name, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]


@pytest.mark.parametrize("dtype", [DType.float32, DType.float64])
def test_compiled_graph_with_windows_equals_the_interpreter(dtype):
    from codegen.compiler import compile_graph

    rng = np.random.default_rng(4)
    np_dtype = np.float32 if dtype == DType.float32 else np.float64
    x = rng.standard_normal((3, 4, 9, 8)).astype(np_dtype)
    w = rng.standard_normal((6, 2, 3, 2)).astype(np_dtype)
    conv = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    pool = dict(kernel=(3, 2), stride=(2, 1), padding=(1, 1))
    b = GraphBuilder("windows")
    xv, wv = b.input(TensorType(x.shape, dtype)), b.input(TensorType(w.shape, dtype))
    y = b.add("conv2d", [xv, wv], **conv).result
    dx = b.add("conv2d_grad_input", [y, wv], input_hw=(9, 8), **conv).result
    dw = b.add("conv2d_grad_weight", [xv, y], kernel_hw=(3, 2), **conv).result
    m = b.add("max_pool2d", [dx], **pool).result
    a = b.add("avg_pool2d", [dx], **pool).result
    gm = b.add("max_pool2d_grad", [dx, m], **pool).result
    ga = b.add("avg_pool2d_grad", [a], input_hw=(9, 8), **pool).result
    graph = b.output(y, dx, dw, m, a, gm, ga)
    atol = 1e-4 if dtype == DType.float32 else 1e-11
    for got, expected in zip(compile_graph(graph)(x, w), run(graph, [x, w])):
        np.testing.assert_allclose(got, expected, atol=atol * max(1.0, np.abs(expected).max()), rtol=0)


def _forced(plan, orientation):
    """The plan with the other orientation's register block (conv_plan.plan picks one by lane
    waste); "C-last" is "C" reading a channels-last source (picked when an image overflows L1)."""
    import dataclasses

    from codegen import conv_plan

    if orientation == "W":
        nv = 1 if plan.ow <= plan.lanes else 2
        return dataclasses.replace(plan, orientation="W", nv=nv, channels_last=False,
                                   rows=conv_plan._blocks(plan.cout, conv_plan.MAX_ACCUMULATORS // nv))
    nv = 1 if plan.cout <= plan.lanes else 2
    return dataclasses.replace(plan, orientation="C", nv=nv, rows=conv_plan.MAX_ACCUMULATORS // nv,
                               channels_last=orientation == "C-last")


@settings(max_examples=30)
@given(case=conv_case(), orientation=st.sampled_from(["W", "C", "C-last"]))
def test_direct_kernel_orientations_match_the_interpreter(case, orientation):
    from codegen import conv_plan
    from jitgine.core.eager_conv import _direct

    x, w, attrs, rng = case
    stride, padding, dilation, groups = attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"]
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    dtype = DType.parse(x.dtype.name)
    expected = reference("conv2d", [x, w], **attrs)
    if orientation != "W" or stride[1] == 1:
        plan = _forced(conv_plan.plan(dtype, n, groups, cg, o // groups, (h, wd), (kh, kw), expected.shape[2:],
                                      stride, padding, dilation), orientation)
        y = np.empty(expected.shape, x.dtype)
        _direct(plan, y, x, w)
        np.testing.assert_allclose(y, expected, atol=tolerance(x.dtype, w[0].size), rtol=0)
    plan = conv_plan.grad_input_plan(dtype, n, groups, c, o, (h, wd), (kh, kw), expected.shape[2:], stride,
                                     padding, dilation)
    if plan is not None:
        dy = rng.standard_normal(expected.shape).astype(x.dtype)
        dx = np.empty(x.shape, x.dtype)
        _direct(_forced(plan, orientation), dx, dy, w)
        np.testing.assert_allclose(dx, reference("conv2d_grad_input", [dy, w], input_hw=(h, wd), **attrs),
                                   atol=tolerance(x.dtype, o * kh * kw), rtol=0)


@pytest.mark.parametrize("orientation", ["W", "C", "C-last"])
def test_direct_kernel_is_thread_count_independent(orientation, monkeypatch):
    from codegen import conv_plan

    original = conv_plan.plan
    monkeypatch.setattr(conv_plan, "plan", lambda *a, **k: _forced(original(*a, **k), orientation))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 6, 14, 13)).astype(np.float32)  # odd width: tail tiles
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((16, 16, 12, 11)).astype(np.float32)
    results = []
    previous = jg.get_num_threads()
    try:
        for threads in (1, 2):
            jg.set_num_threads(threads)
            y = apply1("conv2d", jg.tensor(x), jg.tensor(w), padding=(1, 1))
            dx = apply1("conv2d_grad_input", jg.tensor(dy), jg.tensor(w), input_hw=(14, 13), padding=(1, 1))
            dw = apply1("conv2d_grad_weight", jg.tensor(x), jg.tensor(dy), kernel_hw=(5, 5), padding=(1, 1))
            results.append([y.numpy(), dx.numpy(), dw.numpy()])
    finally:
        jg.set_num_threads(previous)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    expected = reference("conv2d_grad_weight", [x, dy], kernel_hw=(5, 5), padding=(1, 1))
    np.testing.assert_allclose(results[0][2], expected, atol=tolerance(np.float32, dy.size // 16), rtol=0)


@pytest.mark.parametrize("kernel,stride", [((2, 2), (2, 2)), ((3, 2), (3, 2)), ((3, 3), (2, 2)), ((2, 2), (3, 3))])
def test_fixed_window_pooling_ties_go_to_the_first_maximum(kernel, stride):
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, (2, 3, 13, 17)).astype(np.float32)  # many ties; 13, 17: partial windows
    attrs = dict(kernel=kernel, stride=stride)
    y = apply1("max_pool2d", jg.tensor(x), **attrs).numpy()
    np.testing.assert_array_equal(y, reference("max_pool2d", [x], **attrs))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = apply1("max_pool2d_grad", jg.tensor(x), jg.tensor(dy), **attrs).numpy()
    np.testing.assert_allclose(got, reference("max_pool2d_grad", [x, dy], **attrs), atol=1e-6, rtol=0)
    got = apply1("avg_pool2d_grad", jg.tensor(dy), input_hw=x.shape[2:], **attrs).numpy()
    expected = reference("avg_pool2d_grad", [dy], input_hw=x.shape[2:], **attrs)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_compiled_direct_paths_match_the_interpreter_at_1_and_2_threads():
    from codegen.compiler import compile_graph

    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 11, 13)).astype(np.float32)
    w = rng.standard_normal((10, 2, 3, 5)).astype(np.float32)
    conv = dict(padding=(2, 1), dilation=(1, 2), groups=2)  # stride 1: direct forward, grad_input, grad_weight
    pool = dict(kernel=(2, 2), stride=(2, 2))  # unpadded, tiled: the fixed-window kernels
    b = GraphBuilder("direct")
    xv, wv = b.input(TensorType(x.shape, DType.float32)), b.input(TensorType(w.shape, DType.float32))
    y = b.add("conv2d", [xv, wv], **conv).result
    dx = b.add("conv2d_grad_input", [y, wv], input_hw=(11, 13), **conv).result
    dw = b.add("conv2d_grad_weight", [xv, y], kernel_hw=(3, 5), **conv).result
    m = b.add("max_pool2d", [y], **pool).result
    gm = b.add("max_pool2d_grad", [y, m], **pool).result
    graph = b.output(y, dx, dw, m, gm)
    compiled = compile_graph(graph)
    previous = jg.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            jg.set_num_threads(threads)
            results.append([np.array(r) for r in compiled(x, w)])
    finally:
        jg.set_num_threads(previous)
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)
    for got, expected in zip(results[0], run(graph, [x, w])):
        np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()), rtol=0)


def _batch_grad_input(dy, w, hw, padding):
    """grad_input through the batch-lanes kernel (codegen.conv_batch), whatever batch_plan would pick."""
    from codegen import conv_batch
    from jitgine.core.eager_conv import _kernel

    dtype = DType.parse(dy.dtype.name)
    (n, o, oh, ow), c = dy.shape, w.shape[1]
    plan = conv_batch.BatchPlan(n, c, *hw, o, oh, ow, *w.shape[2:], *padding, _lanes(dtype))
    dy_t = np.full(plan.batch_last_elements(), np.nan, dy.dtype)  # every element is written
    _kernel("batch_last", dtype, conv_batch.define_batch_last)([dy_t, dy], plan.transpose_meta())
    w_t = np.full(plan.weight_elements(), np.nan, w.dtype)
    _kernel("taps_major", dtype, conv_batch.define_taps_major)([w_t, w], plan.weight_meta())
    dx = np.full((n, c, *hw), np.nan, dy.dtype)
    _kernel("grad_input_batch", dtype, conv_batch.define_grad_input_batch)([dx, dy_t, w_t], plan.kernel_meta())
    return dx


def _lanes(dtype):
    from codegen.gemm_kernel import blocking_for

    return blocking_for(dtype.name).lanes


@settings(max_examples=30)
@given(n=st.integers(1, 37), c=st.integers(1, 14), o=st.integers(1, 10), hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       khw=st.tuples(st.integers(1, 5), st.integers(1, 5)), padding=st.tuples(st.integers(0, 5), st.integers(0, 5)),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_batch_lanes_grad_input_matches_the_interpreter(n, c, o, hw, khw, padding, dtype, seed):
    """Any batch (tails of the image tiles), channel count (tails of the row blocks), padding up to
    and past the kernel (pixels with no valid tap)."""
    ohw = tuple(s + 2 * p - k + 1 for s, p, k in zip(hw, padding, khw))
    if min(ohw) < 1:
        return
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal((n, o, *ohw)).astype(dtype)
    w = rng.standard_normal((o, c, *khw)).astype(dtype)
    expected = reference("conv2d_grad_input", [dy, w], input_hw=hw, padding=padding)
    np.testing.assert_allclose(_batch_grad_input(dy, w, hw, padding), expected,
                               atol=tolerance(dtype, o * khw[0] * khw[1]), rtol=0)


def test_batch_lanes_grad_input_is_planned_where_padding_wastes_most():
    from codegen import conv_batch, conv_plan

    def planned(n, c, o, hw, k, pad):
        ohw = tuple(s + 2 * pad - k + 1 for s in hw)
        args = (DType.float32, n, 1, c, o, hw, (k, k), ohw, (1, 1), (pad, pad), (1, 1))
        return conv_batch.batch_plan(*args, conv_plan.grad_input_plan(*args)) is not None

    assert planned(64, 6, 16, (14, 14), 5, 0)  # LeNet's conv2: 30% of the direct kernel's taps are padding
    assert not planned(32, 64, 64, (56, 56), 3, 1)  # ResNet: 1%
    assert not planned(64, 6, 1, (14, 14), 5, 0)  # one output channel: too short a tap loop
    assert not planned(4, 6, 16, (14, 14), 5, 0)  # fewer images than lanes


def test_batch_lanes_grad_input_in_eager_and_compiled_graphs_at_1_and_2_threads():
    from codegen.compiler import compile_graph

    rng = np.random.default_rng(8)
    dy = rng.standard_normal((30, 16, 10, 9)).astype(np.float32)  # 30 images: a partial tile
    w = rng.standard_normal((16, 5, 5, 4)).astype(np.float32)  # 5 channels: a partial row block
    attrs = dict(input_hw=(14, 12), padding=(0, 0))
    b = GraphBuilder("grad_input")
    dyv, wv = b.input(TensorType(dy.shape, DType.float32)), b.input(TensorType(w.shape, DType.float32))
    compiled = compile_graph(b.output(b.add("conv2d_grad_input", [dyv, wv], **attrs).result))
    assert "grad_input_batch" in compiled.llvm_ir  # the batch-lanes plan, not the direct kernel
    expected = reference("conv2d_grad_input", [dy, w], **attrs)
    previous = jg.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            jg.set_num_threads(threads)
            results.append(apply1("conv2d_grad_input", jg.tensor(dy), jg.tensor(w), **attrs).numpy())
            results.append(np.array(compiled(dy, w)[0]))
    finally:
        jg.set_num_threads(previous)
    for got in results:
        np.testing.assert_array_equal(got, results[0])
    np.testing.assert_allclose(results[0], expected, atol=tolerance(np.float32, 16 * 20), rtol=0)


@settings(max_examples=15)
@given(n=st.integers(1, 4), groups=st.integers(1, 2), cg=st.integers(1, 3), og=st.integers(8, 20),
       hw=st.tuples(st.integers(3, 9), st.integers(3, 9)), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.tuples(st.integers(1, 2), st.integers(1, 2)), padding=st.tuples(st.integers(0, 1), st.integers(0, 1)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), seed=st.integers(0, 2**16))
def test_channels_last_grad_weight_matches_the_interpreter_at_1_and_2_threads(n, groups, cg, og, hw, k, stride,
                                                                            padding, dilation, seed):
    """The "dWC" plan (a vector or more of output channels: taps x channels tiles reduced over the
    batch's pixels), eager and compiled, for any stride, padding, dilation and groups."""
    from codegen import conv_plan
    from codegen.compiler import compile_graph

    span = [(kk - 1) * d + 1 for kk, d in zip(k, dilation)]
    if any(h + 2 * p < s for h, p, s in zip(hw, padding, span)):
        return
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cg * groups, *hw)).astype(np.float32)
    oh, ow = [(h + 2 * p - s) // st_ + 1 for h, p, s, st_ in zip(hw, padding, span, stride)]
    dy = rng.standard_normal((n, og * groups, oh, ow)).astype(np.float32)
    plan = conv_plan.grad_weight_plan(DType.float32, n, groups, cg * groups, og * groups, hw, k, (oh, ow),
                                      stride, padding, dilation)
    assert plan.orientation == "dWC"
    expected = reference("conv2d_grad_weight", [x, dy], kernel_hw=k, **attrs)
    eager = apply1("conv2d_grad_weight", jg.tensor(x), jg.tensor(dy), kernel_hw=k, **attrs).numpy()
    np.testing.assert_allclose(eager, expected, atol=tolerance(np.float32, n * oh * ow), rtol=0)
    b = GraphBuilder("dwc")
    xv, dyv = b.input(TensorType(x.shape, DType.float32)), b.input(TensorType(dy.shape, DType.float32))
    compiled = compile_graph(b.output(b.add("conv2d_grad_weight", [xv, dyv], kernel_hw=k, **attrs).result))
    previous = jg.get_num_threads()
    try:
        for threads in (1, 2):
            jg.set_num_threads(threads)
            np.testing.assert_array_equal(compiled(x, dy)[0], eager)
    finally:
        jg.set_num_threads(previous)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), c=st.sampled_from([1, 3, 4, 7, 8, 9, 16, 17]), h=st.integers(1, 4),
       w=st.sampled_from([1, 3, 4, 7, 8, 9, 13, 16, 17]), ph=st.integers(0, 2), pw=st.integers(0, 2),
       dtype=st.sampled_from([np.float32, np.float64]), threaded=st.booleans())
def test_channels_last_padding_kernel(n, c, h, w, ph, pw, dtype, threaded):
    """The "C" plans' source copy: (N, C, H, W) -> zero-padded (N, H+2PH, W+2PW, C)."""
    from codegen import conv_operands, kernels

    rng = np.random.default_rng(c * 100 + w)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    hp, wp = h + 2 * ph, w + 2 * pw
    got = np.full((n, hp, wp, c), np.nan, dtype)
    kernel = kernels.get_kernel(("test_pad_channels_last", DType.parse(np.dtype(dtype).name)),
                                lambda module, name: conv_operands.define_pad_channels_last(
                                    module, name, DType.parse(np.dtype(dtype).name)))
    grain = 1 if threaded else n * hp  # tasks shared out, or all on the calling thread
    kernel([got, x], [n * hp, grain, c, h, w, ph, pw])
    want = np.zeros((n, hp, wp, c), dtype)
    want[:, ph:ph + h, pw:pw + w, :] = x.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got, want)
