"""Shape and creation ops: reshape, transpose, concat, pad, zeros, arange, ..."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ir.types import DType

from ..core.dispatch import apply1
from ..tensor import Tensor, as_tensor
from .elementwise import add, equal, mul, prepare


def _axis(name: str, axis: int, rank: int) -> int:
    if not isinstance(axis, (int, np.integer)) or not -rank <= axis < max(rank, 1):
        raise ValueError(f"{name}: axis {axis} is out of range for rank {rank}")
    return int(axis) % max(rank, 1)


def reshape(x: Any, shape: Any) -> Tensor:
    """Reshape; one dim may be -1 (inferred)."""
    x = as_tensor(x)
    shape = [int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,))]
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: at most one dim may be -1, got {tuple(shape)}")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or x.size % known:
            raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} elements) into {tuple(shape)}")
        shape[shape.index(-1)] = x.size // known
    shape = tuple(shape)
    if shape == x.shape:
        return x
    if math.prod(shape) != x.size or any(d < 0 for d in shape):
        raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} elements) into {shape}")
    return apply1("reshape", x, shape=shape)


def flatten(x: Any, start_axis: int = 0, end_axis: int = -1) -> Tensor:
    x = as_tensor(x)
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = _axis("flatten", start_axis, x.ndim), _axis("flatten", end_axis, x.ndim)
    shape = x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:]
    return reshape(x, shape)


def transpose(x: Any, pattern: Sequence[int]) -> Tensor:
    x = as_tensor(x)
    perm = tuple(int(p) for p in pattern)
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"transpose: pattern {perm} is not a permutation of the {x.ndim} axes of {x.shape}")
    if perm == tuple(range(x.ndim)):
        return x
    return apply1("permute", x, perm=perm)


def expand_dims(x: Any, axis: Any) -> Tensor:
    x = as_tensor(x)
    axes = [axis] if isinstance(axis, int) else list(axis)
    rank = x.ndim + len(axes)
    axes = sorted(_axis("expand_dims", a, rank) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, tuple(shape))


def squeeze(x: Any, axis: Any = None) -> Tensor:
    x = as_tensor(x)
    if axis is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        axes = [_axis("squeeze", a, x.ndim) for a in ([axis] if isinstance(axis, int) else axis)]
        bad = [a for a in axes if x.shape[a] != 1]
        if bad:
            raise ValueError(f"squeeze: axis {bad} of shape {x.shape} is not of size 1")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def concat(inputs: Sequence[Any], axis: int = 0) -> Tensor:
    if not inputs:
        raise ValueError("concat: needs at least one tensor")
    tensors = [as_tensor(t) for t in inputs]
    ranks = {t.ndim for t in tensors}
    if len(ranks) != 1:
        raise ValueError(f"concat: all tensors need one rank, got shapes {[t.shape for t in tensors]}")
    axis = _axis("concat", axis, tensors[0].ndim)
    dtype = prepare("concat", *[Tensor._wrap(np.zeros((), t.dtype)) for t in tensors])[0].dtype
    tensors = [t.astype(dtype) for t in tensors]
    for t in tensors:
        if t.shape[:axis] + t.shape[axis + 1:] != tensors[0].shape[:axis] + tensors[0].shape[axis + 1:]:
            raise ValueError(f"concat: shapes {[t.shape for t in tensors]} differ outside axis {axis}")
    if len(tensors) == 1:
        return tensors[0]
    return apply1("concat", *tensors, axis=axis)


def stack(inputs: Sequence[Any], axis: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in inputs]
    if len({t.shape for t in tensors}) > 1:
        raise ValueError(f"stack: all tensors need one shape, got {[t.shape for t in tensors]}")
    axis = _axis("stack", axis, tensors[0].ndim + 1)
    return concat([expand_dims(t, axis) for t in tensors], axis)


def split(x: Any, nsplits_or_sections: Any, axis: int = 0) -> list[Tensor]:
    """Split into `n` equal parts (int) or at the given indices (list), as MegEngine."""
    x = as_tensor(x)
    axis = _axis("split", axis, x.ndim)
    size = x.shape[axis]
    if isinstance(nsplits_or_sections, int):
        n = nsplits_or_sections
        if n <= 0 or size % n:
            raise ValueError(f"split: dim {axis} of shape {x.shape} does not divide into {n} equal parts")
        bounds = [i * (size // n) for i in range(n + 1)]
    else:
        bounds = [0, *[int(i) for i in nsplits_or_sections], size]
        if bounds != sorted(bounds) or bounds[-2] > size:
            raise ValueError(f"split: indices {list(nsplits_or_sections)} must be increasing and within {size}")
    return [slice_axis(x, axis, lo, hi) for lo, hi in zip(bounds, bounds[1:])]


def slice_axis(x: Tensor, axis: int, start: int, stop: int, step: int = 1) -> Tensor:
    starts = [0] * x.ndim
    stops = list(x.shape)
    steps = [1] * x.ndim
    starts[axis], stops[axis], steps[axis] = start, stop, step
    return apply1("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))


def pad(x: Any, pad_width: Any, mode: str = "constant", constant_value: float = 0.0) -> Tensor:
    """Constant padding; `pad_width` is ((before, after), ...) per axis, as NumPy."""
    x = as_tensor(x)
    if mode != "constant":
        raise ValueError(f"pad: mode {mode!r} is not supported; only 'constant'")
    widths = [tuple(int(v) for v in w) for w in pad_width]
    if len(widths) != x.ndim or any(len(w) != 2 or min(w) < 0 for w in widths):
        raise ValueError(f"pad: pad_width needs a non-negative (before, after) pair per axis of {x.shape}")
    return apply1("pad", x, low=tuple(w[0] for w in widths), high=tuple(w[1] for w in widths),
                  value=float(constant_value))


def full(shape: Any, value: Any, dtype: Any = None) -> Tensor:
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if dtype is None:
        dtype = "float32" if isinstance(value, float) else "bool" if isinstance(value, bool) else "int32"
    dt = DType.parse(np.dtype(dtype).name)
    return apply1("constant", value=value if dt.is_float else int(value) if not dt.is_bool else bool(value),
                  shape=shape, dtype=dt.name)


def zeros(shape: Any, dtype: Any = "float32") -> Tensor:
    return full(shape, 0.0 if np.dtype(dtype).kind == "f" else 0, dtype)


def ones(shape: Any, dtype: Any = "float32") -> Tensor:
    return full(shape, 1.0 if np.dtype(dtype).kind == "f" else 1, dtype)


def zeros_like(x: Any) -> Tensor:
    x = as_tensor(x)
    return zeros(x.shape, x.dtype)


def ones_like(x: Any) -> Tensor:
    x = as_tensor(x)
    return ones(x.shape, x.dtype)


def full_like(x: Any, value: Any) -> Tensor:
    x = as_tensor(x)
    return full(x.shape, value, x.dtype)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = "float32") -> Tensor:
    if stop is None:
        start, stop = 0, start
    count = max(0, math.ceil((stop - start) / step))
    dt = DType.parse(np.dtype(dtype).name)
    index = apply1("iota", shape=(count,), axis=0, dtype=dt.name)
    if start == 0 and step == 1:
        return index
    return add(mul(index, step), start).astype(dtype)


def repeat(x: Any, repeats: int, axis: int | None = None) -> Tensor:
    """Each element `repeats` times along `axis` (flattened first when None), as NumPy/MegEngine:
    a broadcast along a new axis after `axis`, then a reshape."""
    x = as_tensor(x)
    if not isinstance(repeats, (int, np.integer)) or repeats < 0:
        raise ValueError(f"repeat: repeats must be a non-negative int, got {repeats!r}")
    if axis is None:
        x, axis = reshape(x, (x.size,)), 0
    axis = _axis("repeat", axis, x.ndim)
    spread = expand_dims(x, axis + 1)
    target = spread.shape[:axis + 1] + (int(repeats),) + spread.shape[axis + 2:]
    out_shape = x.shape[:axis] + (x.shape[axis] * int(repeats),) + x.shape[axis + 1:]
    return reshape(apply1("broadcast", spread, shape=target), out_shape)


def tile(x: Any, reps: Sequence[int]) -> Tensor:
    """`x` repeated `reps[i]` times along axis i, as NumPy (reps longer than x.ndim adds leading
    axes): a broadcast along a new axis before each axis, then a reshape."""
    x = as_tensor(x)
    reps = tuple(int(r) for r in (reps if isinstance(reps, (tuple, list)) else (reps,)))
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: reps must be non-negative, got {reps}")
    rank = max(x.ndim, len(reps))
    reps = (1,) * (rank - len(reps)) + reps
    x = reshape(x, (1,) * (rank - x.ndim) + x.shape)
    spread = reshape(x, tuple(d for dim in x.shape for d in (1, dim)))
    target = tuple(d for r, dim in zip(reps, x.shape) for d in (r, dim))
    return reshape(apply1("broadcast", spread, shape=target), tuple(r * dim for r, dim in zip(reps, x.shape)))


def linspace(start: float, stop: float, num: int, dtype: Any = "float32") -> Tensor:
    """`num` evenly spaced values from `start` to `stop` inclusive, as NumPy/MegEngine."""
    num = int(num)
    if num < 0:
        raise ValueError(f"linspace: num must be non-negative, got {num}")
    index = apply1("iota", shape=(num,), axis=0, dtype="float32")
    step = (stop - start) / (num - 1) if num > 1 else 0.0
    return add(mul(index, step), start).astype(dtype)


def eye(n: int, m: int | None = None, dtype: Any = "float32") -> Tensor:
    """The (n, m) identity matrix (ones on the diagonal)."""
    m = n if m is None else m
    rows = apply1("iota", shape=(int(n), int(m)), axis=0, dtype="int32")
    columns = apply1("iota", shape=(int(n), int(m)), axis=1, dtype="int32")
    return equal(rows, columns).astype(dtype)


def detach(x: Any) -> Tensor:
    """The same value with no autodiff history."""
    x = as_tensor(x)
    out = Tensor._wrap(x._array)
    out._symbol = x._symbol
    return out

