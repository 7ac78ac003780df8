"""`apply`: the one door every operation goes through.

Each public op bottoms out in `apply(primitive, *inputs, **attrs)`. It checks
the operands against the primitive's declaration (ir.ops), then either runs a
compiled kernel now (eager) or records the primitive into the graph being
traced. Recorders (GradManager tapes) see every application, which is how
autodiff works for every op, composite or not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

from ir.graph import freeze_attrs
from ir.ops import infer
from ir.types import TensorType

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


def apply(primitive: str, *inputs: "Tensor", **attrs: Any) -> list["Tensor"]:
    """Apply `primitive` to tensors; returns its results (a list, usually of one)."""
    from . import eager

    frozen = dict(freeze_attrs(attrs))
    types = infer(primitive, [t._type for t in inputs], frozen)
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
