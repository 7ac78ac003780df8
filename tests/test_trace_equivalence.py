"""Traced equals eager: whole training steps of generated small MLPs and CNNs.

Two copies of one model (same seed, same initial weights) train on the same
batches, one eagerly and one through `@trace`; after every step the loss,
every parameter, every optimizer slot and every BatchNorm running statistic
must agree to float32 rounding. Models vary in widths, activation, optimizer,
BatchNorm and Dropout (p = 0, eval mode, or training with a fixed seed: the
counter-based generator makes even those masks identical). Shapes are drawn
from a few values so that compiled steps are reused from the disk cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import jitgine as jg
import jitgine.functional as F
import jitgine.module as M
import jitgine.optimizer as optim
from jitgine.autodiff import GradManager
from jitgine.jit import TraceError, trace

ACTIVATIONS = {"relu": M.ReLU, "tanh": M.Tanh, "gelu": M.GELU, "sigmoid": M.Sigmoid}
OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "momentum": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda ps: optim.Adam(ps, lr=0.01),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1),
}
CLASSES = 3
RTOL, ATOL = 2e-5, 2e-6


@dataclass(frozen=True)
class Spec:
    arch: str  # "mlp" (input 6 features) or "cnn" (input 1x6x6)
    widths: tuple[int, ...]
    activation: str
    optimizer: str
    batch_norm: bool
    dropout: str  # "none", "p0", "eval", "train"
    seed: int


specs = st.builds(
    Spec,
    arch=st.sampled_from(["mlp", "cnn"]),
    widths=st.lists(st.sampled_from([4, 8]), min_size=1, max_size=2).map(tuple),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
    optimizer=st.sampled_from(sorted(OPTIMIZERS)),
    batch_norm=st.booleans(),
    dropout=st.sampled_from(["none", "p0", "eval", "train"]),
    seed=st.integers(0, 3),
)


def build(spec: Spec) -> M.Module:
    """The model `spec` describes; a layer followed by BatchNorm has no bias (BatchNorm removes it, and
    Adam would turn its rounding-noise gradient into full-size steps)."""
    jg.random.seed(spec.seed)
    layers: list[M.Module] = []

    def block_tail(bn: M.Module | None) -> None:
        if bn is not None:
            layers.append(bn)
        layers.append(ACTIVATIONS[spec.activation]())
        if spec.dropout != "none":
            drop = M.Dropout(0.0 if spec.dropout == "p0" else 0.3)
            if spec.dropout == "eval":
                drop.eval()
            layers.append(drop)

    if spec.arch == "mlp":
        features = 6
        for width in spec.widths:
            layers.append(M.Linear(features, width, bias=not spec.batch_norm))
            block_tail(M.BatchNorm1d(width) if spec.batch_norm else None)
            features = width
    else:
        channels, side = 1, 6
        for width in spec.widths:
            layers.append(M.Conv2d(channels, width, 3, padding=1, bias=not spec.batch_norm))
            block_tail(M.BatchNorm2d(width) if spec.batch_norm else None)
            channels = width
        layers += [M.MaxPool2d(2), M.Flatten()]
        features = channels * (side // 2) ** 2
    layers.append(M.Linear(features, CLASSES))
    return M.Sequential(*layers)


def batches(spec: Spec, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(spec.seed)
    shape = (6,) if spec.arch == "mlp" else (1, 6, 6)
    return [(rng.standard_normal((n,) + shape).astype(np.float32), rng.integers(0, CLASSES, n).astype(np.int32))
            for n in sizes]


class Trainer:
    def __init__(self, spec: Spec) -> None:
        self.net = build(spec)
        self.opt = OPTIMIZERS[spec.optimizer](self.net.parameters())
        self.gm = GradManager().attach(self.net.parameters())

    def step(self, data, label):
        with self.gm:
            loss = F.loss.cross_entropy(self.net(data), label)
            self.gm.backward(loss)
        self.opt.step().clear_grad()
        return loss


def assert_same_state(eager: Trainer, traced: Trainer, when: str) -> None:
    params_e, params_t = list(eager.net.parameters()), list(traced.net.parameters())
    for (name, a), b in zip(eager.net.named_parameters(), params_t):
        np.testing.assert_allclose(b.numpy(), a.numpy(), RTOL, ATOL, err_msg=f"{when}: parameter {name}")
    for (name, a), (_, b) in zip(eager.net.named_buffers(), traced.net.named_buffers()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), RTOL, ATOL, err_msg=f"{when}: buffer {name}")
    for i, (pa, pb) in enumerate(zip(params_e, params_t)):
        slots_e, slots_t = eager.opt.state.get(id(pa), {}), traced.opt.state.get(id(pb), {})
        assert sorted(slots_e) == sorted(slots_t), f"{when}: parameter {i} has slots {sorted(slots_t)}"
        for key in slots_e:
            np.testing.assert_allclose(slots_t[key].numpy(), slots_e[key].numpy(), RTOL, ATOL,
                                       err_msg=f"{when}: parameter {i} slot {key}")
        assert pb.grad is None, f"{when}: clear_grad() in the traced step left parameter {i} a gradient"


def run_both(spec: Spec, sizes: list[int]) -> tuple[Trainer, Trainer, trace]:
    """Step both copies batch by batch (reseeding before each step, so dropout draws the same masks)
    and compare everything after every step."""
    eager, traced = Trainer(spec), Trainer(spec)
    step = trace(symbolic=True)(traced.step)
    for i, (x, y) in enumerate(batches(spec, sizes)):
        jg.random.seed(100 * spec.seed + i)
        want = eager.step(jg.tensor(x), jg.tensor(y)).item()
        jg.random.seed(100 * spec.seed + i)
        got = step(x, y).item()
        np.testing.assert_allclose(got, want, RTOL, ATOL, err_msg=f"{spec}: loss of step {i}")
        assert_same_state(eager, traced, f"{spec} after step {i}")
    return eager, traced, step


# Explicit examples cover Adam, AdamW and SGD with Nesterov momentum and weight decay, every dropout
# mode but none, BatchNorm on and off, MLP and CNN; hypothesis adds one drawn model. Few, because
# each new model costs a compile of seconds (mostly its GEMMs). Plain SGD steps are compared in
# test_trace.py and test_random.py.
EXAMPLES = [
    Spec("mlp", (8,), "tanh", "adam", True, "train", 1),
    Spec("cnn", (4,), "relu", "momentum", True, "eval", 2),
    Spec("mlp", (4, 8), "gelu", "adamw", False, "p0", 0),
]


@settings(max_examples=1)
@given(spec=specs)
@example(spec=EXAMPLES[0])
@example(spec=EXAMPLES[1])
@example(spec=EXAMPLES[2])
def test_three_traced_steps_equal_three_eager_steps(spec):
    _, _, step = run_both(spec, [4, 4, 4])
    assert len(step.executables) == 1 and step.retraces == 0


def test_new_batch_size_retraces_and_still_matches():
    """Batch sizes 3, 3, 5, 3: one retrace (for 5), then the first compiled step again."""
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((n, 5)).astype(np.float32) for n in (3, 3, 5, 3)]
    (w_e, opt_e, _, loss_e), (w_t, opt_t, _, loss_t) = _vector_model("adam"), _vector_model("adam")

    def step_t(x):
        loss = loss_t(x)
        opt_t.step().clear_grad()
        return loss

    traced = trace(step_t)
    for i, x in enumerate(xs):
        want = loss_e(jg.tensor(x)).item()
        opt_e.step().clear_grad()
        np.testing.assert_allclose(traced(x).item(), want, RTOL, ATOL, err_msg=f"loss of step {i}")
        np.testing.assert_allclose(w_t.numpy(), w_e.numpy(), RTOL, ATOL, err_msg=f"weights after step {i}")
    assert len(traced.executables) == 2 and traced.retraces == 1


@pytest.mark.parametrize("read", [
    lambda t: t.numpy(), lambda t: t.item(), lambda t: float(t), lambda t: bool(t > 0),
])
def test_reading_a_value_in_a_traced_training_step_fails_and_leaves_state_usable(read):
    spec = Spec("mlp", (4,), "relu", "adam", False, "none", 0)
    eager, traced = Trainer(spec), Trainer(spec)

    def bad_step(data, label):
        with traced.gm:
            loss = F.loss.cross_entropy(traced.net(data), label)
            traced.gm.backward(loss)
        read(traced.net[0].weight.grad.sum())
        traced.opt.step().clear_grad()
        return loss

    (x, y), = batches(spec, [4])
    with pytest.raises(TraceError, match="inside a traced function"):
        trace(symbolic=True)(bad_step)(x, y)
    # The failed trace changed nothing: the same model still trains eagerly exactly like a fresh copy.
    for p in traced.net.parameters():
        assert p.grad is None or p.grad._symbol is None
    np.testing.assert_allclose(traced.step(jg.tensor(x), jg.tensor(y)).item(),
                               eager.step(jg.tensor(x), jg.tensor(y)).item(), RTOL, ATOL)
    assert_same_state(eager, traced, "eager step after a failed trace")


def _vector_model(optimizer: str):
    """A model without GEMMs (cheap to compile): loss = mean((x @ w)^2) as a reduction."""
    w = jg.Parameter(np.linspace(-1, 1, 5).astype(np.float32))
    opt = OPTIMIZERS[optimizer]([w])
    gm = GradManager().attach([w])

    def step(x):
        with gm:
            loss = ((x * w).sum(axis=1) ** 2).mean()
            gm.backward(loss)
        return loss

    return w, opt, gm, step


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_loading_optimizer_state_between_traced_steps_takes_effect(optimizer):
    """load_state_dict writes into the slot tensors a traced step captured (new tensors were ignored)."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((3, 5)).astype(np.float32) for _ in range(5)]
    runs = []
    for traced in (False, True):
        w, opt, _, loss_of = _vector_model(optimizer)

        def step(x):
            loss = loss_of(x)
            opt.step().clear_grad()
            return loss

        call = trace(step) if traced else (lambda x: step(jg.tensor(x)))
        call(xs[0]), call(xs[1])
        saved = opt.state_dict()
        call(xs[2])
        opt.load_state_dict(saved)
        call(xs[3]), call(xs[4])
        runs.append((w, opt))
    (w_e, opt_e), (w_t, opt_t) = runs
    np.testing.assert_allclose(w_t.numpy(), w_e.numpy(), RTOL, ATOL)
    for key, slot in opt_e.state[id(w_e)].items():
        np.testing.assert_allclose(opt_t.state[id(w_t)][key].numpy(), slot.numpy(), RTOL, ATOL, err_msg=key)


def test_gradients_accumulate_across_traced_calls_as_eagerly():
    """Two backward passes before each optimizer step: the second call of the traced step must add to
    the gradient the first left (a variant traced for present gradients), as eager execution does."""
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((3, 5)).astype(np.float32) for _ in range(6)]
    w_e, opt_e, _, step_e = _vector_model("momentum")
    w_t, opt_t, _, step_t = _vector_model("momentum")
    step_t = trace(step_t)
    for i, x in enumerate(xs):
        step_e(jg.tensor(x)), step_t(x)
        np.testing.assert_allclose(w_t.grad.numpy(), w_e.grad.numpy(), RTOL, ATOL, err_msg=f"grad after call {i}")
        if i % 2:
            opt_e.step().clear_grad()
            opt_t.step().clear_grad()
    np.testing.assert_allclose(w_t.numpy(), w_e.numpy(), RTOL, ATOL)
    assert step_t.retraces == 1 and len(step_t.executables) == 2
