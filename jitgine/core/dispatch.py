"""`apply`: the one door every operation goes through.

Each public op bottoms out in `apply(primitive, *inputs, **attrs)`. It checks
the operands against the primitive's declaration (ir.ops), then either runs a
compiled kernel now (eager) or records the primitive into the graph being
traced. Recorders (GradManager tapes) see every application, which is how
autodiff works for every op, composite or not.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from ir.graph import freeze_attrs
from ir.ops import infer
from ir.types import TensorType

from . import eager

if TYPE_CHECKING:
    from ..tensor import Tensor


class Recorder(Protocol):
    def record(self, primitive: str, attrs: dict[str, Any], inputs: Sequence["Tensor"],
               outputs: Sequence["Tensor"]) -> None: ...


class Tracer(Protocol):
    def apply(self, primitive: str, attrs: dict[str, Any], inputs: Sequence["Tensor"],
              types: list[TensorType]) -> list["Tensor"]: ...


recorders: list[Recorder] = []
tracer: Tracer | None = None


@functools.lru_cache(maxsize=8192)
def _cached_infer(primitive: str, operand_types: tuple[TensorType, ...], items: tuple) -> tuple[TensorType, ...]:
    """Shape inference once per (primitive, operand types, attributes): eager code repeats them."""
    return tuple(infer(primitive, operand_types, dict(items)))


def _hashable(items: tuple) -> bool:
    try:
        hash(items)
    except TypeError:
        return False
    return True


def apply(primitive: str, *inputs: "Tensor", **attrs: Any) -> list["Tensor"]:
    """Apply `primitive` to tensors; returns its results (a list, usually of one)."""
    items = freeze_attrs(attrs) if attrs else ()
    operand_types = tuple(t._type for t in inputs)
    frozen = dict(items)
    if _hashable(items):
        types = list(_cached_infer(primitive, operand_types, items))
    else:
        types = infer(primitive, operand_types, frozen)
    if tracer is not None:
        outputs = tracer.apply(primitive, frozen, inputs, types)
    else:
        outputs = eager.execute(primitive, frozen, inputs, types)
    for recorder in recorders:
        recorder.record(primitive, frozen, inputs, outputs)
    return outputs


def apply1(primitive: str, *inputs: "Tensor", **attrs: Any) -> "Tensor":
    """`apply` for the common single-result case."""
    return apply(primitive, *inputs, **attrs)[0]
