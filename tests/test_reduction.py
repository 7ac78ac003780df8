"""Reductions (sum/mean/max/min/argmax/argmin/var/std) against NumPy.

Every axis subset (None, negative axes, keepdims) of shapes of rank 0..3 with
0- and 1-sized dims, contiguous and strided inputs, float and int dtypes.
Float sums are checked against a float64 reference with a tolerance that
scales with the sum of magnitudes (reductions may reassociate).
"""

from __future__ import annotations


import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jitgine as jg
import jitgine.functional as F


SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)
NONEMPTY_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=6)


def values(dtype: str) -> st.SearchStrategy:
    if dtype.startswith("int"):
        return st.integers(-1000, 1000)
    width = 32 if dtype == "float32" else 64
    return st.floats(-100, 100, width=width, allow_subnormal=False)


@st.composite
def axes_for(draw, ndim: int):
    """None, an int or a tuple of distinct axes, each written positive or negative."""
    if draw(st.booleans()) and ndim:
        picked = draw(st.lists(st.integers(0, ndim - 1), unique=True, min_size=1, max_size=ndim))
        picked = [a - ndim if draw(st.booleans()) else a for a in picked]
        if len(picked) == 1 and draw(st.booleans()):
            return picked[0]
        return tuple(picked)
    return None


def normalized(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


def close_to_sum(got: np.ndarray, a: np.ndarray, expected: np.ndarray, axis, keepdims: bool) -> None:
    scale = np.sum(np.abs(a.astype(np.float64)), axis=axis, keepdims=keepdims)
    eps = 1e-6 if a.dtype == np.float32 else 1e-14
    assert np.all(np.abs(got - expected) <= eps * (4 * scale + 1)), (got, expected)


def strided(x: jg.Tensor, a: np.ndarray, how: str) -> tuple[jg.Tensor, np.ndarray]:
    """The same values as a jitgine view (transposed or stepped) or unchanged."""
    if how == "T":
        return x.T, a.T
    if how == "step" and a.ndim:
        return x[::2], a[::2]
    return x, a


@pytest.mark.parametrize("dtype", ["float32", "int32", "float64", "int64"])
@settings(max_examples=40)
@given(data=st.data())
def test_sum(dtype, data):
    a = data.draw(hnp.arrays(dtype, SHAPES, elements=values(dtype)))
    x, a = strided(jg.tensor(a), a, data.draw(st.sampled_from(["", "T", "step"])))
    axis = data.draw(axes_for(a.ndim))
    keepdims = data.draw(st.booleans())
    got = F.sum(x, axis=axis, keepdims=keepdims)
    assert got.dtype == np.dtype(dtype)  # ints sum in their own dtype, as MegEngine
    expected = np.sum(a, axis=axis, keepdims=keepdims, dtype=np.float64 if dtype.startswith("f") else dtype)
    assert got.shape == np.shape(expected)
    if dtype.startswith("int"):
        np.testing.assert_array_equal(got.numpy(), expected)
    else:
        close_to_sum(got.numpy(), a, expected, axis, keepdims)
    np.testing.assert_array_equal(x.sum(axis, keepdims).numpy(), got.numpy())


@pytest.mark.parametrize("dtype", ["float32", "int32"])
@settings(max_examples=40)
@given(data=st.data())
def test_mean(dtype, data):
    a = data.draw(hnp.arrays(dtype, NONEMPTY_SHAPES, elements=values(dtype)))
    x, a = strided(jg.tensor(a), a, data.draw(st.sampled_from(["", "T"])))
    axis = data.draw(axes_for(a.ndim))
    keepdims = data.draw(st.booleans())
    got = F.mean(x, axis=axis, keepdims=keepdims)
    assert got.dtype == np.float32  # int means are float32
    expected = np.mean(a.astype(np.float64), axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(expected)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(x.mean(axis, keepdims).numpy(), got.numpy())


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
@settings(max_examples=30)
@given(data=st.data())
def test_max_min(name, dtype, data):
    a = data.draw(hnp.arrays(dtype, NONEMPTY_SHAPES, elements=values(dtype)))
    x, a = strided(jg.tensor(a), a, data.draw(st.sampled_from(["", "T", "step"])))
    axis = data.draw(axes_for(a.ndim))
    keepdims = data.draw(st.booleans())
    got = getattr(F, name)(x, axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(a, axis=axis, keepdims=keepdims)
    assert got.dtype == np.dtype(dtype)
    assert got.shape == np.shape(expected)
    np.testing.assert_array_equal(got.numpy(), expected)  # exact: max/min never round
    np.testing.assert_array_equal(getattr(x, name)(axis, keepdims).numpy(), expected)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
@settings(max_examples=30)
@given(data=st.data())
def test_argmax_argmin(name, dtype, data):
    # A small value range makes ties common: the first occurrence wins, as in NumPy.
    elem = st.integers(-3, 3) if dtype == "int32" else st.sampled_from([-1.5, 0.0, 2.0, 7.0])
    a = data.draw(hnp.arrays(dtype, NONEMPTY_SHAPES, elements=elem))
    x, a = strided(jg.tensor(a), a, data.draw(st.sampled_from(["", "T"])))
    keepdims = data.draw(st.booleans())
    axis = data.draw(st.none() | st.integers(-a.ndim, a.ndim - 1)) if a.ndim else None
    got = getattr(F, name)(x, axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(a, axis=axis, keepdims=keepdims)
    assert got.dtype.kind == "i"
    assert got.shape == np.shape(expected)
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_array_equal(getattr(x, name)(axis, keepdims).numpy(), expected)


@pytest.mark.parametrize("name", ["var", "std"])
@settings(max_examples=30)
@given(data=st.data())
def test_var_std(name, data):
    a = data.draw(hnp.arrays(np.float32, NONEMPTY_SHAPES, elements=values("float32")))
    x, a = strided(jg.tensor(a), a, data.draw(st.sampled_from(["", "T"])))
    axis = data.draw(axes_for(a.ndim))
    keepdims = data.draw(st.booleans())
    got = getattr(F, name)(x, axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(a.astype(np.float64), axis=axis, keepdims=keepdims)
    assert got.dtype == np.float32
    assert got.shape == np.shape(expected)
    # Centred values up to 200 in magnitude: float32 sums of squares carry ~1e-6 relative error.
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-2 if name == "var" else 1e-3)


def test_var_ddof():
    a = np.arange(10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_allclose(F.var(jg.tensor(a), axis=1, ddof=1).numpy(), np.var(a, axis=1, ddof=1), rtol=1e-6)


def test_bool_and_int_reductions():
    m = np.array([[True, False, True], [True, True, True]])
    np.testing.assert_array_equal(F.sum(jg.tensor(m), axis=1).numpy(), [2, 3])
    assert F.sum(jg.tensor(m)).item() == 5
    big = np.full(1000, 2**31 - 1, np.int64)
    assert F.sum(jg.tensor(big)).item() == 1000 * (2**31 - 1)  # int64 accumulates in int64


@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_sum_over_an_empty_axis_is_zero(dtype):
    a = np.zeros((0, 3), dtype)
    np.testing.assert_array_equal(F.sum(jg.tensor(a), axis=0).numpy(), np.zeros(3, dtype))
    assert F.sum(jg.tensor(a)).item() == 0
    assert F.sum(jg.tensor(np.zeros((2, 0), dtype)), axis=1, keepdims=True).shape == (2, 1)
    np.testing.assert_array_equal(F.sum(jg.tensor(np.zeros((2, 0), dtype)), axis=1).numpy(), [0, 0])
    assert F.sum(jg.tensor(a), axis=1).shape == (0,)  # reducing a non-empty axis of an empty tensor


@pytest.mark.parametrize("fn", [F.max, F.min, F.argmax, F.argmin])
def test_extremum_of_an_empty_axis_raises(fn):
    with pytest.raises(ValueError, match="empty axis"):
        fn(jg.tensor(np.zeros((0, 3), np.float32)), axis=0)
    with pytest.raises(ValueError, match="empty"):
        fn(jg.tensor(np.zeros((0,), np.float32)))
    # Reducing the non-empty axis is fine: the result is empty.
    if fn in (F.max, F.min):
        assert fn(jg.tensor(np.zeros((0, 3), np.float32)), axis=1).shape == (0,)


def test_nan_propagates_through_max_min_and_arg():
    a = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]], np.float32)
    x = jg.tensor(a)
    np.testing.assert_array_equal(F.max(x, axis=1).numpy(), np.max(a, axis=1))
    np.testing.assert_array_equal(F.min(x, axis=1).numpy(), np.min(a, axis=1))
    np.testing.assert_array_equal(F.argmax(x, axis=1).numpy(), np.argmax(a, axis=1))
    np.testing.assert_array_equal(F.argmin(x, axis=1).numpy(), np.argmin(a, axis=1))
    assert np.isnan(F.sum(x).item())


@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 33, 67, 129, 1000, 4099])
def test_sum_odd_lengths(n):
    a = (np.arange(n, dtype=np.float32) % 7) - 3
    assert F.sum(jg.tensor(a)).item() == float(np.sum(a.astype(np.float64)))
    b = np.arange(n, dtype=np.int32) - n // 2
    assert F.max(jg.tensor(b)).item() == b.max()
    assert F.argmin(jg.tensor(b)).item() == 0


def test_reduction_of_broadcast_and_sliced_views():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = jg.tensor(a)
    b = F.broadcast_to(x[:, :1], (2, 5, 4))
    np.testing.assert_array_equal(F.sum(b, axis=1).numpy(), np.broadcast_to(a[:, :1], (2, 5, 4)).sum(axis=1))
    np.testing.assert_array_equal(F.max(x[:, ::2, 1::2], axis=(0, 2)).numpy(), a[:, ::2, 1::2].max(axis=(0, 2)))
    np.testing.assert_array_equal(F.sum(jg.tensor(a.transpose(2, 0, 1)), axis=-1).numpy(),
                                  a.transpose(2, 0, 1).sum(axis=-1))


LARGE_CASES = [  # (shape, axis): a reduced outer dim cut into chunks, or not (too little work)
    (((1 << 20) + 13,), None), (((1 << 15) - 1,), None), ((70001, 3), 0), ((3, 50003), None), ((2049, 5, 7), (0, 2)),
    ((100000, 200), 0),  # partials would exceed MAX_PARTIAL_ELEMENTS: one chunk
]


@pytest.mark.parametrize("shape,axis", LARGE_CASES)
@pytest.mark.parametrize("name", ["sum", "max", "min"])
def test_large_reductions_are_thread_count_independent(shape, axis, name):
    """Reductions over a large outer dim run in chunks on all threads, partials combined in
    chunk order: the same bits at 1 and 2 threads, and the NumPy result within rounding."""
    rng = np.random.default_rng(len(shape) * 7 + shape[0] % 97)
    a = (rng.standard_normal(shape) * 3).astype(np.float32)
    previous = jg.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            jg.set_num_threads(threads)
            results.append(getattr(F, name)(jg.tensor(a), axis=axis).numpy())
    finally:
        jg.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    want = getattr(np, name)(a.astype(np.float64), axis=axis)
    if name == "sum":
        scale = np.abs(a.astype(np.float64)).sum(axis=axis)
        assert np.all(np.abs(results[0] - want) <= 1e-6 * scale + 1e-6)
    else:
        np.testing.assert_array_equal(results[0], want.astype(np.float32))
