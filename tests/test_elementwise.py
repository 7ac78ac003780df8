"""Elementwise F functions against NumPy.

References are computed in float64 (or in the operand dtype where the
operation is exact or defined by its rounding, e.g. floor division), then cast
to the result dtype. Sizes cover 0, 1, odd remainders of the vector width and
a few hundreds; layouts cover broadcasting, Python scalars and strided views.
Kernels compile once per (op, dtype, loop plan), so the tests reuse a few
dtypes and ranks instead of sweeping everything everywhere.
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jitgine as jg
import jitgine.functional as F


FLOATS = ["float32", "float64"]
INTS = ["int32", "int64"]
NUMERIC = FLOATS + INTS
ALL = NUMERIC + ["bool"]

# 0 and 1, every remainder of an 8/16-lane loop, and a few sizes past the unrolled body.
SIZES = st.one_of(st.integers(0, 67), st.sampled_from([127, 128, 129, 255, 256, 300, 515]))


def elements(dtype: str, lo: float = -1e3, hi: float = 1e3, special: bool = False) -> st.SearchStrategy:
    """Values of `dtype`; floats are exactly representable in it (width) and may include NaN/inf."""
    if dtype == "bool":
        return st.booleans()
    if dtype in INTS:
        return st.integers(int(lo), int(hi))
    width = 32 if dtype == "float32" else 64
    if width == 32:  # hypothesis wants bounds that float32 represents exactly
        lo, hi = float(np.nextafter(np.float32(lo), np.float32(np.inf))), float(np.nextafter(np.float32(hi), np.float32(-np.inf)))
    finite = st.floats(lo, hi, width=width, allow_subnormal=False)
    if special:
        return st.one_of(finite, st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]))
    return finite


def vectors(dtype: str, size=SIZES, **kw) -> st.SearchStrategy:
    return size.flatmap(lambda n: hnp.arrays(np.dtype(dtype), (n,), elements=elements(dtype, **kw)))


def assert_matches(result: jg.Tensor, expected: np.ndarray, rtol: float | None = None, atol: float = 0.0) -> None:
    """dtype and shape equal; exact for ints/bools, else within rtol (NaN equal to NaN)."""
    assert isinstance(result, jg.Tensor)
    got = result.numpy()
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    if expected.dtype.kind == "f" and rtol is not None:
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, expected)


def ref(fn, *arrays: np.ndarray, out: str) -> np.ndarray:
    """fn on float64 copies of float operands (ints stay ints), cast to `out`."""
    with np.errstate(all="ignore"):
        args = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
        return np.asarray(fn(*args)).astype(out)


def rtol_for(dtype: str) -> float:
    return 1e-6 if dtype == "float32" else 1e-14


# ----------------------------------------------------------------------------- binary arithmetic
ARITH = {
    "add": (F.add, np.add),
    "sub": (F.sub, np.subtract),
    "mul": (F.mul, np.multiply),
    "maximum": (F.maximum, np.maximum),
    "minimum": (F.minimum, np.minimum),
}


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("name", list(ARITH))
@given(data=st.data())
def test_binary_arithmetic(name, dtype, data):
    fn, np_fn = ARITH[name]
    n = data.draw(SIZES)
    special = dtype in FLOATS
    a = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, special=special)))
    b = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, special=special)))
    assert_matches(fn(jg.tensor(a), jg.tensor(b)), ref(np_fn, a, b, out=dtype), rtol_for(dtype))


@pytest.mark.parametrize("dtype", ALL)
@given(data=st.data())
def test_true_div(dtype, data):
    n = data.draw(SIZES)
    a = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, special=dtype in FLOATS)))
    b = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, special=dtype in FLOATS)))
    out = dtype if dtype in FLOATS else "float32"  # integers divide as float32 (MegEngine)
    result = F.div(jg.tensor(a), jg.tensor(b))
    assert_matches(result, ref(np.true_divide, a, b, out=out), rtol_for(out))
    assert_matches(jg.tensor(a) / jg.tensor(b), result.numpy(), 0)


def _int_floor_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ir/interpret.py: integer floor division, 0 where the divisor is 0."""
    with np.errstate(divide="ignore"):
        return np.floor_divide(a, np.where(b == 0, 1, b)) * (b != 0)


def _int_mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.mod(a, np.where(b == 0, 1, b)) * (b != 0)


@pytest.mark.parametrize("dtype", NUMERIC)
@given(data=st.data())
def test_floor_div_and_mod(dtype, data):
    n = data.draw(SIZES)
    a = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, -50, 50)))
    b = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, -7, 7)))
    x, y = jg.tensor(a), jg.tensor(b)
    if dtype in INTS:
        assert_matches(F.floor_div(x, y), _int_floor_div(a, b).astype(dtype))
        assert_matches(F.mod(x, y), _int_mod(a, b).astype(dtype))
    else:
        with np.errstate(all="ignore"):
            # floor_div is floor(x / y) in the operand dtype; mod has the divisor's sign (fmod-based).
            assert_matches(F.floor_div(x, y), np.floor(a / b))
            assert_matches(F.mod(x, y), np.mod(a, b))
    assert_matches(x // y, F.floor_div(x, y).numpy())
    assert_matches(x % y, F.mod(x, y).numpy())


@pytest.mark.parametrize("dtype", INTS)
def test_int_floor_div_mod_signs_and_zero(dtype):
    a = np.array([7, -7, 7, -7, 6, -6, 0, 5, -5, 0, np.iinfo(dtype).min, np.iinfo(dtype).max], dtype)
    b = np.array([2, 2, -2, -2, 3, -3, 3, 0, 0, 0, 1, -1], dtype)
    x, y = jg.tensor(a), jg.tensor(b)
    np.testing.assert_array_equal((x // y).numpy(), [3, -4, -4, 3, 2, 2, 0, 0, 0, 0, np.iinfo(dtype).min, -np.iinfo(dtype).max])
    np.testing.assert_array_equal((x % y).numpy(), [1, 1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0])
    # Python ints on the right keep the tensor's dtype (weak typing).
    assert (x // 2).dtype == np.dtype(dtype) and (x % -3).dtype == np.dtype(dtype)
    np.testing.assert_array_equal((x % -3).numpy(), _int_mod(a, np.full_like(a, -3)))
    np.testing.assert_array_equal((x // 0).numpy(), np.zeros_like(a))


def test_float_mod_sign_follows_divisor():
    a = np.array([5.5, -5.5, 5.5, -5.5, 0.0, 3.0], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 1.0, 0.0], np.float32)
    with np.errstate(all="ignore"):
        assert_matches(F.mod(jg.tensor(a), jg.tensor(b)), np.mod(a, b))


# ----------------------------------------------------------------------------- NaN / inf
def test_maximum_minimum_propagate_nan():
    a = np.array([np.nan, 1.0, np.nan, -np.inf, np.inf, 0.0, -0.0], np.float32)
    b = np.array([1.0, np.nan, np.nan, 2.0, 2.0, 0.0, 0.0], np.float32)
    for fn, np_fn in ((F.maximum, np.maximum), (F.minimum, np.minimum)):
        got = fn(jg.tensor(a), jg.tensor(b)).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(np_fn(a, b)))
        np.testing.assert_array_equal(got, np_fn(a, b))
    np.testing.assert_array_equal(F.relu(jg.tensor(a)).numpy(), np.maximum(a, 0))


def test_comparisons_with_nan():
    a = np.array([np.nan, np.nan, 1.0, np.inf, -np.inf], np.float32)
    b = np.array([np.nan, 1.0, np.nan, np.inf, np.inf], np.float32)
    x, y = jg.tensor(a), jg.tensor(b)
    for got, np_fn in ((x == y, np.equal), (x != y, np.not_equal), (x < y, np.less), (x <= y, np.less_equal),
                       (x > y, np.greater), (x >= y, np.greater_equal)):
        assert_matches(got, np_fn(a, b))
    assert_matches(F.isnan(x), np.isnan(a))
    assert_matches(F.isinf(x), np.isinf(a))


# ----------------------------------------------------------------------------- comparisons and logic
COMPARE = {
    "equal": (F.equal, np.equal), "not_equal": (F.not_equal, np.not_equal), "less": (F.less, np.less),
    "less_equal": (F.less_equal, np.less_equal), "greater": (F.greater, np.greater),
    "greater_equal": (F.greater_equal, np.greater_equal),
}


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("name", list(COMPARE))
@settings(max_examples=15)
@given(data=st.data())
def test_comparisons(name, dtype, data):
    fn, np_fn = COMPARE[name]
    n = data.draw(SIZES)
    # A small range makes ties common.
    elem = elements(dtype, -3, 3, special=dtype in FLOATS)
    a = data.draw(hnp.arrays(dtype, (n,), elements=elem))
    b = data.draw(hnp.arrays(dtype, (n,), elements=elem))
    assert_matches(fn(jg.tensor(a), jg.tensor(b)), np_fn(a, b))


LOGICAL = {"logical_and": (F.logical_and, np.logical_and), "logical_or": (F.logical_or, np.logical_or),
           "logical_xor": (F.logical_xor, np.logical_xor)}


@pytest.mark.parametrize("dtype", ["bool", "int32", "float32"])
@pytest.mark.parametrize("name", list(LOGICAL))
@settings(max_examples=15)
@given(data=st.data())
def test_logical(name, dtype, data):
    fn, np_fn = LOGICAL[name]
    n = data.draw(SIZES)
    a = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, -2, 2)))
    b = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, -2, 2)))
    assert_matches(fn(jg.tensor(a), jg.tensor(b)), np_fn(a, b))
    assert_matches(F.logical_not(jg.tensor(a)), np.logical_not(a))


def test_logical_operators_on_bool_tensors():
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    x, y = jg.tensor(a), jg.tensor(b)
    assert_matches(x & y, a & b)
    assert_matches(x | y, a | b)
    assert_matches(x ^ y, a ^ b)
    assert_matches(~x, ~a)


@pytest.mark.parametrize("dtype", ALL)
@settings(max_examples=20)
@given(data=st.data())
def test_where(dtype, data):
    n = data.draw(SIZES)
    mask = data.draw(hnp.arrays(np.bool_, (n,)))
    a = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, special=dtype in FLOATS)))
    b = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, special=dtype in FLOATS)))
    assert_matches(F.where(jg.tensor(mask), jg.tensor(a), jg.tensor(b)), np.where(mask, a, b))


@pytest.mark.parametrize("dtype", NUMERIC)
@settings(max_examples=20)
@given(data=st.data())
def test_clip(dtype, data):
    a = data.draw(vectors(dtype))
    lo = data.draw(st.integers(-500, 0))
    hi = data.draw(st.integers(0, 500))
    if dtype in FLOATS:
        lo, hi = float(lo), float(hi)
    x = jg.tensor(a)
    assert_matches(F.clip(x, lo, hi), np.clip(a, lo, hi).astype(dtype))
    assert_matches(F.clip(x, lo), np.maximum(a, lo).astype(dtype))
    assert_matches(F.clip(x, None, hi), np.minimum(a, hi).astype(dtype))


# ----------------------------------------------------------------------------- unary
UNARY_EXACT = {
    "neg": (F.neg, np.negative), "abs": (F.abs, np.abs), "sign": (F.sign, np.sign),
    "floor": (F.floor, np.floor), "ceil": (F.ceil, np.ceil), "round": (F.round, np.round),
    "relu": (F.relu, lambda a: np.maximum(a, 0)),
}


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("name", list(UNARY_EXACT))
@settings(max_examples=12)
@given(data=st.data())
def test_unary_exact(name, dtype, data):
    fn, np_fn = UNARY_EXACT[name]
    # Halves exercise round-half-to-even.
    halves = st.integers(-200, 200).map(lambda k: k / 2)
    elem = st.one_of(elements(dtype, special=True), halves) if dtype in FLOATS else elements(dtype)
    n = data.draw(SIZES)
    a = data.draw(hnp.arrays(dtype, (n,), elements=elem))
    assert_matches(fn(jg.tensor(a)), np_fn(a).astype(dtype))


def test_unary_operators():
    a = np.array([-1.5, 0.0, 2.5], np.float32)
    x = jg.tensor(a)
    assert_matches(-x, -a)
    assert_matches(abs(x), np.abs(a))
    assert +x is x
    assert_matches(F.round(jg.tensor(np.array([0.5, 1.5, 2.5, -0.5, -1.5], np.float32))),
                   np.array([0.0, 2.0, 2.0, -0.0, -2.0], np.float32))


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _erf(a):
    return np.vectorize(math.erf, otypes=[np.float64])(a)


# name: (F function, float64 reference, element range)
TRANSCENDENTAL = {
    "exp": (F.exp, np.exp, (-80.0, 80.0)),
    "expm1": (F.expm1, np.expm1, (-80.0, 80.0)),
    "log": (F.log, np.log, (1e-30, 1e30)),
    "log1p": (F.log1p, np.log1p, (-0.999, 1e30)),
    "sqrt": (F.sqrt, np.sqrt, (0.0, 1e30)),
    "rsqrt": (F.rsqrt, lambda a: 1.0 / np.sqrt(a), (1e-30, 1e30)),
    "tanh": (F.tanh, np.tanh, (-20.0, 20.0)),
    "sigmoid": (F.sigmoid, _sigmoid, (-80.0, 80.0)),
    "sin": (F.sin, np.sin, (-100.0, 100.0)),
    "cos": (F.cos, np.cos, (-100.0, 100.0)),
    "erf": (F.erf, _erf, (-6.0, 6.0)),
}


def transcendental_tolerance(dtype: str) -> dict:
    # ~4 ulp relative, and an absolute floor of the same size for results near 0 (sin, cos, log near 1).
    return dict(rtol=1e-6, atol=1e-6) if dtype == "float32" else dict(rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", list(TRANSCENDENTAL))
@settings(max_examples=25)
@given(data=st.data())
def test_transcendental(name, dtype, data):
    fn, np_fn, (lo, hi) = TRANSCENDENTAL[name]
    n = data.draw(SIZES)
    a = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, lo, hi)))
    assert_matches(fn(jg.tensor(a)), ref(np_fn, a, out=dtype), **transcendental_tolerance(dtype))


@pytest.mark.parametrize("name", list(TRANSCENDENTAL))
def test_transcendental_special_values(name):
    fn, np_fn, _ = TRANSCENDENTAL[name]
    a = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 100.0, -100.0, 1e-3, -1e-3], np.float32)
    assert_matches(fn(jg.tensor(a)), ref(np_fn, a, out="float32"), rtol=1e-6, atol=1e-6)


def test_transcendental_of_ints_is_float32():
    a = np.arange(-3, 4, dtype=np.int32)
    assert_matches(F.exp(jg.tensor(a)), ref(np.exp, a.astype(np.float32), out="float32"), rtol=1e-6)
    assert_matches(F.sqrt(jg.tensor(np.arange(5, dtype=np.int64))),
                   np.sqrt(np.arange(5)).astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("dtype", FLOATS)
@settings(max_examples=25)
@given(data=st.data())
def test_pow(dtype, data):
    n = data.draw(SIZES)
    a = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, 1e-3, 1e3)))
    b = data.draw(hnp.arrays(dtype, (n,), elements=elements(dtype, -4.0, 4.0)))
    assert_matches(F.pow(jg.tensor(a), jg.tensor(b)), ref(np.power, a, b, out=dtype),
                   **transcendental_tolerance(dtype))
    assert_matches(jg.tensor(a) ** jg.tensor(b), F.pow(jg.tensor(a), jg.tensor(b)).numpy())


def test_pow_special_values():
    a = np.array([-2.0, -2.0, 0.0, 0.0, 2.0, np.nan, 1.0, 4.0], np.float32)
    b = np.array([3.0, 0.5, -1.0, 0.0, 0.0, 0.0, np.nan, 0.5], np.float32)
    with np.errstate(all="ignore"):
        assert_matches(F.pow(jg.tensor(a), jg.tensor(b)), np.power(a, b), rtol=1e-6)
    x = jg.tensor(np.array([1.0, 2.0, 3.0], np.float32))
    assert_matches(x ** 2, np.array([1.0, 4.0, 9.0], np.float32), rtol=1e-6)
    assert_matches(2.0 ** x, np.array([2.0, 4.0, 8.0], np.float32), rtol=1e-6)
    # Integer operands are computed in float32.
    assert F.pow(jg.tensor([2, 3]), 2).dtype == np.float32


# ----------------------------------------------------------------------------- astype
def cast_elements(source: str, target: str) -> st.SearchStrategy:
    if source in FLOATS and target in INTS:
        # Within range: out-of-range float->int is undefined in NumPy (jitgine saturates).
        return elements(source, -2e9, 2e9) if target == "int32" else elements(source, -1e15, 1e15)
    if source in FLOATS:
        return elements(source, -1e30 if source == "float64" else -1e3, 1e30 if source == "float64" else 1e3,
                        special=True)
    if source in INTS:
        info = np.iinfo(source)
        return st.integers(int(info.min), int(info.max))
    return elements(source)


@pytest.mark.parametrize("target", ALL)
@pytest.mark.parametrize("source", ALL)
@settings(max_examples=12)
@given(data=st.data())
def test_astype(source, target, data):
    n = data.draw(SIZES)
    a = data.draw(hnp.arrays(source, (n,), elements=cast_elements(source, target)))
    with np.errstate(all="ignore"):
        expected = a.astype(target)
    x = jg.tensor(a)
    assert_matches(x.astype(target), expected)
    assert_matches(F.astype(x, np.dtype(target)), expected)


def test_astype_float_to_int_truncates_toward_zero():
    a = np.array([1.9, -1.9, 0.5, -0.5, 2.0], np.float32)
    assert_matches(jg.tensor(a).astype("int32"), np.array([1, -1, 0, 0, 2], np.int32))
    assert_matches(jg.tensor(np.array([np.nan, 0.0, -0.0], np.float32)).astype("bool"),
                   np.array([True, False, False]))


# ----------------------------------------------------------------------------- broadcasting
@pytest.mark.parametrize("name", ["add", "maximum"])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
@settings(max_examples=30)
@given(data=st.data())
def test_broadcasting(name, dtype, data):
    fn, np_fn = ARITH[name]
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=5))
    a = data.draw(hnp.arrays(dtype, shapes.input_shapes[0], elements=elements(dtype)))
    b = data.draw(hnp.arrays(dtype, shapes.input_shapes[1], elements=elements(dtype)))
    result = fn(jg.tensor(a), jg.tensor(b))
    assert result.shape == shapes.result_shape
    assert_matches(result, ref(np_fn, a, b, out=dtype), rtol_for(dtype))


@settings(max_examples=25)
@given(data=st.data())
def test_where_broadcasts_three_ways(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=4))
    mask = data.draw(hnp.arrays(np.bool_, shapes.input_shapes[0]))
    a = data.draw(hnp.arrays(np.float32, shapes.input_shapes[1], elements=elements("float32")))
    b = data.draw(hnp.arrays(np.float32, shapes.input_shapes[2], elements=elements("float32")))
    assert_matches(F.where(jg.tensor(mask), jg.tensor(a), jg.tensor(b)), np.where(mask, a, b))


def test_mixed_dtypes_promote():
    i32 = jg.tensor(np.array([1, 2, 3], np.int32))
    i64 = jg.tensor(np.array([1, 2, 3], np.int64))
    f32 = jg.tensor(np.array([0.5, 1.5, 2.5], np.float32))
    f64 = jg.tensor(np.array([0.5, 1.5, 2.5], np.float64))
    assert (i32 + i64).dtype == np.int64
    assert (i32 + f32).dtype == np.float32
    assert (i64 + f32).dtype == np.float32
    assert (f32 + f64).dtype == np.float64
    assert_matches(i32 * f32, np.array([0.5, 3.0, 7.5], np.float32))
    assert_matches(F.maximum(i64, f64), np.array([1.0, 2.0, 3.0]))


# ----------------------------------------------------------------------------- Python scalars (weak typing)
@pytest.mark.parametrize("dtype", NUMERIC)
@settings(max_examples=15)
@given(data=st.data())
def test_python_scalars_keep_tensor_dtype(dtype, data):
    a = data.draw(vectors(dtype, lo=-100, hi=100))
    s = data.draw(st.integers(-5, 5).filter(bool))
    scalar = float(s) if dtype in FLOATS else s
    x = jg.tensor(a)
    s_arr = np.asarray(scalar, dtype)
    for got, expected in (
        (x * scalar, a * s_arr), (scalar * x, s_arr * a), (x + scalar, a + s_arr), (scalar + x, s_arr + a),
        (x - scalar, a - s_arr), (scalar - x, s_arr - a), (F.maximum(x, scalar), np.maximum(a, s_arr)),
    ):
        assert got.dtype == np.dtype(dtype)
        assert_matches(got, expected.astype(dtype), rtol_for(dtype))
    # Comparisons with a scalar give bool.
    assert_matches(x > scalar, a > s_arr)


def test_weak_typing_examples():
    x = jg.tensor(np.array([1.0, 2.0], np.float32))
    assert (x * 2.0).dtype == np.float32
    assert (x * 2).dtype == np.float32
    assert (2.0 / x).dtype == np.float32
    assert (x / 2).dtype == np.float32
    f64 = jg.tensor(np.array([1.0, 2.0]))
    assert (f64 * 2.0).dtype == np.float64
    i = jg.tensor(np.array([1, 2], np.int32))
    assert (i * 3).dtype == np.int32
    assert (jg.tensor(np.array([1, 2], np.int64)) + 1).dtype == np.int64
    # A float scalar with an int tensor is a float32 operation (MegEngine), not float64.
    assert (i * 2.5).dtype == np.float32
    assert_matches(i * 2.5, np.array([2.5, 5.0], np.float32))
    assert (i / 2).dtype == np.float32
    assert_matches(1.0 - x, np.array([0.0, -1.0], np.float32))


def test_cached_number_views_keep_signed_zeros_shapes_and_dtypes_apart():
    """Eager numbers are kept as broadcast views per (number, dtype, shape): -0.0 is not 0.0, and a
    view made for one shape or dtype is never handed to another."""
    x = jg.tensor(np.array([1.0, -2.0], np.float32))
    assert np.signbit((x * 0.0).numpy()).tolist() == [False, True]
    assert np.signbit((x * -0.0).numpy()).tolist() == [True, False]
    assert np.signbit((x * 0.0).numpy()).tolist() == [False, True]
    for shape in [(2,), (3, 2), (1,), (0, 2)]:
        a = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
        assert_matches(jg.tensor(a) + 1.5, a + 1.5)
        assert_matches(jg.tensor(a.astype(np.float32)) - 1.5, a.astype(np.float32) - np.float32(1.5))
    i = jg.tensor(np.array([3, 4], np.int32))
    assert (i + 1).dtype == np.int32 and (i + 1.0).dtype == np.float32 and (i / 1).dtype == np.float32


# ----------------------------------------------------------------------------- non-contiguous inputs
def _layouts(a: np.ndarray) -> list[tuple[str, np.ndarray, jg.Tensor]]:
    """(name, NumPy view, the same values as a jitgine tensor) for several layouts of 2-d `a`."""
    x = jg.tensor(a)
    return [
        ("numpy .T", a.T, jg.tensor(a.T)),
        ("numpy [::2, ::3]", a[::2, ::3], jg.tensor(a[::2, ::3])),
        ("numpy broadcast", np.broadcast_to(a[:1], a.shape), jg.tensor(np.broadcast_to(a[:1], a.shape))),
        ("jitgine .T", a.T, x.T),
        ("jitgine [::2]", a[::2], x[::2]),
        ("jitgine [1::3, ::2]", a[1::3, ::2], x[1::3, ::2]),
        ("jitgine [:, 1:].T", a[:, 1:].T, x[:, 1:].T),
        ("jitgine broadcast", np.broadcast_to(a[:1], a.shape), F.broadcast_to(x[:1], a.shape)),
    ]


@pytest.mark.parametrize("dtype", ["float32", "int64"])
@settings(max_examples=10)
@given(data=st.data())
def test_non_contiguous_inputs(dtype, data):
    rows = data.draw(st.integers(1, 9))
    cols = data.draw(st.integers(1, 40))
    a = data.draw(hnp.arrays(dtype, (rows, cols), elements=elements(dtype, -100, 100)))
    for name, view, t in _layouts(a):
        assert t.shape == view.shape, name
        np.testing.assert_array_equal(t.numpy(), view, err_msg=name)
        assert_matches(t * t, ref(np.multiply, view, view, out=dtype), rtol_for(dtype))
        assert_matches(t - 1, (view - np.asarray(1, dtype)).astype(dtype))
        assert_matches(F.neg(t), -view)
        assert_matches(F.maximum(t, t.T.T), np.maximum(view, view))
        # A strided operand together with a contiguous one of the same shape.
        assert_matches(t + jg.tensor(np.ascontiguousarray(view)), ref(np.add, view, view, out=dtype),
                       rtol_for(dtype))


@settings(max_examples=15)
@given(data=st.data())
def test_non_contiguous_where_and_cast(data):
    rows = data.draw(st.integers(1, 9))
    cols = data.draw(st.integers(1, 40))
    a = data.draw(hnp.arrays(np.float32, (rows, cols), elements=elements("float32", -10, 10)))
    for name, view, t in _layouts(a):
        assert_matches(F.where(t > 0, t, 0.0), np.where(view > 0, view, np.float32(0)))
        assert_matches(t.astype("int32"), view.astype(np.int32))
        assert_matches(t.astype("float64"), view.astype(np.float64))


@pytest.mark.parametrize("target", ["int32", "int64"])
@pytest.mark.parametrize("source", ["float32", "float64"])
def test_astype_float_to_int_saturates_like_the_interpreter(source, target):
    """NaN -> 0 and out-of-range values clamp, in kernels and in the reference interpreter alike."""
    from ir.graph import GraphBuilder
    from ir.interpret import run
    from ir.types import DType, TensorType

    info = np.iinfo(target)
    a = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 2.0**63, float(info.max), -2.5, 3.5], source)
    expected = np.array([0, info.max, info.min, info.max, info.min, info.max, info.max, -2, 3], target)
    if target == "int32" and source == "float64":
        expected[6] = info.max  # 2**31 - 1 is exact in float64
    assert_matches(jg.tensor(a).astype(target), expected)
    b = GraphBuilder()
    graph = b.output(b.apply("cast", b.input(TensorType(a.shape, DType[source])), dtype=target))
    np.testing.assert_array_equal(run(graph, [a])[0], expected)


def test_repeated_calls_on_new_layouts_of_one_shape_plan_each_layout():
    """Eager calls reuse a planned (kernel, meta) per operand layout: alternating contiguous,
    transposed, broadcast and unaligned operands of one shape must each get their own."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((7, 5)).astype(np.float32)
    record = np.zeros(35, dtype=[("flag", "u1"), ("value", "<f4")])  # 5-byte stride: copied per call
    record["value"] = rng.standard_normal(35).astype(np.float32)
    layouts = [base, np.ascontiguousarray(base.T).T, np.broadcast_to(base[:1], (7, 5)),
               record["value"].reshape(7, 5), base[::-1]]
    for _ in range(2):
        for a in layouts:
            for b in layouts:
                got = (jg.Tensor._wrap(a) * 2.0 - jg.Tensor._wrap(b)).numpy()  # the views as they are
                np.testing.assert_allclose(got, a * 2.0 - b, rtol=1e-6)


def test_the_layout_cache_is_bounded(monkeypatch):
    from jitgine.core import eager

    monkeypatch.setattr(eager, "MAX_FUSED_CALLS", 2)
    monkeypatch.setattr(eager, "_fused_calls", {})
    for n in range(1, 6):
        x = np.arange(n, dtype=np.float32)
        np.testing.assert_allclose(F.exp(jg.tensor(x)).numpy(), np.exp(x), rtol=1e-6)
        assert len(eager._fused_calls) <= 2
