"""The composites MegEngine scripts reach for beyond the core contract: selection (gather,
indexing_one_hot, topk), creation and repetition (linspace, eye, repeat, tile), nn ops
(layer_norm, hswish, logsigmoid, prelu, normalize, embedding), conv1d, conv_transpose2d,
adaptive pooling, and their layers: against NumPy float64 references, with central-difference
gradients, eager and traced."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jitgine as jg
import jitgine.functional as F
import jitgine.module as M
import jitgine.optimizer as optim
from jitgine.autodiff import GradManager
from jitgine.jit import trace
from test_autodiff import check_grad

small_dims = st.integers(1, 5)


def _array(seed: int, shape, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ selection

@settings(max_examples=25)
@given(shape=st.lists(small_dims, min_size=1, max_size=3).map(tuple), data=st.data(), seed=st.integers(0, 999))
def test_gather_matches_take_along_axis(shape, data, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    picks = data.draw(st.integers(0, 6))  # 0: an empty gather
    index_shape = list(shape)
    index_shape[axis] = picks
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    index = rng.integers(0, shape[axis], index_shape).astype(np.int32)
    got = F.gather(jg.tensor(x), axis, jg.tensor(index)).numpy()
    np.testing.assert_array_equal(got, np.take_along_axis(x, index, axis))


def test_gather_and_indexing_one_hot_gradients_and_errors():
    x = _array(1, (3, 4, 2))
    index = np.array([[[1, 0], [3, 3]], [[0, 0], [2, 1]], [[3, 2], [1, 0]]], np.int32)
    check_grad(lambda t: F.gather(t, 1, jg.tensor(index)), x)
    labels = np.array([[0, 3], [2, 2], [1, 0]], np.int32)
    got = F.indexing_one_hot(jg.tensor(x), jg.tensor(labels), axis=1).numpy()
    np.testing.assert_array_equal(got, np.take_along_axis(x, labels[:, None], 1)[:, 0])
    assert F.indexing_one_hot(jg.tensor(x), jg.tensor(labels), 1, keepdims=True).shape == (3, 1, 2)
    check_grad(lambda t: F.indexing_one_hot(t, jg.tensor(labels), axis=1), x)
    with pytest.raises(TypeError, match="gather: index must be an integer"):
        F.gather(jg.tensor(x), 1, jg.tensor(index.astype(np.float32)))
    with pytest.raises(ValueError, match=r"gather: index shape \(3, 2, 1\) must equal the input shape"):
        F.gather(jg.tensor(x), 1, jg.tensor(index[:, :, :1]))
    with pytest.raises(IndexError, match="use F.gather"):
        jg.tensor(x)[jg.tensor(labels)]


@settings(max_examples=20)
@given(rows=st.integers(1, 4), columns=st.integers(1, 9), data=st.data(), seed=st.integers(0, 999))
def test_topk_matches_a_stable_sort(rows, columns, data, seed):
    k = data.draw(st.integers(1, columns))
    descending = data.draw(st.booleans())
    x = np.random.default_rng(seed).integers(-3, 4, (rows, columns)).astype(np.float32)  # ties
    values, indices = F.topk(jg.tensor(x), k, descending=descending)
    order = np.argsort(-x if descending else x, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(indices.numpy(), order)
    np.testing.assert_array_equal(values.numpy(), np.take_along_axis(x, order, 1))
    assert indices.dtype == np.int32
    kth_value, kth_index = F.topk(jg.tensor(x), k, descending=descending, kth_only=True)
    np.testing.assert_array_equal(kth_index.numpy(), order[:, -1])


def test_topk_gradient_reaches_the_chosen_elements_and_bad_k_is_refused():
    x = _array(2, (2, 5))
    check_grad(lambda t: F.topk(t, 2, descending=True)[0], x)
    with pytest.raises(ValueError, match=r"topk: k must be in \[1, 5\]"):
        F.topk(jg.tensor(x), 6)
    with pytest.raises(ValueError, match="topk: expects a 2-D tensor"):
        F.topk(jg.tensor(x[0]), 1)


# ------------------------------------------------------------------ creation and repetition

@settings(max_examples=25)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple), repeats=st.integers(0, 3),
       data=st.data())
def test_repeat_and_tile_match_numpy(shape, repeats, data):
    x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    np.testing.assert_array_equal(F.repeat(jg.tensor(x), repeats, axis).numpy(), np.repeat(x, repeats, axis))
    reps = tuple(data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=4)))
    np.testing.assert_array_equal(F.tile(jg.tensor(x), reps).numpy(), np.tile(x, reps))


def test_repeat_and_tile_gradients_sum_the_copies():
    x = _array(3, (2, 3))
    check_grad(lambda t: F.repeat(t, 2, axis=1), x)
    check_grad(lambda t: F.tile(t, (2, 1, 2)), x)


@pytest.mark.parametrize("start,stop,num", [(0.0, 1.0, 5), (-2.5, 3.0, 1), (1.0, -1.0, 7), (0.0, 1.0, 0)])
def test_linspace_and_eye(start, stop, num):
    np.testing.assert_allclose(F.linspace(start, stop, num).numpy(), np.linspace(start, stop, num), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_array_equal(F.eye(3).numpy(), np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(F.eye(2, 4, dtype="int32").numpy(), np.eye(2, 4, dtype=np.int32))


# ------------------------------------------------------------------ nn composites

def _layer_norm_ref(x, axes, w, b, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


@settings(max_examples=20)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), data=st.data(), seed=st.integers(0, 999))
def test_layer_norm_matches_numpy(shape, data, seed):
    trailing = data.draw(st.integers(1, len(shape)))
    normalized = shape[len(shape) - trailing:]
    x, w, b = _array(seed, shape), _array(seed + 1, normalized), _array(seed + 2, normalized)
    got = F.layer_norm(jg.tensor(x), normalized, True, jg.tensor(w), jg.tensor(b), eps=1e-5).numpy()
    axes = tuple(range(len(shape) - trailing, len(shape)))
    np.testing.assert_allclose(got, _layer_norm_ref(x, axes, w, b, 1e-5), rtol=1e-9, atol=1e-9)


def test_nn_composites_gradients_and_values():
    x = _array(4, (2, 3, 4))
    w, b = _array(5, (4,)), _array(6, (4,))
    check_grad(lambda t, u, v: F.layer_norm(t, 4, True, u, v), x, w, b)
    check_grad(F.hswish, x * 4)
    check_grad(F.logsigmoid, x * 4)
    np.testing.assert_allclose(F.logsigmoid(jg.tensor(np.array([-800.0, 0.0, 800.0]))).numpy(),
                               [-800.0, -math.log(2.0), 0.0])
    slopes = np.array([0.1, -0.5, 2.0])
    check_grad(lambda t, s: F.prelu(t, s), x, slopes)
    np.testing.assert_allclose(F.prelu(jg.tensor(x), jg.tensor(slopes)).numpy(),
                               np.where(x > 0, x, x * slopes[None, :, None]))
    check_grad(lambda t: F.normalize(t, axis=2), x)
    np.testing.assert_allclose(F.normalize(jg.tensor(x), axis=2).numpy(),
                               x / np.linalg.norm(x, axis=2, keepdims=True), rtol=1e-12)
    with pytest.raises(ValueError, match="layer_norm: normalized_shape"):
        F.layer_norm(jg.tensor(x), 3, False)


def test_embedding_selects_rows_and_its_gradient_sums_them():
    table = _array(7, (6, 3))
    indices = np.array([[0, 5, 5], [2, 0, 1]], np.int32)
    got = F.embedding(jg.tensor(indices), jg.tensor(table)).numpy()
    np.testing.assert_array_equal(got, table[indices])
    check_grad(lambda t: F.embedding(jg.tensor(indices), t), table)


# ------------------------------------------------------------------ convolution and pooling

def _conv_transpose_ref(x, w, stride, padding, output_padding, groups=1):
    """Scatter form in float64: every input pixel adds its weights into the output."""
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    oh = (h - 1) * stride[0] - 2 * padding[0] + kh + output_padding[0]
    ow = (wd - 1) * stride[1] - 2 * padding[1] + kw + output_padding[1]
    full = np.zeros((n, cog * groups, oh + 2 * padding[0] + kh, ow + 2 * padding[1] + kw))
    cig = cin // groups
    for g in range(groups):
        for i in range(h):
            for j in range(wd):
                contribution = np.einsum("nc,cokl->nokl", x[:, g * cig:(g + 1) * cig, i, j], w[g * cig:(g + 1) * cig])
                full[:, g * cog:(g + 1) * cog, i * stride[0]:i * stride[0] + kh,
                     j * stride[1]:j * stride[1] + kw] += contribution
    return full[:, :, padding[0]:padding[0] + oh, padding[1]:padding[1] + ow]


@settings(max_examples=20)
@given(n=st.integers(1, 2), groups=st.integers(1, 2), cig=st.integers(1, 3), cog=st.integers(1, 3),
       hw=st.tuples(st.integers(1, 5), st.integers(1, 5)), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), data=st.data(), seed=st.integers(0, 999))
def test_conv_transpose2d_matches_the_scatter_definition(n, groups, cig, cog, hw, k, stride, data, seed):
    padding = tuple(data.draw(st.integers(0, kk - 1)) for kk in k)
    output_padding = tuple(data.draw(st.integers(0, s - 1)) for s in stride)
    if any((size - 1) * s - 2 * p + kk + e < 1 for size, s, p, kk, e in zip(hw, stride, padding, k, output_padding)):
        return
    x = _array(seed, (n, cig * groups, *hw))
    w = _array(seed + 1, (cig * groups, cog, *k))
    got = F.conv_transpose2d(jg.tensor(x), jg.tensor(w), stride=stride, padding=padding,
                             output_padding=output_padding, groups=groups).numpy()
    np.testing.assert_allclose(got, _conv_transpose_ref(x, w, stride, padding, output_padding, groups),
                               rtol=1e-10, atol=1e-10)


def test_conv_transpose2d_and_conv1d_gradients():
    x, w, b = _array(8, (2, 3, 3, 4)), _array(9, (3, 2, 3, 2)), _array(10, (2,))
    check_grad(lambda t, u, v: F.conv_transpose2d(t, u, v, stride=2, padding=1, output_padding=1), x, w, b)
    x1, w1 = _array(11, (2, 3, 7)), _array(12, (4, 3, 3))
    check_grad(lambda t, u: F.conv1d(t, u, stride=2, padding=1), x1, w1)
    expected = np.stack([np.einsum("ncl,ocl->no", np.pad(x1, ((0, 0), (0, 0), (1, 1)))[:, :, 2 * i:2 * i + 3], w1)
                         for i in range(4)], axis=2)
    np.testing.assert_allclose(F.conv1d(jg.tensor(x1), jg.tensor(w1), stride=2, padding=1).numpy(), expected,
                               rtol=1e-10)
    with pytest.raises(ValueError, match="conv_transpose2d: output_padding"):
        F.conv_transpose2d(jg.tensor(x), jg.tensor(w), stride=1, output_padding=1)


def _adaptive_ref(x, out_hw, reduce):
    h, w = x.shape[2:]
    rows = [(i * h // out_hw[0], -(-(i + 1) * h // out_hw[0])) for i in range(out_hw[0])]
    cols = [(j * w // out_hw[1], -(-(j + 1) * w // out_hw[1])) for j in range(out_hw[1])]
    return np.stack([np.stack([reduce(x[:, :, r0:r1, c0:c1], axis=(2, 3)) for c0, c1 in cols], -1)
                     for r0, r1 in rows], -2)


@settings(max_examples=20)
@given(hw=st.tuples(st.integers(1, 9), st.integers(1, 9)), data=st.data(), seed=st.integers(0, 999))
def test_adaptive_pooling_matches_the_window_definition(hw, data, seed):
    out_hw = tuple(data.draw(st.integers(1, size)) for size in hw)
    x = _array(seed, (2, 3, *hw))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(jg.tensor(x), out_hw).numpy(), _adaptive_ref(x, out_hw, np.mean),
                               rtol=1e-12)
    np.testing.assert_array_equal(F.adaptive_max_pool2d(jg.tensor(x), out_hw).numpy(),
                                  _adaptive_ref(x, out_hw, np.max))


def test_adaptive_pooling_gradients():
    x = _array(13, (1, 2, 5, 4))
    check_grad(lambda t: F.adaptive_avg_pool2d(t, (2, 3)), x)
    check_grad(lambda t: F.adaptive_avg_pool2d(t, 1), x)


# ------------------------------------------------------------------ layers, eager and traced

def test_layers_shapes_parameters_and_state_dict():
    assert M.LayerNorm(4)(jg.tensor(np.ones((2, 4), np.float32))).shape == (2, 4)
    embedding = M.Embedding(10, 3)
    assert embedding(jg.tensor(np.array([[1, 9]], np.int32))).shape == (1, 2, 3)
    assert M.Conv1d(3, 5, 3, padding=1)(jg.tensor(np.ones((2, 3, 8), np.float32))).shape == (2, 5, 8)
    up = M.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    assert up(jg.tensor(np.ones((1, 4, 5, 5), np.float32))).shape == (1, 2, 10, 10)
    assert M.AdaptiveAvgPool2d((2, 3))(jg.tensor(np.ones((1, 2, 7, 7), np.float32))).shape == (1, 2, 2, 3)
    assert M.AdaptiveMaxPool2d(1)(jg.tensor(np.ones((1, 2, 7, 7), np.float32))).shape == (1, 2, 1, 1)
    prelu = M.PReLU(3)
    np.testing.assert_array_equal(prelu.weight.numpy(), np.full(3, 0.25, np.float32))
    heads = M.ModuleDict({"a": M.Linear(2, 3), "b": M.Linear(3, 1)})
    heads["c"] = M.ReLU()
    assert list(heads) == ["a", "b", "c"] and "b" in heads and len(heads) == 3
    assert sorted(heads.state_dict()) == ["a.bias", "a.weight", "b.bias", "b.weight"]
    del heads["b"]
    assert heads.keys() == ["a", "c"] and sorted(k for k, _ in heads.named_parameters()) == ["a.bias", "a.weight"]
    with pytest.raises(KeyError, match="must be a Python identifier"):
        heads["not a name"] = M.ReLU()


class _Decoder(M.Module):
    """A tiny net using the new layers: embedding, layer norm, a transposed convolution, adaptive pooling."""

    def __init__(self):
        super().__init__()
        self.embed = M.Embedding(5, 8)
        self.norm = M.LayerNorm(8)
        self.up = M.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1)
        self.pool = M.AdaptiveAvgPool2d((3, 2))
        self.act = M.PReLU()

    def forward(self, tokens):
        h = self.norm(self.embed(tokens))  # (N, 4, 8)
        h = F.reshape(h, (h.shape[0], 2, 4, 4))
        return self.act(self.pool(self.up(h)))


def test_traced_training_step_with_the_new_layers_matches_eager():
    tokens = np.array([[0, 4, 2, 2], [1, 3, 0, 4]], np.int32)
    target = _array(14, (2, 3, 3, 2), np.float32)
    results = []
    for traced in (False, True):
        jg.random.seed(3)
        net = _Decoder()
        gm = GradManager().attach(net.parameters())
        opt = optim.SGD(net.parameters(), lr=0.1)

        def step(t, y):
            with gm:
                loss = F.mean(F.square(net(t) - y))
                gm.backward(loss)
            opt.step().clear_grad()
            return loss

        run = trace(step) if traced else step
        losses = [float(run(jg.tensor(tokens), jg.tensor(target)).numpy()) for _ in range(3)]
        results.append((losses, [p.numpy() for p in net.parameters()]))
    (eager_losses, eager_params), (traced_losses, traced_params) = results
    np.testing.assert_allclose(traced_losses, eager_losses, rtol=1e-5)
    assert eager_losses[-1] < eager_losses[0]
    for a, b in zip(traced_params, eager_params):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
