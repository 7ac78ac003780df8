"""Autodiff: every VJP rule and composite against central differences in float64,
the registry coverage check, GradManager semantics, and the matmul primitive."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jitgine as jg
import jitgine.functional as F
from ir.ops import REGISTRY, OpError, infer
from ir.types import DType, TensorType
from jitgine.autodiff import NON_DIFFERENTIABLE, VJP, GradManager
from jitgine.core.dispatch import apply1

EPS = 1e-6
RTOL = 1e-3


def numeric_grad(f, arrays, i, dy):
    base = [a.copy() for a in arrays]
    grad = np.zeros_like(arrays[i])
    for index in np.ndindex(arrays[i].shape):
        values = []
        for sign in (1, -1):
            trial = [a.copy() for a in base]
            trial[i][index] += sign * EPS
            values.append(float(np.sum(dy * f(*[jg.tensor(a) for a in trial]).numpy())))
        grad[index] = (values[0] - values[1]) / (2 * EPS)
    return grad


def check_grad(f, *arrays, seed=0, wrt=None):
    """Compare GradManager's gradients of sum(dy * f(*arrays)) with central differences."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    params = [jg.Parameter(a) for a in arrays]
    wrt = range(len(arrays)) if wrt is None else wrt
    gm = GradManager().attach([params[i] for i in wrt])
    with gm:
        y = f(*params)
        dy = np.random.default_rng(seed).standard_normal(y.shape)
        gm.backward(y, jg.tensor(dy))
    for i in wrt:
        expected = numeric_grad(f, arrays, i, dy)
        got = np.zeros_like(arrays[i]) if params[i].grad is None else params[i].grad.numpy()
        assert got.shape == arrays[i].shape and got.dtype == np.float64
        scale = max(1.0, float(np.abs(expected).max(initial=0)))
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL * 1e-2 * scale, err_msg=f"operand {i}")


shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast together (some dims stretched, some ranks differ)."""
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple))
    other = list(shape)
    for k in range(len(other)):
        if draw(st.booleans()):
            other[k] = 1
    drop = draw(st.integers(0, len(other)))
    return shape, tuple(other[drop:])


def draw_array(draw, shape, low=-2.0, high=2.0):
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).uniform(low, high, shape)


# ----------------------------------------------------------------- registry coverage

def test_every_primitive_has_a_vjp_rule_or_is_declared_non_differentiable():
    missing = sorted(name for name in REGISTRY if name not in VJP and name not in NON_DIFFERENTIABLE)
    assert not missing, f"primitives without a VJP rule (add to jitgine/autodiff/vjp.py): {missing}"
    assert not set(VJP) & NON_DIFFERENTIABLE


# ----------------------------------------------------------------- elementwise rules

UNARY_DOMAINS = {
    "neg": (-2, 2), "exp": (-2, 2), "expm1": (-2, 2), "log": (0.2, 3), "log1p": (-0.5, 3), "sqrt": (0.2, 3),
    "rsqrt": (0.2, 3), "tanh": (-2, 2), "logistic": (-3, 3), "sin": (-3, 3), "cos": (-3, 3), "erf": (-2, 2),
    "abs": (0.1, 2),
}


@pytest.mark.parametrize("primitive", sorted(UNARY_DOMAINS))
@settings(max_examples=6)
@given(data=st.data(), shape=shapes)
def test_unary_vjp(primitive, data, shape):
    low, high = UNARY_DOMAINS[primitive]
    x = draw_array(data.draw, shape, low, high)
    if primitive == "abs":
        x = x * np.where(np.arange(x.size).reshape(shape) % 2, 1, -1)
    check_grad(lambda t: apply1(primitive, t), x)


BINARY = {
    "add": (F.add, (-2, 2), (-2, 2)), "sub": (F.sub, (-2, 2), (-2, 2)), "mul": (F.mul, (-2, 2), (-2, 2)),
    "div": (F.div, (-2, 2), (0.5, 2)), "pow": (F.pow, (0.3, 2), (-2, 2)), "maximum": (F.maximum, (-2, 2), (-2, 2)),
    "minimum": (F.minimum, (-2, 2), (-2, 2)), "mod": (F.mod, (2.2, 2.8), (1.5, 2.0)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@settings(max_examples=6)
@given(data=st.data(), pair=broadcast_pair())
def test_binary_vjp_with_broadcasting(name, data, pair):
    fn, (alo, ahi), (blo, bhi) = BINARY[name]
    a = draw_array(data.draw, pair[0], alo, ahi)
    b = draw_array(data.draw, pair[1], blo, bhi)
    if data.draw(st.booleans()):
        a, b = (b, a) if name not in ("div", "pow", "mod") else (a, b)
    check_grad(fn, a, b)


@settings(max_examples=8)
@given(data=st.data(), pair=broadcast_pair())
def test_select_vjp(data, pair):
    a = draw_array(data.draw, pair[0])
    b = draw_array(data.draw, pair[1])
    mask = draw_array(data.draw, pair[0]) > 0
    check_grad(lambda x, y: F.where(jg.tensor(mask), x, y), a, b)


def test_piecewise_constant_and_integer_inputs_get_no_gradient():
    x = jg.Parameter(np.array([0.3, -1.7, 2.5]))
    gm = GradManager().attach([x])
    with gm:
        y = F.floor(x) + F.ceil(x) + F.round(x) + F.sign(x) + (x > 0).astype("float64")
        gm.backward(y.sum())
    assert x.grad is None
    n = jg.Parameter(np.array([1.0, 2.0]))
    gm = GradManager().attach([n])
    with gm:
        z = n.astype("int32").astype("float64") * 3 + n
        gm.backward(z.sum())
    np.testing.assert_array_equal(n.grad.numpy(), [1.0, 1.0])


def test_ties_share_the_cotangent_evenly():
    x = jg.Parameter(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]))
    gm = GradManager().attach([x])
    with gm:
        gm.backward(x.max(axis=1).sum() + F.maximum(x, 1.0).sum())
    np.testing.assert_allclose(x.grad.numpy(), [[0.5 + 0.0, 1.5, 1.5], [2.0, 0.0, 0.5]])


def test_cast_between_floats_casts_the_cotangent_back():
    x = jg.Parameter(np.array([1.0, 2.0, 3.0]))
    gm = GradManager().attach([x])
    with gm:
        y = x.astype("float32") * 2
        gm.backward(y.sum())
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


# ----------------------------------------------------------------- layout and reductions

@settings(max_examples=10)
@given(data=st.data(), pair=broadcast_pair())
def test_broadcast_vjp(data, pair):
    big, small = pair
    check_grad(lambda t: F.broadcast_to(t, big), draw_array(data.draw, small))


@settings(max_examples=8)
@given(data=st.data(), shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple))
def test_reshape_and_permute_vjp(data, shape):
    x = draw_array(data.draw, shape)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    check_grad(lambda t: F.transpose(t, perm).reshape(-1) * F.arange(x.size, dtype="float64"), x)


@settings(max_examples=12)
@given(data=st.data(), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
def test_slice_vjp_including_steps(data, shape):
    x = draw_array(data.draw, shape)
    index = []
    for dim in shape:
        start = data.draw(st.integers(0, dim - 1))
        stop = data.draw(st.integers(start, dim))
        index.append(slice(start, stop, data.draw(st.integers(1, 3))))
    check_grad(lambda t: t[tuple(index)], x)


@settings(max_examples=8)
@given(data=st.data(), shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple))
def test_pad_and_concat_vjp(data, shape):
    widths = [(data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape]
    axis = data.draw(st.integers(0, len(shape) - 1))
    other = list(shape)
    other[axis] = data.draw(st.integers(1, 3))
    a, b = draw_array(data.draw, shape), draw_array(data.draw, tuple(other))
    check_grad(lambda s, t: F.concat([F.pad(s, widths)[tuple(slice(lo, lo + d) for (lo, _), d in zip(widths, shape))], t],
                                     axis), a, b)
    check_grad(lambda s: F.pad(s, widths, constant_value=1.5), a)


@pytest.mark.parametrize("reduce", ["sum", "max", "min", "mean"])
@settings(max_examples=6)
@given(data=st.data(), shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple))
def test_reduction_vjp(reduce, data, shape):
    x = draw_array(data.draw, shape)
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    keep = data.draw(st.booleans())
    check_grad(lambda t: getattr(F, reduce)(t, axes, keepdims=keep), x)


# ----------------------------------------------------------------- matmul

@st.composite
def matmul_case(draw):
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    batch = draw(st.lists(st.integers(1, 3), max_size=2).map(tuple))
    batch_a = tuple(d if draw(st.booleans()) else 1 for d in batch)[draw(st.integers(0, len(batch))):]
    batch_b = tuple(d if draw(st.booleans()) else 1 for d in batch)[draw(st.integers(0, len(batch))):]
    ta, tb = draw(st.booleans()), draw(st.booleans())
    shape_a = batch_a + ((k, m) if ta else (m, k))
    shape_b = batch_b + ((n, k) if tb else (k, n))
    return shape_a, shape_b, ta, tb


@settings(max_examples=15)
@given(case=matmul_case(), seed=st.integers(0, 1000))
def test_matmul_vjp(case, seed):
    shape_a, shape_b, ta, tb = case
    rng = np.random.default_rng(seed)
    check_grad(lambda a, b: F.matmul(a, b, transpose_a=ta, transpose_b=tb),
               rng.standard_normal(shape_a), rng.standard_normal(shape_b))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@settings(max_examples=15)
@given(case=matmul_case(), seed=st.integers(0, 1000), strided=st.booleans())
def test_matmul_forward_matches_numpy(dtype, case, seed, strided):
    shape_a, shape_b, ta, tb = case
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape_a).astype(dtype)
    b = rng.standard_normal(shape_b).astype(dtype)
    if strided:  # non-contiguous operands: a transposed copy seen through a view
        a = np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)
        b = np.concatenate([b, b], axis=-1)[..., ::2]
    out = F.matmul(jg.tensor(a), jg.tensor(b), transpose_a=ta, transpose_b=tb)
    ref = np.matmul(np.swapaxes(a, -1, -2) if ta else a, np.swapaxes(b, -1, -2) if tb else b)
    assert out.dtype == np.dtype(dtype) and out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)


def test_matmul_vectors_empty_and_integer_operands():
    a = np.arange(6.0).reshape(2, 3)
    v = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(F.matmul(jg.tensor(a), jg.tensor(v)).numpy(), a @ v)
    np.testing.assert_allclose(F.matmul(jg.tensor(v), jg.tensor(a.T)).numpy(), v @ a.T)
    assert F.matmul(jg.tensor(v), jg.tensor(v)).shape == ()
    np.testing.assert_array_equal(F.matmul(jg.tensor(np.ones((2, 0))), jg.tensor(np.ones((0, 3)))).numpy(),
                                  np.zeros((2, 3)))
    assert F.matmul(jg.tensor([[1, 2]]), jg.tensor([[3], [4]])).dtype == np.float32
    np.testing.assert_allclose((jg.tensor(a) @ jg.tensor(a.T)).numpy(), a @ a.T)


def test_matmul_primitive_errors_name_the_problem():
    f32 = DType.float32
    with pytest.raises(OpError, match="contracted dims differ"):
        infer("matmul", [TensorType((2, 3), f32), TensorType((4, 5), f32)], {})
    with pytest.raises(OpError, match="batch dims"):
        infer("matmul", [TensorType((2, 2, 3), f32), TensorType((3, 3, 5), f32)], {})
    with pytest.raises(OpError, match="float operands"):
        infer("matmul", [TensorType((2, 3), DType.int32), TensorType((3, 5), DType.int32)], {})
    with pytest.raises(OpError, match="one dtype"):
        infer("matmul", [TensorType((2, 3), f32), TensorType((3, 5), DType.float64)], {})
    with pytest.raises(OpError, match="at least 2 dims"):
        infer("matmul", [TensorType((3,), f32), TensorType((3, 5), f32)], {})
    assert infer("matmul", [TensorType((4, 3, 2), f32), TensorType((5, 1, 4, 3), f32)],
                 {"transpose_a": True, "transpose_b": True}) == [TensorType((5, 4, 2, 4), f32)]


# ----------------------------------------------------------------- composites

COMPOSITES = {
    "softmax": lambda x: F.softmax(x, axis=-1),
    "log_softmax": lambda x: F.log_softmax(x, axis=0),
    "logsumexp": lambda x: F.logsumexp(x, axis=-1),
    "gelu": F.gelu, "silu": F.silu, "softplus": F.softplus,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.1), "relu6": lambda x: F.relu6(x * 4), "relu": F.relu,
    "sigmoid": F.sigmoid, "var": lambda x: F.var(x, axis=-1), "std": lambda x: F.std(F.concat([x.reshape(-1), F.full((1,), 7.0, "float64")])),
    "norm": lambda x: F.norm(x),
    "square_loss": lambda x: F.loss.square_loss(x, F.ones_like(x) * 0.25),
    "bce_logits": lambda x: F.loss.binary_cross_entropy(x, (F.arange(x.size, dtype="float64") % 2).reshape(x.shape)),
    "bce_probs": lambda x: F.loss.binary_cross_entropy(F.sigmoid(x), F.full_like(x, 0.3), with_logits=False),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
@settings(max_examples=5)
@given(data=st.data(), shape=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple))
def test_composite_vjp(name, data, shape):
    x = draw_array(data.draw, shape, -3, 3)
    x = x + np.sign(x) * 0.05  # keep kinks (relu at 0, relu6 at 6) out of the finite-difference stencil
    check_grad(COMPOSITES[name], x)


@settings(max_examples=8)
@given(data=st.data(), batch=st.integers(1, 4), classes=st.integers(2, 5),
       smooth=st.sampled_from([0.0, 0.1]), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_and_linear_vjp(data, batch, classes, smooth, reduction):
    x = draw_array(data.draw, (batch, 3))
    w = draw_array(data.draw, (classes, 3))
    b = draw_array(data.draw, (classes,))
    label = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, classes, batch)
    check_grad(lambda x_, w_, b_: F.loss.cross_entropy(F.linear(x_, w_, b_), jg.tensor(label), label_smooth=smooth,
                                                       reduction=reduction), x, w, b)


def test_cross_entropy_checks_labels():
    logits = jg.tensor(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="integer class indices"):
        F.loss.cross_entropy(logits, jg.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        F.loss.cross_entropy(logits, jg.tensor([0, 3]))
    with pytest.raises(ValueError, match="label shape"):
        F.loss.cross_entropy(logits, jg.tensor([0, 1, 2]))


def test_composites_forward_match_numpy():
    x = np.random.default_rng(1).standard_normal((3, 5)) * 30
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(F.softmax(jg.tensor(x)).numpy(), e / e.sum(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(jg.tensor(x)).numpy(), np.log(e / e.sum(1, keepdims=True)), atol=1e-9)
    np.testing.assert_allclose(F.softplus(jg.tensor(x)).numpy(), np.logaddexp(0, x), rtol=1e-12)
    onehot = F.one_hot(jg.tensor([2, 0]), 4)
    assert onehot.dtype == np.int32
    np.testing.assert_array_equal(onehot.numpy(), np.eye(4, dtype=np.int32)[[2, 0]])
    assert F.nn.square_loss is F.loss.square_loss and F.nn.relu is F.relu


# ----------------------------------------------------------------- GradManager semantics

def test_non_scalar_backward_needs_dy():
    w = jg.Parameter(np.ones(3))
    gm = GradManager().attach([w])
    with gm:
        with pytest.raises(ValueError, match="needs dy"):
            gm.backward(w * 2)


def test_gradients_accumulate_and_callbacks_run():
    w = jg.Parameter(np.array([1.0, 2.0]))
    seen = []
    gm = GradManager().attach([w], callbacks=lambda p, g: (seen.append(p is w), g * 10)[1])
    for _ in range(2):
        with gm:
            gm.backward((w * w).sum())
    np.testing.assert_allclose(w.grad.numpy(), 2 * 10 * 2 * np.array([1.0, 2.0]))
    assert seen == [True, True]


def test_only_ops_inside_recording_and_on_attached_tensors_are_taped():
    w = jg.Parameter(np.array([3.0]))
    outside = w * 2  # before recording: not on the tape
    gm = GradManager().attach([w])
    with gm:
        loss = (outside * w).sum() + (jg.tensor([5.0]) * 2).sum()
        assert len(gm._tape) == 3  # mul, reduce_sum, add: the constant-only product is not taped
        gm.backward(loss)
    np.testing.assert_allclose(w.grad.numpy(), [6.0])
    assert not gm._tape and gm._recording is False
    with pytest.raises(RuntimeError, match="nothing was recorded"):
        gm.backward(loss)


def test_record_release_and_detach():
    w = jg.Parameter(np.array([2.0]))
    gm = GradManager().attach(w)
    gm.record()
    loss = (w * w.detach()).sum()
    gm.backward(loss)
    np.testing.assert_allclose(w.grad.numpy(), [2.0])
    gm.record()
    gm.release()
    assert gm._recording is False


def test_higher_order_is_reported_as_unsupported():
    w = jg.Parameter(np.array([2.0]))
    outer = GradManager().attach([w])
    inner = GradManager().attach([w])
    with outer:
        with inner:
            y = (w * w * w).sum()
            with pytest.raises(NotImplementedError, match="higher-order"):
                inner.backward(y)


# ----------------------------------------------------------------- windows

@pytest.mark.parametrize("attrs", [{}, {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2), "groups": 2}])
def test_conv2d_vjp(attrs):
    rng = np.random.default_rng(3)
    check_grad(lambda x, w: apply1("conv2d", x, w, **attrs), rng.standard_normal((2, 2, 5, 5)),
               rng.standard_normal((2, 2 // attrs.get("groups", 1), 2, 2)))


@pytest.mark.parametrize("primitive", ["max_pool2d", "avg_pool2d"])
def test_pool_vjp(primitive):
    x = np.random.default_rng(4).permutation(2 * 2 * 5 * 5).reshape(2, 2, 5, 5) / 10.0  # no ties
    check_grad(lambda t: apply1(primitive, t, kernel=(2, 3), stride=(2, 1), padding=(1, 1)), x)


def test_only_needed_cotangents_are_computed():
    w = jg.Parameter(np.ones((3, 2)))
    x = jg.tensor(np.ones((4, 3)))
    gm = GradManager().attach([w])
    with gm:
        loss = F.matmul(x, w).sum()
        taped = []
        from jitgine.core import dispatch

        class Spy:
            def record(self, primitive, attrs, inputs, outputs):
                taped.append(primitive)

        dispatch.recorders.append(Spy())
        try:
            gm.backward(loss)
        finally:
            dispatch.recorders.pop()
    assert taped.count("matmul") == 1  # dw only, not dx
    np.testing.assert_allclose(w.grad.numpy(), np.full((3, 2), 4.0))


def test_each_parameter_gets_its_own_grad_tensor():
    a, b = jg.Parameter(np.ones(2)), jg.Parameter(np.ones(2))
    gm = GradManager().attach([a, b])
    dy = jg.tensor(np.array([1.0, 2.0]))
    with gm:
        gm.backward(a + b, dy)
    assert a.grad is not b.grad and a.grad is not dy
    a.grad._reset(jg.tensor(np.zeros(2)))
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 2.0])


def test_batch_norm_training_vjp_and_running_stats_stay_out_of_the_tape():
    rng = np.random.default_rng(5)
    mean, var = jg.tensor(np.zeros(2)), jg.tensor(np.ones(2))
    check_grad(lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=True),
               rng.standard_normal((3, 2, 2)), rng.standard_normal(2), rng.standard_normal(2))
    assert mean.numpy().any()  # updated in place along the way


def test_matmul_interpreter_meaning():
    from ir.graph import GraphBuilder
    from ir.interpret import run

    f64 = DType.float64
    builder = GraphBuilder("g")
    a = builder.input(TensorType((2, 4, 3), f64))
    b = builder.input(TensorType((5, 3), f64))
    graph = builder.output(builder.add("matmul", [a, b], transpose_b=True).result)
    A, B = np.random.default_rng(0).standard_normal((2, 4, 3)), np.random.default_rng(1).standard_normal((5, 3))
    (out,) = run(graph, [A, B])
    np.testing.assert_allclose(out, A @ B.T, rtol=1e-12)
