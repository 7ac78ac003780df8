"""Indexing: basic (integers, slices with positive steps, None and Ellipsis) and by index
tensors (gather, indexing_one_hot, topk)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.dispatch import apply1
from ..tensor import Tensor, as_tensor
from .elementwise import cast, equal, mul, where
from .nn import one_hot
from .reduction import argmax, argmin, sum as reduce_sum
from .shape import expand_dims, reshape, squeeze, stack, transpose


def getitem(x: Tensor, index: Any) -> Tensor:
    items = list(index) if isinstance(index, tuple) else [index]
    for item in items:
        if isinstance(item, (Tensor, np.ndarray, list)) or (hasattr(item, "dtype") and not isinstance(item, np.integer)):
            raise IndexError(
                f"Tensor[{index!r}]: indexing with arrays/tensors is not supported; "
                "use F.gather / F.one_hot, or index with ints and slices"
            )
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError("Tensor indexing: an index can only have a single ellipsis ('...')")
    used = sum(item is not None and item is not Ellipsis for item in items)
    if used > x.ndim:
        raise IndexError(f"Tensor of shape {x.shape}: too many indices ({used}) for {x.ndim} dims")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.ndim - used)
    else:
        items += [slice(None)] * (x.ndim - used)

    starts, stops, steps, shape_after = [], [], [], []
    axis = 0
    for item in items:
        if item is None:
            shape_after.append(1)
            continue
        dim = x.shape[axis]
        if isinstance(item, slice):
            start, stop, step = item.indices(dim)
            if step < 0:
                raise IndexError(f"Tensor of shape {x.shape}: negative slice steps are not supported (axis {axis})")
            stop = max(start, stop)
            starts.append(start)
            stops.append(stop)
            steps.append(step)
            shape_after.append(len(range(start, stop, step)))
        else:
            i = int(item)
            if not -dim <= i < dim:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {dim} (shape {x.shape})")
            i %= dim
            starts.append(i)
            stops.append(i + 1)
            steps.append(1)
        axis += 1
    result = x
    if (tuple(starts), tuple(stops), tuple(steps)) != ((0,) * x.ndim, x.shape, (1,) * x.ndim):
        result = apply1("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    return reshape(result, tuple(shape_after))


def gather(inp: Any, axis: int, index: Any) -> Tensor:
    """out[..., i, ...] = inp[..., index[..., i, ...], ...] along `axis`, as MegEngine's F.gather
    (PyTorch's torch.gather): `index` (integers) has inp's shape but along `axis`.

    A one-hot contraction (index == k) * inp summed over k: differentiable in `inp`, and it costs
    inp.shape[axis] multiply-adds per output element."""
    x, index = as_tensor(inp), as_tensor(index)
    if not index._type.dtype.is_int:
        raise TypeError(f"gather: index must be an integer tensor, got {index.dtype}; cast with astype('int32')")
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(f"gather: axis {axis} is out of range for a tensor of shape {x.shape}")
    axis = int(axis) % x.ndim
    if index.ndim != x.ndim or any(a != b for d, (a, b) in enumerate(zip(index.shape, x.shape)) if d != axis):
        raise ValueError(f"gather: index shape {index.shape} must equal the input shape {x.shape} except along "
                         f"axis {axis}")
    order = [d for d in range(x.ndim) if d != axis] + [axis]
    source = expand_dims(transpose(x, order), axis)  # inp with `axis` moved last and a 1 in its place
    selector = cast(one_hot(index, x.shape[axis]), x._type.dtype)
    return reduce_sum(mul(selector, source), x.ndim)


def indexing_one_hot(src: Any, index: Any, axis: int = 1, keepdims: bool = False) -> Tensor:
    """src[i, index[i], j] along `axis` (index has src's shape without `axis`), as MegEngine."""
    x = as_tensor(src)
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(f"indexing_one_hot: axis {axis} is out of range for a tensor of shape {x.shape}")
    axis = int(axis) % x.ndim
    out = gather(x, axis, expand_dims(as_tensor(index), axis))
    return out if keepdims else squeeze(out, axis)


def topk(inp: Any, k: int, descending: bool = False, kth_only: bool = False,
         no_sort: bool = False) -> tuple[Tensor, Tensor]:
    """The k smallest (largest with `descending`) elements of each row of a 2-D tensor, in order,
    and their int32 indices, as MegEngine's F.topk (`kth_only`: only the k-th of each row; the
    result is always sorted, so `no_sort` changes nothing). k rounds of arg-min/max, each masking
    the element it took: for the small k of top-k accuracy and beam search."""
    x = as_tensor(inp)
    if x.ndim != 2:
        raise ValueError(f"topk: expects a 2-D tensor (rows of candidates), got shape {x.shape}")
    k = int(k)
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"topk: k must be in [1, {x.shape[1]}] for rows of {x.shape[1]} elements, got {k}")
    pick = argmax if descending else argmin
    beaten = float("-inf") if descending else float("inf")
    columns = apply1("iota", shape=x.shape, axis=1, dtype="int32")
    remaining, values, indices = x.detach(), [], []
    for _ in range(k):
        chosen = pick(remaining, axis=1).astype("int32")
        indices.append(chosen)
        values.append(indexing_one_hot(x, chosen, axis=1))
        remaining = where(equal(columns, expand_dims(chosen, 1)), beaten, remaining)
    if kth_only:
        return values[-1], indices[-1]
    return stack(values, 1), stack(indices, 1)
