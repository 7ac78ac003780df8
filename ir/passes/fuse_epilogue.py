"""Epilogue fusion: a contraction and the elementwise kernel that consumes it become one node.

Runs after `fuse_elementwise`. A `matmul` or `conv2d` whose result C

  * has exactly one user, a `fused` node iterating exactly C's shape,
  * is not a graph output, and
  * is read by that node once, contiguously (the identity view; size-1 dims
    may carry any stride),

merges with that user into a `fused_matmul` / `fused_conv2d` (ir.ops_epilogue):
the contraction's operands and attributes, then the fused node's other
operands with their views, and the fused region with C's parameter moved
first. The new node keeps the fused node's result values (so no use needs
rewriting) and takes its place in the order: every operand of both nodes is
defined before it. The back end applies the region while each output tile
is still in registers, so C is never written to memory and read back.

In a training step this catches the forward's bias + activation (the relu
output and its mask, both results), the backward's mask products after each
matmul, and the optimizer update after each weight-gradient matmul.
"""

from __future__ import annotations

from ..graph import Graph, Node, Value, freeze_attrs
from ..ops_epilogue import EPILOGUE_OPS
from . import register_pass

FUSED_OP = {contraction: fused for fused, (contraction, _) in EPILOGUE_OPS.items()}


def _identity_view(view: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    offset, strides = view[0], view[1:]
    step, ok = 1, offset == 0
    for dim, stride in zip(reversed(shape), reversed(strides)):
        ok = ok and (dim == 1 or stride == step)
        step *= dim
    return ok


def _merge(contraction: Node, user: Node) -> Node | None:
    """The fused contraction node, or None when `user` does not qualify as its epilogue."""
    c = contraction.result
    shape = c.shape
    if user.op != "fused" or user.attr("shape") != shape:
        return None
    views = user.attr("views")
    positions = [i for i, v in enumerate(user.operands) if v is c]
    if len(positions) != 1 or not _identity_view(views[positions[0]], shape):
        return None
    (k,) = positions
    others = [i for i in range(len(user.operands)) if i != k]
    region = user.region
    inputs = [region.inputs[k]] + [region.inputs[i] for i in others]
    new_region = Graph(inputs, list(region.nodes), list(region.outputs), region.name)
    attrs = freeze_attrs({**contraction.attr_dict, "views": tuple(views[i] for i in others)})
    operands = contraction.operands + tuple(user.operands[i] for i in others)
    return Node(FUSED_OP[contraction.op], operands, attrs, user.results, new_region)


@register_pass("fuse_epilogue")
def fuse_epilogue(graph: Graph) -> Graph:
    """A new graph where each contraction with a qualifying elementwise user is one fused node."""
    users: dict[Value, list[Node]] = graph.users()
    outputs = set(graph.outputs)
    merged: dict[int, Node] = {}  # id(user) -> its fused contraction node
    absorbed: set[int] = set()  # id(contraction) of those merged away
    for node in graph.nodes:
        if node.op not in FUSED_OP or node.result in outputs:
            continue
        consumers = users.get(node.result, [])
        if len(consumers) != 1 or id(consumers[0]) in merged:
            continue
        fused = _merge(node, consumers[0])
        if fused is not None:
            merged[id(consumers[0])] = fused
            absorbed.add(id(node))
    nodes = [merged.get(id(n), n) for n in graph.nodes if id(n) not in absorbed]
    return Graph(list(graph.inputs), nodes, list(graph.outputs), graph.name)
