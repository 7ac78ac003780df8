"""Dead-code elimination: drop nodes whose results nothing needs.

A node is live when one of its results reaches a graph output through the
nodes that use it, or when it is an `assign` (it writes state: its effect is
the point, not its result). Region bodies are cleaned the same way, with the
region's outputs as roots; a region's inputs always stay, since they are the
fused op's operands.
"""

from __future__ import annotations

from ..graph import Graph, Node, Value
from . import register_pass

# Ops whose execution matters even when their results are unused.
EFFECTFUL = frozenset({"assign"})


def _live_nodes(graph: Graph) -> list[Node]:
    live: set[Value] = set(graph.outputs)
    kept: list[Node] = []
    for node in reversed(graph.nodes):
        if node.op in EFFECTFUL or any(r in live for r in node.results):
            kept.append(node)
            live.update(node.operands)
    kept.reverse()
    return kept


def _clean_region(node: Node) -> Node:
    if node.region is None:
        return node
    region = dce(node.region)
    if len(region.nodes) == len(node.region.nodes):
        return node
    return Node(node.op, node.operands, node.attrs, node.results, region)


@register_pass("dce")
def dce(graph: Graph) -> Graph:
    """A new graph without dead nodes; inputs and outputs are the same values."""
    nodes = [_clean_region(n) for n in _live_nodes(graph)]
    return Graph(list(graph.inputs), nodes, list(graph.outputs), graph.name)
