"""Element types and tensor types of the IR."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class DType(enum.Enum):
    """Element types. The value is the short name used in the IR text."""

    float32 = "f32"
    float64 = "f64"
    int32 = "i32"
    int64 = "i64"
    bool = "bool"

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.float32, DType.float64)

    @property
    def is_int(self) -> bool:
        return self in (DType.int32, DType.int64)

    @property
    def is_bool(self) -> bool:
        return self is DType.bool

    @classmethod
    def parse(cls, text: str) -> "DType":
        """Accept the IR short name ('f32') or the NumPy-style name ('float32')."""
        dtype = _BY_NAME.get(text)
        if dtype is not None:
            return dtype
        raise ValueError(f"unknown dtype {text!r}; expected one of {[d.name for d in cls]}")

    def __str__(self) -> str:
        return self.value


_PROMOTION_ORDER = [DType.bool, DType.int32, DType.int64, DType.float32, DType.float64]
_BY_NAME = {**{d.value: d for d in DType}, **{d.name: d for d in DType}}
_ITEMSIZE = {DType.float32: 4, DType.float64: 8, DType.int32: 4, DType.int64: 8, DType.bool: 1}


def promote(a: DType, b: DType) -> DType:
    """Result dtype of a binary op on `a` and `b` (floats win, wider wins, bool loses)."""
    return a if a is b else max(a, b, key=_PROMOTION_ORDER.index)


@dataclass(frozen=True)
class TensorType:
    """A tensor's static shape and element type. Rank-0 (`shape == ()`) is a scalar."""

    shape: tuple[int, ...]
    dtype: DType

    def __post_init__(self) -> None:
        if not all(isinstance(d, int) and d >= 0 for d in self.shape):
            raise ValueError(f"tensor shape must be non-negative integers, got {self.shape}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def with_shape(self, shape: tuple[int, ...]) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        return f"{self.dtype.value}[{','.join(map(str, self.shape))}]"


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides, in elements."""
    strides = []
    step = 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes; raises ValueError naming them when incompatible."""
    if all(s == shapes[0] for s in shapes[1:]):
        return tuple(shapes[0]) if shapes else ()
    rank = max(len(s) for s in shapes)
    result = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ValueError(f"shapes {' and '.join(map(str, shapes))} cannot be broadcast together")
        result.append(dims.pop() if dims else 1)
    return tuple(result)
