"""Basic indexing: integers, slices (positive steps), None and Ellipsis."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.dispatch import apply1
from ..tensor import Tensor
from .shape import reshape


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
