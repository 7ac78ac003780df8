"""Shape ops, creation ops, basic indexing and the Tensor API against NumPy."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jitgine as jg
import jitgine.functional as F

SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)


def arrays(shape=SHAPES, dtype=np.float32):
    return hnp.arrays(dtype, shape, elements=st.integers(-50, 50).map(float) if dtype == np.float32 else None)


def same(t: jg.Tensor, expected: np.ndarray) -> None:
    assert isinstance(t, jg.Tensor)
    assert t.shape == expected.shape, (t.shape, expected.shape)
    assert t.dtype == expected.dtype, (t.dtype, expected.dtype)
    np.testing.assert_array_equal(t.numpy(), expected)


# ----------------------------------------------------------------------------- reshape family
@given(data=st.data())
def test_reshape_and_flatten(data):
    a = data.draw(arrays())
    x = jg.tensor(a)
    factors = [d for d in range(1, a.size + 1) if a.size % d == 0] if a.size else [1]
    first = data.draw(st.sampled_from(factors))
    if a.size:
        same(F.reshape(x, (first, -1)), a.reshape(first, -1))
        same(x.reshape(-1, first), a.reshape(-1, first))
    same(x.reshape(a.size), a.reshape(a.size))
    same(F.flatten(x), a.reshape(-1))
    if a.ndim >= 2:
        same(x.flatten(1), a.reshape(a.shape[0], int(np.prod(a.shape[1:]))))
        same(F.flatten(x, 0, 1), a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:]))
    # Reshape of a non-contiguous view copies in the right order.
    same(x.T.reshape(-1), a.T.reshape(-1))


@given(data=st.data())
def test_transpose(data):
    a = data.draw(arrays())
    perm = data.draw(st.permutations(range(a.ndim)))
    x = jg.tensor(a)
    same(F.transpose(x, perm), a.transpose(perm))
    same(x.transpose(*perm) if perm else x.transpose(), a.transpose(perm))
    same(x.T, a.T)
    # A transposed view feeds a kernel through its strides.
    same(F.transpose(x, perm) + 1.0, a.transpose(perm) + np.float32(1))


@given(data=st.data())
def test_expand_dims_and_squeeze(data):
    a = data.draw(arrays(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)))
    x = jg.tensor(a)
    axis = data.draw(st.integers(-a.ndim - 1, a.ndim))
    same(F.expand_dims(x, axis), np.expand_dims(a, axis))
    same(F.squeeze(x), np.squeeze(a))
    ones = [i for i, d in enumerate(a.shape) if d == 1]
    if ones:
        axis = data.draw(st.sampled_from(ones))
        same(F.squeeze(x, axis), np.squeeze(a, axis))
        same(F.squeeze(x, axis - a.ndim), np.squeeze(a, axis))


@given(data=st.data())
def test_broadcast_to(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=1, max_dims=4, max_side=4))
    a = data.draw(arrays(shapes.input_shapes[0]))
    b = F.broadcast_to(jg.tensor(a), shapes.result_shape)
    same(b, np.broadcast_to(a, shapes.result_shape))
    same(b * 2.0, np.broadcast_to(a, shapes.result_shape) * np.float32(2))


# ----------------------------------------------------------------------------- joining and splitting
@given(data=st.data())
def test_concat_and_stack(data):
    base = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    axis = data.draw(st.integers(-len(base), len(base) - 1))
    parts = []
    for _ in range(data.draw(st.integers(1, 4))):
        shape = list(base)
        shape[axis] = data.draw(st.integers(0, 4))
        parts.append(data.draw(arrays(tuple(shape))))
    same(F.concat([jg.tensor(p) for p in parts], axis), np.concatenate(parts, axis))
    same_shape = [data.draw(arrays(base)) for _ in range(len(parts))]
    stack_axis = data.draw(st.integers(-len(base) - 1, len(base)))
    same(F.stack([jg.tensor(p) for p in same_shape], stack_axis), np.stack(same_shape, stack_axis))


def test_concat_promotes_and_takes_views():
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    b = np.arange(6, dtype=np.float32).reshape(3, 2)
    same(F.concat([jg.tensor(a), jg.tensor(b).T], 0), np.concatenate([a, b.T], 0).astype(np.float32))
    same(F.concat([jg.tensor(a)[:, ::2], jg.tensor(a)], 1), np.concatenate([a[:, ::2], a], 1))


@given(data=st.data())
def test_split(data):
    a = data.draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)))
    axis = data.draw(st.integers(-a.ndim, a.ndim - 1))
    size = a.shape[axis]
    n = data.draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]))
    parts = F.split(jg.tensor(a), n, axis)
    for got, expected in zip(parts, np.split(a, n, axis), strict=True):
        same(got, expected)
    cuts = sorted(data.draw(st.lists(st.integers(0, size), max_size=3)))
    for got, expected in zip(F.split(jg.tensor(a), cuts, axis), np.split(a, cuts, axis), strict=True):
        same(got, expected)


@given(data=st.data())
def test_pad(data):
    a = data.draw(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)))
    widths = [tuple(data.draw(st.tuples(st.integers(0, 3), st.integers(0, 3)))) for _ in range(a.ndim)]
    value = data.draw(st.sampled_from([0.0, -1.5, 7.0]))
    same(F.pad(jg.tensor(a), widths, constant_value=value), np.pad(a, widths, constant_values=value))
    same(F.pad(jg.tensor(a).T, widths[::-1]), np.pad(a.T, widths[::-1]))


# ----------------------------------------------------------------------------- creation
def test_creation_ops():
    same(F.zeros((2, 3)), np.zeros((2, 3), np.float32))
    same(F.ones(4), np.ones(4, np.float32))
    same(F.ones((2,), "int32"), np.ones(2, np.int32))
    same(F.zeros((0, 3), "int64"), np.zeros((0, 3), np.int64))
    same(F.full((2, 2), 7), np.full((2, 2), 7, np.int32))
    same(F.full((3,), 1.5), np.full(3, 1.5, np.float32))
    same(F.full((2,), True), np.full(2, True))
    same(F.full((2,), 3, "float64"), np.full(2, 3.0))
    same(F.full((), 2.5), np.array(2.5, np.float32))
    x = jg.tensor(np.arange(6, dtype=np.int64).reshape(2, 3))
    same(F.zeros_like(x), np.zeros((2, 3), np.int64))
    same(F.ones_like(x), np.ones((2, 3), np.int64))
    same(F.full_like(x, 9), np.full((2, 3), 9, np.int64))


@pytest.mark.parametrize("args, kwargs", [
    ((5,), {}), ((0,), {}), ((1, 7, 2), {}), ((0, 1, 0.25), {}), ((3, 0), {}), ((-3, 3), {}),
    ((10,), {"dtype": "int32"}), ((2, 11, 3), {"dtype": "int32"}), ((4,), {"dtype": "float64"}),
])
def test_arange(args, kwargs):
    expected = np.arange(*args, dtype=kwargs.get("dtype", "float32"))
    same(F.arange(*args, **kwargs), expected)


# ----------------------------------------------------------------------------- indexing
@st.composite
def basic_index(draw, shape):
    """A tuple of ints (maybe negative), positive-step slices, None and at most one Ellipsis."""
    items, dims = [], list(shape)
    ellipsis = draw(st.booleans())
    while dims:
        dim = dims.pop(0)
        kind = draw(st.sampled_from(["int", "slice", "slice", "none", "skip"] if dim else ["slice", "none"]))
        if kind == "int":
            items.append(draw(st.integers(-dim, dim - 1)))
        elif kind == "slice":
            start = draw(st.none() | st.integers(-dim - 2, dim + 2))
            stop = draw(st.none() | st.integers(-dim - 2, dim + 2))
            items.append(slice(start, stop, draw(st.none() | st.integers(1, 3))))
        elif kind == "none":
            items.extend([None, slice(None)])
        else:
            break
    if ellipsis:
        at = draw(st.integers(0, len(items)))
        items.insert(at, Ellipsis)
    if len(items) == 1 and draw(st.booleans()):
        return items[0]
    return tuple(items)


@settings(max_examples=60)
@given(data=st.data())
def test_basic_indexing(data):
    a = data.draw(arrays(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
    index = data.draw(basic_index(a.shape))
    x = jg.tensor(a)
    same_or_same_error(lambda: x[index], lambda: a[index])
    if a.ndim:  # indexing a view of a view
        index = data.draw(basic_index(a.T.shape))
        same_or_same_error(lambda: x.T[index], lambda: a.T[index])


def same_or_same_error(ours, numpy_reference):
    """An Ellipsis can move an int index onto another axis, out of its range: then both raise IndexError."""
    try:
        expected = numpy_reference()
    except IndexError:
        with pytest.raises(IndexError, match="out of bounds"):
            ours()
        return
    same(ours(), expected)


def test_indexing_examples():
    a = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    x = jg.tensor(a)
    for index in [0, -1, (1, 2), (-1, -2, -3), (slice(None, None, 2),), (..., 1), (None, 0, ..., None),
                  (slice(1, None), None, slice(None, None, 3)), (Ellipsis,), (), (2, slice(1, 3), -1)]:
        same(x[index], a[index])
    same(x[1][2][3], a[1, 2, 3])
    assert x[1, 2, 3].item() == a[1, 2, 3]
    same(x[::2, 1:, ::2] * 1.0, a[::2, 1:, ::2])


# ----------------------------------------------------------------------------- Tensor API
def test_tensor_attributes():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = jg.tensor(a)
    assert x.shape == (3, 4) and x.ndim == 2 and x.size == 12 and x.dtype == np.float32
    assert isinstance(x.shape, tuple) and len(x) == 3
    assert x.device == "cpux:0"
    n = x.numpy()
    assert isinstance(n, np.ndarray) and n.dtype == np.float32
    n[0, 0] = 99  # numpy() is a copy
    assert x.numpy()[0, 0] == 0
    assert np.asarray(x).dtype == np.float32 and np.asarray(x, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(np.asarray(x), a)
    assert x.tolist() == a.tolist()
    assert jg.tensor(5).item() == 5 and isinstance(jg.tensor(5).item(), int)
    assert jg.tensor([2.5]).item() == 2.5 and isinstance(jg.tensor(2.5).item(), float)
    assert float(jg.tensor(1.5)) == 1.5 and int(jg.tensor(3)) == 3 and bool(jg.tensor(True))
    with pytest.raises(ValueError, match="one-element"):
        x.item()


def test_tensor_defaults_and_dtypes():
    assert jg.tensor(1.5).dtype == np.float32
    assert jg.tensor([1, 2]).dtype == np.int32
    assert jg.tensor([True]).dtype == np.bool_
    assert jg.tensor(np.zeros(2, np.float64)).dtype == np.float64
    assert jg.tensor(np.zeros(2, np.int64)).dtype == np.int64
    assert jg.tensor(np.zeros(2, np.uint8)).dtype == np.int32
    assert jg.tensor(np.zeros(2, np.float16)).dtype == np.float32
    assert jg.tensor([1, 2], dtype="float64").dtype == np.float64
    assert jg.tensor(jg.tensor([1.0])).dtype == np.float32
    a = np.array([1.0, 2.0], np.float32)
    x = jg.tensor(a)
    a[0] = 5  # jg.tensor copies NumPy input
    assert x.numpy()[0] == 1.0


def test_astype_method():
    x = jg.tensor(np.array([1.7, -2.2, 0.0], np.float32))
    same(x.astype("int32"), np.array([1, -2, 0], np.int32))
    same(x.astype(np.float64), np.array([1.7, -2.2, 0.0], np.float32).astype(np.float64))
    same(x.astype("bool"), np.array([True, True, False]))


def test_repr():
    assert repr(jg.tensor([0.5, -0.1])) == "Tensor([ 0.5 -0.1], device=cpux:0)" or \
        repr(jg.tensor([0.5, -0.1])) == "Tensor([0.5 -0.1], device=cpux:0)"
    assert repr(jg.tensor(3.5)) == "Tensor(3.5, device=cpux:0)"
    assert repr(jg.tensor([1, 2])) == "Tensor([1 2], device=cpux:0)"
    assert repr(jg.tensor(np.array([1, 2], np.int64))) == "Tensor([1 2], dtype=int64, device=cpux:0)"
    assert repr(jg.tensor(np.array([1.0], np.float64))) == "Tensor([1.], dtype=float64, device=cpux:0)"
    assert repr(jg.Parameter([1.0])).startswith("Parameter([1.]")


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">="])
def test_operators_with_tensors_arrays_and_scalars(op):
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    b = np.array([2.0, 3.0, 4.0], np.float32)
    fn = eval(f"lambda p, q: p {op} q")
    x, y = jg.tensor(a), jg.tensor(b)
    cases = [
        (fn(x, y), fn(a, b)),  # tensor (op) tensor, broadcast
        (fn(x, b), fn(a, b)),  # tensor (op) ndarray
        (fn(a, y), fn(a, b)),  # ndarray (op) tensor: reflected through __array_priority__
        (fn(x, 2.0), fn(a, np.float32(2.0))),  # tensor (op) scalar
        (fn(3.0, x), fn(np.float32(3.0), a)),  # scalar (op) tensor: reflected
        (fn(x, 2), fn(a, np.float32(2))),
    ]
    for got, expected in cases:
        assert isinstance(got, jg.Tensor)
        assert got.shape == expected.shape and got.dtype == expected.dtype, (op, got.dtype, expected.dtype)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_reflected_ops_with_int_tensor():
    a = np.array([1, 2, 3], np.int32)
    x = jg.tensor(a)
    same(10 - x, 10 - a)
    same(7 // x, 7 // a)
    same(7 % x, 7 % a)
    same(2 * x, 2 * a)
    same(np.array([1, 1, 1], np.int32) + x, a + 1)
