"""Modules: discovery order and names, state dicts, modes, initialisation, layers."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import jitgine as jg
import jitgine.functional as F
import jitgine.module as M
import jitgine.random
from jitgine.autodiff import GradManager


class Block(M.Module):
    def __init__(self):
        super().__init__()
        self.linear = M.Linear(4, 3)
        self.scale = jg.Parameter(np.ones(3, np.float32))
        self.count = jg.tensor(np.zeros((), np.int32))  # a buffer

    def forward(self, x):
        return F.relu(self.linear(x)) * self.scale


class Net(M.Module):
    def __init__(self):
        super().__init__()
        self.first = Block()
        self.layers = [M.Linear(3, 3), M.Tanh()]
        self.heads = {"a": M.Linear(3, 2), "b": M.Linear(3, 1, bias=False)}
        self.bn = M.BatchNorm1d(3)
        self.seq = M.Sequential(M.Identity(), M.Linear(3, 2))

    def forward(self, x):
        x = self.first(x)
        for layer in self.layers:
            x = layer(x)
        return self.seq(self.bn(x))


def test_names_follow_definition_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "first.linear.weight", "first.linear.bias", "first.scale", "layers.0.weight", "layers.0.bias",
        "heads.a.weight", "heads.a.bias", "heads.b.weight", "bn.weight", "bn.bias", "seq.1.weight", "seq.1.bias",
    ]
    assert [n for n, _ in net.named_buffers()] == ["first.count", "bn.running_mean", "bn.running_var"]
    assert [n for n, _ in net.named_children()] == ["first", "layers.0", "layers.1", "heads.a", "heads.b", "bn", "seq"]
    assert [n for n, _ in net.named_modules()] == [
        "", "first", "first.linear", "layers.0", "layers.1", "heads.a", "heads.b", "bn", "seq", "seq.0", "seq.1"]
    assert len(list(net.tensors())) == len(list(net.parameters())) + len(list(net.buffers()))
    assert [n for n, _ in net.first.named_parameters(prefix="x", recursive=False)] == ["x.scale"]


def test_shared_parameters_are_listed_once():
    class Tied(M.Module):
        def __init__(self):
            super().__init__()
            self.a = M.Linear(2, 2)
            self.b = self.a

    assert [n for n, _ in Tied().named_parameters()] == ["a.weight", "a.bias"]


def test_state_dict_is_read_only_and_round_trips():
    net, other = Net(), Net()
    state = net.state_dict()
    assert isinstance(state, OrderedDict) and list(state) == [n for n, _ in net.named_tensors()]
    with pytest.raises(ValueError):
        state["first.scale"][0] = 5.0
    other.load_state_dict(state)
    for (name, a), (_, b) in zip(net.named_tensors(), other.named_tensors()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    x = jg.tensor(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32))
    net.eval(), other.eval()
    np.testing.assert_array_equal(net(x).numpy(), other(x).numpy())


def test_strict_loading_reports_missing_unexpected_and_shape_errors():
    net = Net()
    state = dict(net.state_dict())
    del state["bn.bias"]
    state["extra.weight"] = np.zeros(2)
    with pytest.raises(KeyError, match=r"missing keys \['bn.bias'\].*unexpected keys \['extra.weight'\]"):
        net.load_state_dict(state)
    before = net.first.scale.numpy()
    state["first.scale"] = np.full(3, 7.0)
    net.load_state_dict(state, strict=False)
    np.testing.assert_array_equal(net.first.scale.numpy(), np.full(3, 7.0, np.float32))
    assert net.first.scale.dtype == np.float32 and before.shape == (3,)
    state["first.scale"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"'first.scale' has shape \(4,\)"):
        net.load_state_dict(state, strict=False)


def test_load_state_dict_with_a_callable():
    net = Net()
    net.load_state_dict(lambda name, t: np.zeros(t.shape) if name.endswith("bias") else None)
    assert all(not p.numpy().any() for n, p in net.named_parameters() if n.endswith("bias"))
    assert net.first.scale.numpy().all()


def test_train_eval_and_zero_grad():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert net.seq[1].training
    gm = GradManager().attach(net.parameters())
    with gm:
        gm.backward(net(jg.tensor(np.ones((2, 4), np.float32))).sum())
    assert net.seq[1].weight.grad is not None
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_linear_init_range_and_seed():
    jitgine.random.seed(3)
    a = M.Linear(50, 40)
    jitgine.random.seed(3)
    b = M.Linear(50, 40)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    bound = 1 / np.sqrt(50)
    for p in (a.weight, a.bias):
        values = p.numpy()
        assert p.dtype == np.float32 and np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.9 * bound  # uses the whole range
    assert a.weight.shape == (40, 50) and a.bias.shape == (40,)
    x = np.random.default_rng(0).standard_normal((3, 50)).astype(np.float32)
    np.testing.assert_allclose(a(jg.tensor(x)).numpy(), x @ a.weight.numpy().T + a.bias.numpy(), rtol=1e-5, atol=1e-6)


def test_batchnorm_matches_megengine_semantics():
    bn = M.BatchNorm2d(3)
    x = np.random.default_rng(1).standard_normal((4, 3, 2, 2)).astype(np.float32) * 2 + 1
    out = bn(jg.tensor(x)).numpy()
    mean = x.mean((0, 2, 3), keepdims=True)
    var = x.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var * 16 / 15, rtol=1e-5)
    bn.eval()
    out = bn(jg.tensor(x)).numpy()
    np.testing.assert_allclose(out, (x - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + 1e-5),
                               rtol=1e-5, atol=1e-5)
    bn1 = M.BatchNorm1d(3)
    assert bn1(jg.tensor(x[:, :, 0, 0])).shape == (4, 3)
    with pytest.raises(ValueError, match="channels"):
        bn1(jg.tensor(np.ones((2, 5), np.float32)))


def test_layers_and_containers():
    x = jg.tensor(np.linspace(-2, 2, 12, dtype=np.float32).reshape(2, 2, 3))
    v = x.numpy()
    np.testing.assert_allclose(M.LeakyReLU(0.2)(x).numpy(), np.where(v > 0, v, 0.2 * v))
    np.testing.assert_allclose(M.ReLU()(x).numpy(), np.maximum(v, 0))
    np.testing.assert_allclose(M.Sigmoid()(x).numpy(), 1 / (1 + np.exp(-v)), rtol=1e-6)
    np.testing.assert_allclose(M.Tanh()(x).numpy(), np.tanh(v), rtol=1e-6)
    assert M.GELU()(x).shape == x.shape and M.Identity()(x) is x
    assert M.Flatten()(x).shape == (2, 6)
    drop = M.Dropout(0.5)
    kept = drop(x).numpy()
    assert np.all((kept == 0) | np.isclose(kept, 2 * v))
    assert drop.eval()(x) is x
    seq = M.Sequential(M.Flatten(), M.Linear(6, 4), M.ReLU())
    assert len(seq) == 3 and isinstance(seq[1], M.Linear) and len(seq[1:]) == 2
    assert seq(x).shape == (2, 4)
    named = M.Sequential(OrderedDict(fc=M.Linear(2, 2), act=M.ReLU()))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    blocks = M.ModuleList([M.Linear(2, 2)])
    blocks.append(M.Linear(2, 2))
    assert [n for n, _ in blocks.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert "Linear(in_features=6, out_features=4" in repr(seq)
