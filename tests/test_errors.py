"""Bad input raises a clear Python exception naming the op and the shapes/dtypes."""

from __future__ import annotations

import re

import numpy as np
import pytest

import jitgine as jg
import jitgine.functional as F
from jitgine.core.dispatch import apply1


def t(*shape: int, dtype: str = "float32") -> jg.Tensor:
    return jg.tensor(np.zeros(shape, dtype))


def raises(kind, *fragments: str):
    """pytest.raises(kind) whose message contains every fragment (in any order)."""
    pattern = "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    return pytest.raises(kind, match=re.compile(pattern, re.S))


# ----------------------------------------------------------------------------- shapes
def test_add_shape_mismatch():
    with raises(ValueError, "add", "(2, 3)", "(4,)", "broadcast"):
        F.add(t(2, 3), t(4))
    with raises(ValueError, "add", "(2, 3)", "(2, 2)"):
        t(2, 3) + np.zeros((2, 2), np.float32)
    with raises(ValueError, "mul", "(3,)", "(2,)"):
        t(3) * t(2)
    with raises(ValueError, "maximum", "(5,)", "(4, 3)"):
        F.maximum(t(5), t(4, 3))


def test_where_shape_mismatch():
    with raises(ValueError, "where", "(2,)", "(3,)"):
        F.where(t(2, dtype="bool"), t(3), 0.0)


def test_broadcast_to_bad_shape():
    with raises(ValueError, "broadcast", "(2, 4)"):
        F.broadcast_to(t(3), (2, 4))


@pytest.mark.parametrize("fn", [F.sum, F.mean, F.max, F.min, F.var, F.argmax, F.argmin])
def test_reduction_bad_axis(fn):
    with raises(ValueError, "axis 3", "out of range", "(2, 3)"):
        fn(t(2, 3), axis=3)
    with raises(ValueError, "axis -3", "(2, 3)"):
        fn(t(2, 3), axis=-3)


def test_sum_repeated_axis():
    with raises(ValueError, "sum", "repeats"):
        F.sum(t(2, 3), axis=(0, -2))


def test_bad_reshape():
    with raises(ValueError, "reshape", "(2, 3)", "(4, 2)"):
        F.reshape(t(2, 3), (4, 2))
    with raises(ValueError, "reshape", "(2, 3)", "(4, -1)"):
        t(2, 3).reshape(4, -1)
    with raises(ValueError, "reshape", "-1"):
        t(2, 3).reshape(-1, -1)


def test_bad_transpose_pattern():
    with raises(ValueError, "transpose", "(0, 0)", "(2, 3)"):
        F.transpose(t(2, 3), (0, 0))
    with raises(ValueError, "transpose", "(0, 1, 2)", "(2, 3)"):
        t(2, 3).transpose(0, 1, 2)
    with raises(ValueError, "transpose", "(1,)"):
        t(2, 3).transpose(1)


def test_concat_stack_split_mismatch():
    with raises(ValueError, "concat", "(2, 3)", "(2, 4)"):
        F.concat([t(2, 3), t(2, 4)], axis=0)
    with raises(ValueError, "concat", "rank", "(2,)"):
        F.concat([t(2, 3), t(2)])
    with raises(ValueError, "concat", "axis 2"):
        F.concat([t(2, 3), t(2, 3)], axis=2)
    with raises(ValueError, "stack", "(2, 3)", "(2, 4)"):
        F.stack([t(2, 3), t(2, 4)])
    with raises(ValueError, "split", "(5,)", "2"):
        F.split(t(5), 2)


def test_other_shape_ops():
    with raises(ValueError, "squeeze", "(2, 3)"):
        F.squeeze(t(2, 3), 0)
    with raises(ValueError, "pad", "(2, 3)"):
        F.pad(t(2, 3), ((1, 1),))
    with raises(ValueError, "expand_dims", "axis 4"):
        F.expand_dims(t(2, 3), 4)
    with raises(ValueError, "flatten", "axis 3"):
        F.flatten(t(2, 3), 3)


# ----------------------------------------------------------------------------- dtypes
def test_arithmetic_on_bools():
    with raises(ValueError, "add", "bool", "astype"):
        F.add(t(2, dtype="bool"), t(2, dtype="bool"))
    with raises(ValueError, "neg", "bool"):
        F.neg(t(2, dtype="bool"))
    with raises(ValueError, "floor", "bool"):
        F.floor(t(2, dtype="bool"))


def test_float_only_primitives_reject_bools_and_ints():
    # The F functions cast for you (F.exp(bool) is float32); the primitives name the fix.
    with raises(ValueError, "exp", "bool", "float"):
        apply1("exp", t(3, dtype="bool"))
    with raises(ValueError, "tanh", "i32", "float"):
        apply1("tanh", t(3, dtype="int32"))
    with raises(ValueError, "pow", "i32", "float"):
        apply1("pow", t(3, dtype="int32"), t(3, dtype="int32"))
    with raises(ValueError, "reduce_sum", "bool"):
        apply1("reduce_sum", t(3, dtype="bool"), axes=(0,))


def test_primitive_operand_checks():
    with raises(ValueError, "add", "f32[3]", "i32[3]", "astype"):
        apply1("add", t(3), t(3, dtype="int32"))
    with raises(ValueError, "add", "f32[3]", "f32[2]", "broadcast"):
        apply1("add", t(3), t(2))


@pytest.mark.parametrize("data", [np.zeros(2, np.complex64), np.array(["a", "b"]), np.array([object()])])
def test_unsupported_dtype(data):
    with raises(TypeError, "jitgine.tensor", str(data.dtype), "float32"):
        jg.tensor(data)


@pytest.mark.parametrize("dtype", ["complex64", "float16", "uint8", "not-a-dtype"])
def test_astype_unsupported_dtype(dtype):
    with raises(TypeError, "astype", "float32", dtype):
        t(2).astype(dtype)


# ----------------------------------------------------------------------------- indexing
def test_out_of_range_index():
    with raises(IndexError, "index 5", "axis 0", "size 2", "(2, 3)"):
        t(2, 3)[5]
    with raises(IndexError, "index -4", "axis 1", "size 3"):
        t(2, 3)[0, -4]
    with raises(IndexError, "too many indices", "(2, 3)"):
        t(2, 3)[0, 0, 0]
    with raises(IndexError, "ellipsis"):
        t(2, 3)[..., ...]
    with raises(IndexError, "0"):
        t(0)[0]


def test_unsupported_index_kinds():
    with raises(IndexError, "arrays/tensors", "not supported"):
        t(2, 3)[np.array([0])]
    with raises(IndexError, "arrays/tensors"):
        t(2, 3)[jg.tensor([0])]
    with raises(IndexError, "negative slice steps"):
        t(2, 3)[::-1]


# ----------------------------------------------------------------------------- Tensor API
def test_tensor_api_errors():
    with raises(ValueError, "item", "(3,)"):
        t(3).item()
    with raises(ValueError, "ambiguous", "(2,)"):
        bool(t(2))
    with raises(TypeError, "0-d"):
        len(jg.tensor(1.0))
    with raises(ValueError, "device", "gpu0", "cpux"):
        jg.tensor([1.0], device="gpu0")
    with raises(TypeError, "integer"):
        [1, 2, 3][jg.tensor(1.5)]


def test_extremum_of_empty_axis():
    with raises(ValueError, "reduce_max", "[0,3]", "empty axis"):
        F.max(t(0, 3), axis=0)
    with raises(ValueError, "argmin", "empty axis"):
        F.argmin(t(0, 3), axis=0)
