"""@trace: traced equals eager, retracing, state updates, errors, one native call."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jitgine as jg
import jitgine.functional as F
from codegen import kernels
from jitgine.jit import TraceError, trace


def _step_body(x, w, lr):
    y = F.tanh(x * w + 1.0)
    loss = (y * y).sum()
    w._reset(w - lr * y.mean(axis=0))
    return loss, y


@given(rows=st.integers(1, 9), cols=st.integers(1, 21), steps=st.integers(1, 4))
@settings(max_examples=10)
def test_traced_equals_eager_over_steps(rows, cols, steps):
    rng = np.random.default_rng(rows * 31 + cols)
    start = rng.standard_normal(cols).astype(np.float32)
    w_eager, w_traced = jg.Parameter(start), jg.Parameter(start)
    traced = trace(lambda x: _step_body(x, w_traced, 0.1))
    for _ in range(steps):
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        loss_e, y_e = _step_body(jg.tensor(x), w_eager, 0.1)
        loss_t, y_t = traced(x)
        np.testing.assert_allclose(loss_t.numpy(), loss_e.numpy(), rtol=1e-5)
        np.testing.assert_allclose(y_t.numpy(), y_e.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(w_traced.numpy(), w_eager.numpy(), rtol=1e-6, atol=1e-6)
    assert len(traced.executables) == 1


def test_one_native_call_per_step_and_retrace_on_new_shape():
    w = jg.Parameter(np.ones(4, np.float32))
    step = trace(lambda x: _step_body(x, w, 0.01))
    x = np.ones((3, 4), np.float32)
    step(x)
    compiled = step.last.compiled
    calls, eager_calls = compiled.calls, kernels.stats.native_calls
    step(x)
    assert compiled.calls == calls + 1
    assert kernels.stats.native_calls == eager_calls + 1  # the step's one call; nothing ran eagerly
    assert step.retraces == 0
    step(np.ones((5, 4), np.float32))
    assert step.retraces == 1 and len(step.executables) == 2


@pytest.mark.parametrize("read", [
    lambda t: t.numpy(), lambda t: t.item(), lambda t: float(t), lambda t: bool(t > 0),
])
def test_reading_values_inside_trace_is_a_clear_error(read):
    @trace(symbolic=True)
    def bad(x):
        read(x.sum())
        return x

    with pytest.raises(TraceError, match="inside a traced function"):
        bad(np.ones(3, np.float32))


def test_python_scalars_are_part_of_the_signature():
    @trace
    def scale(x, factor):
        return x * factor

    np.testing.assert_allclose(scale(np.ones(2, np.float32), 2.0).numpy(), [2, 2])
    np.testing.assert_allclose(scale(np.ones(2, np.float32), 3.0).numpy(), [3, 3])
    assert scale.retraces == 1


def mlp_training_step(make_optimizer, seed: int = 0):
    """A small MLP, its traced SGD/Adam training step, and an eager twin with the same weights."""
    import jitgine.module as M
    from jitgine.autodiff import GradManager

    def build():
        jg.random.seed(seed)
        net = M.Sequential(M.Linear(8, 16), M.ReLU(), M.Linear(16, 4))
        opt = make_optimizer(net.parameters())
        gm = GradManager().attach(net.parameters())

        def step(x, y):
            with gm:
                loss = F.nn.cross_entropy(net(x), y)
                gm.backward(loss)
            opt.step().clear_grad()
            return loss

        return net, opt, step

    net, opt, step = build()
    twin, twin_opt, eager_step = build()
    return net, opt, trace(step), twin, twin_opt, eager_step


def _batch(rng):
    return rng.standard_normal((5, 8)).astype(np.float32), rng.integers(0, 4, 5).astype(np.int32)


def _sgd(params):
    import jitgine.optimizer as optim

    return optim.SGD(params, lr=0.1, momentum=0.9)


def _adam(params):
    import jitgine.optimizer as optim

    return optim.Adam(params, lr=0.01)


def _slots(opt) -> list[np.ndarray]:
    return [t.numpy() for slots in opt.state.values() for t in slots.values() if isinstance(t, jg.Tensor)]


@pytest.mark.parametrize("make_optimizer", [_sgd, _adam], ids=["sgd_momentum", "adam"])
def test_in_place_state_updates_match_eager(make_optimizer):
    net, opt, step, twin, twin_opt, eager_step = mlp_training_step(make_optimizer)
    rng = np.random.default_rng(1)
    losses, expected = [], []
    for _ in range(5):
        x, y = _batch(rng)
        losses.append(step(x, y))
        expected.append(eager_step(jg.tensor(x), jg.tensor(y)).numpy())
    # Every kept loss still holds its own step's value (no output array shared with a later step).
    np.testing.assert_allclose([loss.numpy() for loss in losses], expected, rtol=1e-5)
    plan = step.last.compiled.plan
    assert len(plan.in_place) >= 4, plan.summary()  # the updates really are in place
    for p, q in zip(net.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-5, atol=1e-6)
    slots, twin_slots = _slots(opt), _slots(twin_opt)
    assert len(slots) == len(twin_slots) >= 4
    for a, b in zip(slots, twin_slots):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_one_native_call_per_training_step():
    _, _, step, *_ = mlp_training_step(_sgd)
    rng = np.random.default_rng(2)
    step(*_batch(rng))
    for _ in range(3):
        x, y = _batch(rng)
        before = kernels.stats.native_calls
        step(x, y)
        assert kernels.stats.native_calls == before + 1


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_memory_stays_flat_over_1000_training_steps():
    _, _, step, *_ = mlp_training_step(_sgd)
    x, y = _batch(np.random.default_rng(3))
    for _ in range(50):
        step(x, y)
    rss = _rss_bytes()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(1000):
        step(x, y)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after - before < 64 * 1024, f"traced memory grew by {after - before} bytes over 1000 steps"
    assert _rss_bytes() - rss < 4 * 2**20, "resident memory grew by more than 4 MiB over 1000 steps"


def test_returned_gradients_are_fresh_unless_dropped():
    """Gradients left in .grad (no clear_grad in the step) are graph outputs: one kept from an
    earlier step never changes, and the values match eager backward."""
    from jitgine.autodiff import GradManager

    w = jg.Parameter(np.ones(4, np.float32))
    gm = GradManager().attach([w])

    @trace(symbolic=True)
    def grad_step(x):
        with gm:
            loss = (x * w).sum()
            gm.backward(loss)
        return loss

    grad_step(np.full(4, 1, np.float32))
    kept = w.grad
    w.grad = None
    grad_step(np.full(4, 2, np.float32))
    np.testing.assert_array_equal(kept.numpy(), 1)
    np.testing.assert_array_equal(w.grad.numpy(), 2)
    w.grad = None
    grad_step(np.full(4, 3, np.float32))
    np.testing.assert_array_equal(kept.numpy(), 1)
    np.testing.assert_array_equal(w.grad.numpy(), 3)


def test_nested_results_are_rebuilt():
    @trace
    def many(x):
        return {"double": x * 2, "pair": (x + 1, [x - 1])}

    out = many(np.zeros(2, np.float32))
    np.testing.assert_allclose(out["double"].numpy(), [0, 0])
    np.testing.assert_allclose(out["pair"][1][0].numpy(), [-1, -1])


def test_train_eval_switch_retraces_and_lr_change_takes_effect():
    import jitgine.module as M
    import jitgine.optimizer as optim
    from jitgine.autodiff import GradManager

    jg.random.seed(0)
    net = M.Sequential(M.Linear(4, 3), M.ReLU())
    opt = optim.SGD(net.parameters(), lr=0.0)
    gm = GradManager().attach(net.parameters())

    @trace(symbolic=True)
    def train_step(x):
        with gm:
            loss = net(x).sum()
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    x = np.ones((2, 4), np.float32)
    before = [p.numpy() for p in net.parameters()]
    train_step(x)
    assert all(np.array_equal(b, p.numpy()) for b, p in zip(before, net.parameters())), "lr 0 moved weights"
    opt.param_groups[0]["lr"] = 0.5
    train_step(x)
    assert not all(np.array_equal(b, p.numpy()) for b, p in zip(before, net.parameters())), "new lr ignored"
    assert train_step.retraces == 0
    net.eval()
    train_step(x)
    assert train_step.retraces == 1
    net.train()  # back to the first signature: an epoch's evaluation must not recompile the step
    net.eval()
    net.train()
    train_step(x)
    assert train_step.retraces == 1 and len(train_step.executables) == 2


def test_changed_momentum_or_weight_decay_retraces_and_matches_eager():
    """Hyperparameters other than lr are constants of the traced step: changing one retraces on
    the next call (never runs stale code), and traced stays equal to eager across the change."""
    import jitgine.module as M
    import jitgine.optimizer as optim
    from jitgine.autodiff import GradManager

    def make(traced: bool):
        jg.random.seed(3)
        net = M.Sequential(M.Linear(5, 4), M.ReLU(), M.Linear(4, 2))
        opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        gm = GradManager().attach(net.parameters())

        def step(x):
            with gm:
                loss = (net(x) ** 2).mean()
                gm.backward(loss)
            opt.step().clear_grad()
            return loss

        return net, opt, (trace(step) if traced else step)

    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(3, 5)
    runs = {}
    for traced in (False, True):
        net, opt, step = make(traced)
        losses = [float(step(x).numpy())]
        losses.append(float(step(x).numpy()))
        opt.param_groups[0]["momentum"] = 0.5
        if traced:
            reason = step._why(step._signature((x,), {})[1])
            assert "SGD hyperparameters changed" in reason and "('momentum', 0.5)" in reason, reason
        losses.append(float(step(x).numpy()))
        opt.param_groups[0]["weight_decay"] = 0.1
        losses += [float(step(x).numpy()) for _ in range(2)]
        runs[traced] = (losses, [p.numpy() for p in net.parameters()], step)
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-5)
    for traced_p, eager_p in zip(runs[True][1], runs[False][1]):
        np.testing.assert_allclose(traced_p, eager_p, rtol=1e-5, atol=1e-6)
    assert runs[True][2].retraces == 2


def test_rank0_array_argument_keeps_its_rank():
    @trace(symbolic=True)
    def scale(x, s):
        return x * s

    out = scale(np.arange(3, dtype=np.float32), np.array(2.0, np.float32))
    np.testing.assert_array_equal(out.numpy(), [0.0, 2.0, 4.0])
    assert "f32[]" in scale.ir("input")


def test_a_traced_step_allocates_nothing():
    """Convolution scratch and GEMM packing buffers live in the arena's scratch region: a traced
    step with direct and im2col convolutions (stride 2: col2im and im2col GEMMs in the backward)
    and a fused matmul never falls back to malloc."""
    import ctypes

    from codegen.gemm import FALLBACK_ALLOCATIONS_SYMBOL
    from jitgine.autodiff import GradManager
    from jitgine.optimizer import SGD

    rng = np.random.default_rng(4)
    w1 = jg.Parameter(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3)
    w2 = jg.Parameter(rng.standard_normal((64, 10)).astype(np.float32) * 0.3)
    gm, opt = GradManager().attach([w1, w2]), SGD([w1, w2], lr=0.01)

    @trace
    def step(x):
        with gm:
            hidden = F.relu(F.conv2d(x, w1, stride=2, padding=1))
            loss = (F.matmul(hidden.reshape(2, 64), w2) ** 2).mean()
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    losses = [step(rng.standard_normal((2, 3, 8, 8)).astype(np.float32)).numpy() for _ in range(3)]
    compiled = step.last.compiled
    assert compiled.plan.arena_bytes < compiled.arena.nbytes  # a scratch region follows the buffers
    counter = ctypes.c_int64.from_address(compiled._object.address(FALLBACK_ALLOCATIONS_SYMBOL))
    assert counter.value == 0
    assert np.isfinite(losses).all()
