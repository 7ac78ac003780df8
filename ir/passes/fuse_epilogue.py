"""Epilogue fusion: a contraction and the elementwise kernels that consume it become one node.

Runs after `fuse_elementwise`. A `matmul` or `conv2d` whose result C is not a
graph output and whose every user is a `fused` node iterating exactly C's
shape and reading C once through the identity view (size-1 dims may carry
any stride), with at least one result of C's dtype (the back end stores it
through the contraction's output tile), merges with those users into one `fused_matmul` /
`fused_conv2d` (ir.ops_epilogue): the contraction's operands and attributes,
then the users' other operands with their views (shared when two users read
the same operand through the same view), and their regions concatenated
behind one parameter for C. Its results are the users' result values, in
order, so no use needs rewriting.

Several users arise when elementwise fusion leaves sibling groups, e.g.
relu(y) in the forward pass and its mask (y > 0) for the backward both read
y directly. The merged node takes the first user's place, so it only forms
when every operand of the later users exists by then (else nothing fuses).
The back end applies the region while each output tile is still in
registers, so C is never written to memory and read back.

In a training step this catches the forward's bias + activation (the relu
output and its mask, both results), the backward's mask products after each
matmul, and the optimizer update after each weight-gradient matmul.
"""

from __future__ import annotations

from ..graph import Graph, Node, Value, freeze_attrs
from ..types import TensorType
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


def _reads_contiguously(user: Node, c: Value) -> bool:
    """`user` is a `fused` node over C's shape that reads C once, through the identity view."""
    if user.op != "fused" or user.attr("shape") != c.shape:
        return False
    positions = [i for i, v in enumerate(user.operands) if v is c]
    return len(positions) == 1 and _identity_view(user.attr("views")[positions[0]], c.shape)


def _merge(contraction: Node, users: list[Node]) -> Node:
    """One fused contraction node computing every result of `users` (in order)."""
    c = contraction.result
    param = Value(TensorType((), c.dtype))
    inputs, operands, views = [param], list(contraction.operands), []
    by_source: dict[tuple, Value] = {}
    nodes: list[Node] = []
    outputs: list[Value] = []
    for user in users:
        rename: dict[Value, Value] = {}
        for operand, view, region_input in zip(user.operands, user.attr("views"), user.region.inputs):
            if operand is c:
                rename[region_input] = param
                continue
            key = (id(operand), view)
            if key not in by_source:
                by_source[key] = region_input
                inputs.append(region_input)
                operands.append(operand)
                views.append(view)
            rename[region_input] = by_source[key]
        for node in user.region.nodes:
            args = tuple(rename.get(v, v) for v in node.operands)
            nodes.append(node if args == node.operands else Node(node.op, args, node.attrs, node.results))
        outputs += [rename.get(v, v) for v in user.region.outputs]
    attrs = freeze_attrs({**contraction.attr_dict, "views": tuple(views)})
    results = tuple(r for user in users for r in user.results)
    return Node(FUSED_OP[contraction.op], tuple(operands), attrs, results, Graph(inputs, nodes, outputs, "region"))


@register_pass("fuse_epilogue")
def fuse_epilogue(graph: Graph) -> Graph:
    """A new graph where each contraction whose users qualify is one fused node with them."""
    users = graph.users()
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    defined_at = {r: i for i, n in enumerate(graph.nodes) for r in n.results}
    outputs = set(graph.outputs)
    replace: dict[int, Node | None] = {}  # id(node) -> its replacement (None: removed)
    for node in graph.nodes:
        if node.op not in FUSED_OP or node.result in outputs or id(node) in replace:
            continue
        c = node.result
        consumers = users.get(c, [])
        unique = list({id(u): u for u in consumers}.values())
        if not unique or len(unique) != len(consumers) or any(id(u) in replace for u in unique):
            continue
        if not all(_reads_contiguously(u, c) for u in unique):
            continue
        # The back end stores one result through the contraction's output tile: one must have C's dtype.
        if not any(r.dtype == c.dtype for u in unique for r in u.results):
            continue
        unique.sort(key=lambda u: position[id(u)])
        first = position[id(unique[0])]
        # The merged node takes the first user's place: every operand must exist by then.
        if any(defined_at.get(v, -1) >= first for u in unique[1:] for v in u.operands if v is not c):
            continue
        replace[id(node)] = None
        replace[id(unique[0])] = _merge(node, unique)
        for u in unique[1:]:
            replace[id(u)] = None
    nodes = [replace.get(id(n), n) for n in graph.nodes]
    return Graph(list(graph.inputs), [n for n in nodes if n is not None], list(graph.outputs), graph.name)
