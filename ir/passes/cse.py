"""Common-subexpression elimination: one node per distinct computation.

Two nodes compute the same values when they apply the same op with the same
attributes (and, for fused ops, the same region) to the same operands. Keys
compare attribute *text* so that -0.0 and 0.0, or 1 and 1.0 and true, stay
apart, and regions compare by their printed form (values are numbered by
appearance, so equal bodies print equally). Nodes with effects (`assign`) are
never merged: two writes are two writes.
"""

from __future__ import annotations

from typing import Hashable

from ..graph import Graph, Node, Value
from ..ops import REGISTRY
from ..printer import format_attr, print_graph
from . import register_pass

# Kinds whose nodes are not pure functions of their operands and attributes.
IMPURE_KINDS = frozenset({"state", "random"})


def _key(node: Node) -> Hashable:
    attrs = tuple((name, format_attr(value)) for name, value in node.attrs)
    region = print_graph(node.region) if node.region is not None else None
    types = tuple(r.type for r in node.results)
    return node.op, tuple(id(v) for v in node.operands), attrs, region, types


@register_pass("cse")
def cse(graph: Graph) -> Graph:
    """A new graph where duplicate pure nodes are replaced by their first occurrence."""
    replace: dict[Value, Value] = {}
    seen: dict[Hashable, Node] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        operands = tuple(replace.get(v, v) for v in node.operands)
        if operands != node.operands:
            node = Node(node.op, operands, node.attrs, node.results, node.region)
        opdef = REGISTRY.get(node.op)
        if opdef is None or opdef.kind in IMPURE_KINDS:
            nodes.append(node)
            continue
        key = _key(node)
        first = seen.get(key)
        if first is None:
            seen[key] = node
            nodes.append(node)
            continue
        replace.update(zip(node.results, first.results))
    outputs = [replace.get(v, v) for v in graph.outputs]
    return Graph(list(graph.inputs), nodes, outputs, graph.name)
