"""random_uniform (Philox-4x32-10), jitgine.random and F.dropout: bit-exact against the NumPy
reference, statistically uniform, fresh streams per seed and call, dropout's mask reused by its
gradient, and traced dropout drawing a fresh mask every call."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jitgine as jg
import jitgine.functional as F
import jitgine.module as M
from codegen.compiler import compile_graph
from ir import interpret
from ir.graph import GraphBuilder
from ir.ops import OpError, infer
from ir.ops_random import STATE_TYPE, philox4x32, uniform_reference
from ir.parser import parse_graph
from ir.types import DType, TensorType
import jitgine.optimizer as optim
from jitgine.autodiff import GradManager
from jitgine.core.dispatch import apply
from jitgine.jit import trace

shapes = st.lists(st.integers(0, 13), min_size=0, max_size=3).map(tuple)
states = st.tuples(st.integers(-2**63, 2**63 - 1),
                   st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-40, 40))).map(
    lambda s: np.array(s, np.int64))


def _draw(state: np.ndarray, shape, dtype="float32"):
    values, next_state = apply("random_uniform", jg.tensor(state), shape=tuple(shape), dtype=dtype)
    return values.numpy(), next_state.numpy()


# ----------------------------------------------------------------- the cipher and the primitive

@pytest.mark.parametrize("counter, key, words", [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_known_answers(counter, key, words):
    """Random123's known-answer vectors for Philox-4x32-10."""
    got = philox4x32(np.array(counter, np.uint32), np.array(key, np.uint32))
    assert [int(w) for w in got] == list(words)


@settings(max_examples=30)
@given(shape=shapes, state=states, dtype=st.sampled_from(["float32", "float64"]))
def test_eager_kernel_is_bit_exact_with_the_reference(shape, state, dtype):
    values, next_state = _draw(state, shape, dtype)
    want, want_state = uniform_reference(state, shape, DType.parse(dtype))
    assert values.dtype == np.dtype(dtype) and values.shape == tuple(shape)
    np.testing.assert_array_equal(values, want)
    np.testing.assert_array_equal(next_state, want_state)
    assert values.size == 0 or (values.min() >= 0.0 and values.max() < 1.0)


def test_non_contiguous_state_and_counter_wraparound():
    backing = np.array([7, 99, 2**63 - 3, 99], np.int64)
    state = jg.tensor(backing)[::2]  # a strided view: [7, 2**63 - 3]
    values, next_state = apply("random_uniform", state, shape=(37,), dtype="float32")
    want, want_state = uniform_reference(np.array([7, 2**63 - 3], np.int64), (37,), DType.float32)
    np.testing.assert_array_equal(values.numpy(), want)
    np.testing.assert_array_equal(next_state.numpy(), want_state)
    wrapped = np.array([7, -3], np.int64)  # counter 2^64 - 3: blocks wrap through 0
    values, next_state = _draw(wrapped, (100,))
    np.testing.assert_array_equal(values, uniform_reference(wrapped, (100,), DType.float32)[0])
    assert next_state[1] == -3 + 8 * 4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_graph_matches_the_interpreter_for_any_thread_count(dtype):
    builder = GraphBuilder("draws")
    state = builder.input(STATE_TYPE)
    small, mid = builder.add("random_uniform", [state], shape=(3, 7), dtype=dtype).results
    big, end = builder.add("random_uniform", [mid], shape=(50001,), dtype=dtype).results
    empty, _ = builder.add("random_uniform", [end], shape=(0, 4), dtype=dtype).results
    graph = builder.output(small, big, end, empty)
    compiled = compile_graph(graph)
    start = np.array([123456789, 5], np.int64)
    want = interpret.run(graph, [start])
    threads = jg.get_num_threads()
    try:
        for count in (1, 2):
            jg.set_num_threads(count)
            for got, expected in zip(compiled(start), want):
                assert got.dtype == expected.dtype
                np.testing.assert_array_equal(got, expected)
    finally:
        jg.set_num_threads(threads)


def test_text_form_round_trips():
    builder = GraphBuilder("rt")
    values, state = builder.add("random_uniform", [builder.input(STATE_TYPE)], shape=(2, 3), dtype="f64").results
    graph = builder.output(values, state)
    parsed = parse_graph(str(graph))
    assert str(parsed) == str(graph)


@pytest.mark.parametrize("state, attrs, message", [
    (TensorType((2,), DType.int32), {"shape": (3,), "dtype": "f32"}, "int64 tensor of shape"),
    (TensorType((3,), DType.int64), {"shape": (3,), "dtype": "f32"}, "int64 tensor of shape"),
    (STATE_TYPE, {"shape": (3,), "dtype": "i32"}, "float32' or 'float64"),
    (STATE_TYPE, {"shape": (3,), "dtype": "half"}, "float32' or 'float64"),
    (STATE_TYPE, {"shape": (-1,), "dtype": "f32"}, "non-negative ints"),
])
def test_bad_operands_are_clear_errors(state, attrs, message):
    with pytest.raises(OpError, match=message) as error:
        infer("random_uniform", [state], attrs)
    assert "random_uniform" in str(error.value)


# ----------------------------------------------------------------- statistics (fixed seeds: deterministic)

def _ks_statistic(sorted_values: np.ndarray, cdf) -> float:
    n = sorted_values.size
    c = cdf(sorted_values)
    return float(max(np.max(np.arange(1, n + 1) / n - c), np.max(c - np.arange(n) / n)))


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 17])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniformity_chi_square_and_kolmogorov_smirnov(seed, dtype):
    n, bins = 200_000, 100
    values, _ = _draw(np.array([seed, 0], np.int64), (n,), dtype)
    counts = np.bincount((values * bins).astype(np.int64), minlength=bins)
    chi2 = float(((counts - n / bins) ** 2 / (n / bins)).sum())
    assert chi2 < 99 + 5 * math.sqrt(2 * 99), f"chi-square {chi2} with 99 degrees of freedom"
    d = _ks_statistic(np.sort(values.astype(np.float64)), lambda v: v)
    assert d * math.sqrt(n) < 1.95, f"KS statistic {d} (p < 0.001)"
    # Neighbouring values are uncorrelated (lanes and blocks interleave in the layout).
    for lag in (1, 8, 32):
        r = np.corrcoef(values[:-lag], values[lag:])[0, 1]
        assert abs(r) < 5 / math.sqrt(n), f"lag-{lag} correlation {r}"


def test_normal_is_standard_normal():
    jg.random.seed(11)
    z = jg.random.normal(size=(100_000,)).numpy().astype(np.float64)
    assert abs(z.mean()) < 5 / math.sqrt(z.size) and abs(z.std() - 1) < 0.01
    d = _ks_statistic(np.sort(z), lambda v: 0.5 * (1 + np.vectorize(math.erf)(v / math.sqrt(2))))
    assert d * math.sqrt(z.size) < 1.95
    shifted = jg.random.normal(3.0, 0.5, size=(2, 3))
    assert shifted.shape == (2, 3)


# ----------------------------------------------------------------- streams

def test_seeds_and_calls_give_different_streams_and_a_seed_reproduces():
    jg.random.seed(5)
    a, b = jg.random.uniform(size=64).numpy(), jg.random.uniform(size=64).numpy()
    jg.random.seed(6)
    c = jg.random.uniform(size=64).numpy()
    jg.random.seed(5)
    again = jg.random.uniform(size=64).numpy()
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    np.testing.assert_array_equal(a, again)
    # The counter advances by the blocks a draw used: two draws of 64 are one draw of 128.
    jg.random.seed(5)
    np.testing.assert_array_equal(jg.random.uniform(size=128).numpy(), np.concatenate([a, b]))


def test_rng_objects_are_independent_streams():
    r1, r2 = jg.random.RNG(1), jg.random.RNG(1)
    first = r1.uniform(size=(5,)).numpy()
    np.testing.assert_array_equal(r2.uniform(size=(5,)).numpy(), first)
    assert not np.array_equal(r1.uniform(size=(5,)).numpy(), first)
    scaled = jg.random.RNG(1).uniform(-2.0, 3.0, size=(1000,)).numpy()
    assert scaled.min() >= -2.0 and scaled.max() < 3.0 and scaled.min() < -1.9
    assert jg.random.uniform().shape == () and jg.random.uniform(size=0).shape == (0,)
    with pytest.raises(ValueError, match="size"):
        jg.random.uniform(size=(-1,))
    with pytest.raises(TypeError, match="float32 or float64"):
        jg.random.RNG(0).uniform(size=3, dtype="int32")


# ----------------------------------------------------------------- dropout

@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_zeroes_a_fraction_p_and_scales_the_rest(p):
    jg.random.seed(21)
    x = np.random.default_rng(0).uniform(0.5, 2.0, (300, 100)).astype(np.float32)
    y = F.dropout(jg.tensor(x), p).numpy()
    dropped = y == 0
    n = x.size
    assert abs(dropped.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - p), rtol=1e-6)


def test_dropout_identity_in_eval_and_for_p_zero_and_errors():
    x = jg.tensor(np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(F.dropout(x, 0.5, training=False).numpy(), x.numpy())
    np.testing.assert_array_equal(F.dropout(x, 0.0).numpy(), x.numpy())
    layer = M.Dropout(0.5)
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
    layer.train()
    jg.random.seed(1)
    out = layer(jg.tensor(np.ones(1000, np.float32))).numpy()
    assert set(np.unique(out)) == {0.0, 2.0}
    with pytest.raises(ValueError, match="drop_prob"):
        F.dropout(x, 1.0)


def test_dropout_gradient_reuses_the_forward_mask():
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((7, 9))
    c = rng.standard_normal((7, 9))

    def loss(x):
        jg.random.seed(99)  # the same mask every evaluation: the function is smooth in x
        return (F.dropout(x, 0.4) * jg.tensor(c)).sum()

    x = jg.Parameter(x0)
    gm = GradManager().attach([x])
    with gm:
        y = loss(x)
        gm.backward(y)
    grad = x.grad.numpy()
    jg.random.seed(99)
    mask = F.dropout(jg.tensor(np.ones_like(x0)), 0.4).numpy()
    np.testing.assert_allclose(grad, mask * c, rtol=1e-12)
    eps = 1e-6
    numeric = np.zeros_like(x0)
    for i in np.ndindex(x0.shape):
        step = np.zeros_like(x0)
        step[i] = eps
        numeric[i] = (loss(jg.tensor(x0 + step)).item() - loss(jg.tensor(x0 - step)).item()) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_traced_dropout_draws_a_fresh_mask_per_call_and_matches_eager():
    @trace(symbolic=True)
    def step(x):
        return F.dropout(x, 0.5)

    ones = np.ones((4, 33), np.float32)
    jg.random.seed(8)
    eager = [F.dropout(jg.tensor(ones), 0.5).numpy() for _ in range(3)]
    jg.random.seed(8)
    traced = [step(ones).numpy() for _ in range(3)]
    assert len(step.executables) == 1
    plan = step.last.compiled.plan
    assert len(plan.in_place) == 1 and plan.end_copies == [], "the generator state is updated in place"
    for e, t in zip(eager, traced):
        np.testing.assert_array_equal(t, e)
    assert not np.array_equal(traced[0], traced[1]) and not np.array_equal(traced[1], traced[2])
    # In distribution too: over many traced calls every element is kept about half the time.
    kept = np.mean([step(ones).numpy() != 0 for _ in range(200)], axis=0)
    assert abs(kept.mean() - 0.5) < 0.02 and kept.min() > 0.3 and kept.max() < 0.7


def test_traced_training_step_with_dropout_matches_eager():
    """The backward pass of a traced step multiplies by the forward mask, exactly as eagerly."""

    nets = []
    for _ in range(2):
        jg.random.seed(4)
        net = M.Sequential(M.Linear(6, 16), M.ReLU(), M.Dropout(0.3), M.Linear(16, 2))
        nets.append((net, optim.SGD(net.parameters(), lr=0.1), GradManager().attach(net.parameters())))

    def body(net, opt, gm, x):
        with gm:
            loss = (net(x) ** 2).mean()
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    traced = trace(lambda x: body(*nets[1], x))
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((5, 6)).astype(np.float32) for _ in range(3)]
    jg.random.seed(17)
    eager_losses = [body(*nets[0], jg.tensor(x)).item() for x in batches]
    jg.random.seed(17)
    traced_losses = [traced(x).item() for x in batches]
    np.testing.assert_allclose(traced_losses, eager_losses, rtol=1e-5)
    for a, b in zip(nets[0][0].parameters(), nets[1][0].parameters()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)


def test_traced_normal_and_uniform_equal_eager_draws():
    """Box-Muller's log/cos/sqrt fuse into one kernel under trace and still give the eager bits."""
    draw = trace(lambda x: (jg.random.normal(size=(3, 50)) + x, jg.random.uniform(-1.0, 1.0, size=7)))
    zero = np.zeros(1, np.float32)
    jg.random.seed(3)
    eager = [(jg.random.normal(size=(3, 50)).numpy(), jg.random.uniform(-1.0, 1.0, size=7).numpy()) for _ in range(2)]
    jg.random.seed(3)
    for (normal, uniform), (traced_normal, traced_uniform) in zip(eager, [draw(zero) for _ in range(2)]):
        np.testing.assert_array_equal(traced_normal.numpy(), normal)
        np.testing.assert_array_equal(traced_uniform.numpy(), uniform)
