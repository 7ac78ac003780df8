"""Contractions with a fused elementwise epilogue: `fused_matmul`, `fused_conv2d`.

    %y, %mask = fused_conv2d(%x, %w, %bias) {groups=1, ..., views=[[0,0,1,0,0]]} : f32[..], f32[..]
        region (%acc: f32[], %b: f32[]) { ... return %relu, %mask }

The first two operands and the contraction attributes (those of `matmul` or
`conv2d`) define the contraction result C. The node then iterates C's shape
like a `fused` node: region input 0 is the element of C, region input i >= 1
is operand i + 1 read through `views[i - 1]` (offset, one stride per dim of
C's shape), and every region output is a result of C's shape. So epilogue
fusion keeps all of a `fused` group's outputs (the activation and the mask
kept for backward alike), and C itself never exists in memory unless the
back end needs it as scratch.

The compiled kernel (codegen.epilogue) stores the first region output of C's
dtype through the contraction's output tile, so it needs one; the pass only
forms such nodes.

The NumPy meaning (in `ir.interpret.EXTRA`) evaluates the contraction with
its own rule, then the region as `fused` does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .graph import Node, Value
from .ops import _check_fused, check, infer, register
from .ops_conv import CONV_ATTRS
from .types import TensorType, contiguous_strides

MATMUL_ATTRS = {"transpose_a": False, "transpose_b": False}
# fused op -> (contraction op, the contraction's own attributes)
EPILOGUE_OPS = {"fused_matmul": ("matmul", MATMUL_ATTRS), "fused_conv2d": ("conv2d", CONV_ATTRS)}


def contraction_type(op: str, types: Sequence[TensorType], attrs: dict) -> TensorType:
    """The type of the contraction result C of fused op `op` (checks its operands and attributes)."""
    check(len(types) >= 2, op, types, "needs the contraction's two operands first")
    contraction, own = EPILOGUE_OPS[op]
    (result,) = infer(contraction, types[:2], {k: attrs[k] for k in own if k in attrs})
    return result


def contraction_node(node: Node) -> Node:
    """The plain contraction a fused node starts with (for the interpreter and the back end)."""
    contraction, own = EPILOGUE_OPS[node.op]
    attrs = tuple((k, v) for k, v in node.attrs if k in own)
    result = contraction_type(node.op, [v.type for v in node.operands], dict(node.attrs))
    return Node(contraction, node.operands[:2], attrs, (Value(result),))


def _rule(op: str):
    def rule(types, region, views, **attrs):
        c = contraction_type(op, types, attrs)
        check(isinstance(views, tuple) and len(views) == len(types) - 2, op, types,
              "needs one view per operand after the contraction's two")
        # Checked as a `fused` node over C's shape whose operand 0 is C itself (read contiguously).
        _check_fused(op, [c, *types[2:]], region, [(0, *contiguous_strides(c.shape)), *views], c.shape)
        check(len(region.outputs) >= 1, op, types, "the region needs at least one output")
        return [TensorType(c.shape, r.dtype) for r in region.outputs]

    return rule


for _op, (_, _own) in EPILOGUE_OPS.items():
    register(_op, "fused", None, required=("views",), optional=_own, has_region=True)(_rule(_op))


def _interpret(node: Node, args: list[np.ndarray]) -> list[np.ndarray]:
    from .interpret import NP_DTYPES, evaluate_node, run, strided_view

    (c,) = evaluate_node(contraction_node(node), args[:2])
    shape = c.shape
    views = [strided_view(a, view, shape) for a, view in zip(args[2:], node.attr("views"))]
    outputs = run(node.region, [c, *views])
    return [np.asarray(np.broadcast_to(o, shape), dtype=NP_DTYPES[r.dtype.value], order="C")
            for o, r in zip(outputs, node.results)]


def _register_interpretation() -> None:
    from .interpret import EXTRA

    EXTRA.update({op: _interpret for op in EPILOGUE_OPS})


_register_interpretation()
