"""Eager executor of `random_uniform` on the compiled Philox kernel (codegen.random)."""

from __future__ import annotations

from codegen import kernels
from codegen.random import define_random_uniform, random_meta

from .eager import contiguous, empty, register


@register("random_uniform")
def _random_uniform(attrs, arrays, types):
    values_type, state_type = types
    state = contiguous(arrays[0])
    values, next_state = empty(values_type), empty(state_type)
    dtype = values_type.dtype
    kernel = kernels.get_kernel(("random_uniform", dtype),
                                lambda module, name: define_random_uniform(module, name, dtype))
    kernel([values, state, next_state], random_meta(values.size, dtype))
    return [values, next_state]
