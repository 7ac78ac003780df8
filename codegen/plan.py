"""Choosing a loop nest for an elementwise or reduction kernel.

Given the index space and every operand's (offset, strides), drop unit dims,
merge dims that are contiguous for every operand, order a reduction's dims
by memory order, and classify each operand's innermost stride. The result
is a `LoopPlan` (the compile-time key) and the `meta` array the kernel reads.
Eager calls and traced graphs both plan with this function, so they run the
same code on the same layouts.
"""

from __future__ import annotations

import math
from typing import Sequence

from .elementwise import LoopPlan

View = tuple[int, tuple[int, ...]]  # (offset, strides per dim), in elements


def plan_loops(
    shape: Sequence[int],
    views: Sequence[View],
    reduced_axes: Sequence[int] | None = None,
    n_outputs: int = 1,
) -> tuple[LoopPlan, list[int]]:
    """Plan the loops over `shape` for operands `views` (outputs first).

    For reductions the output views carry stride 0 along `reduced_axes`.
    """
    rank = len(shape)
    reduced = [d in set(reduced_axes or ()) for d in range(rank)]
    dims = list(range(rank))
    if reduced_axes is not None:
        # Walk memory in order: the dim with the largest input strides outermost.
        inputs = views[n_outputs:]
        dims.sort(key=lambda d: -sum(strides[d] for _, strides in inputs))
    if 0 not in shape:
        dims = [d for d in dims if shape[d] != 1]
    merged: list[list[int]] = []
    for d in dims:
        if merged:
            prev = merged[-1][-1]
            contiguous = all(strides[prev] == strides[d] * shape[d] for _, strides in views)
            if contiguous and reduced[prev] == reduced[d]:
                merged[-1].append(d)
                continue
        merged.append([d])
    if not merged:
        merged = [[]]
    new_shape = [math.prod(shape[d] for d in group) for group in merged]
    new_reduced = tuple(bool(group) and reduced[group[0]] for group in merged)
    new_strides = [
        [strides[group[-1]] if group else 0 for group in merged] for _, strides in views
    ]
    inner = tuple("c" if s[-1] == 1 else "b" if s[-1] == 0 else "s" for s in new_strides)
    output_size = math.prod(shape[d] for d in range(rank) if not reduced[d])
    meta = [output_size, *new_shape]
    for (offset, _), strides in zip(views, new_strides):
        meta += [offset, *strides]
    plan = LoopPlan(len(merged), inner, new_reduced if reduced_axes is not None else ())
    return plan, meta


def contiguous_view(shape: Sequence[int], reduced_axes: Sequence[int] = ()) -> View:
    """The view of a contiguous output over `shape`, with stride 0 on reduced axes."""
    strides = [0] * len(shape)
    step = 1
    for d in reversed(range(len(shape))):
        if d in reduced_axes:
            continue
        strides[d] = step
        step *= shape[d]
    return 0, tuple(strides)
