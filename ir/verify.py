"""The verifier: a graph is in SSA form, ordered, and every node type-checks."""

from __future__ import annotations

import weakref

from .graph import Graph, Node, Value
from .ops import OpError, infer

# Nodes whose result types were checked against `infer`. A node, its values and their types are
# frozen, so the check holds for good; the pass manager verifies after every pass and most nodes
# survive many passes unchanged. Nodes with a region are rechecked (a region graph is mutable).
_type_checked: "weakref.WeakSet[Node]" = weakref.WeakSet()


class VerifyError(ValueError):
    pass


def verify(graph: Graph) -> Graph:
    """Raise VerifyError unless `graph` is well formed; return it for chaining.

    Region bodies may only use their own inputs and values defined inside them:
    a fused kernel reads memory through its operands, never by reaching out.
    """
    defined: set[Value] = set()
    for value in graph.inputs:
        if value in defined:
            raise VerifyError(f"{graph.name}: input %{value.id} is listed twice")
        defined.add(value)
    for position, node in enumerate(graph.nodes):
        for operand in node.operands:
            if operand not in defined:
                raise VerifyError(
                    f"{graph.name}: node {position} ({node.op}) uses %{operand.id}, "
                    "which is not defined before it"
                )
        if node not in _type_checked:
            _check_types(graph, position, node)
        if node.region is not None:
            verify(node.region)
        for result in node.results:
            if result in defined:
                raise VerifyError(f"{graph.name}: %{result.id} is defined twice")
            defined.add(result)
    for value in graph.outputs:
        if value not in defined:
            raise VerifyError(f"{graph.name}: output %{value.id} is not defined")
    return graph


def _check_types(graph: Graph, position: int, node: Node) -> None:
    try:
        inferred = infer(node.op, [v.type for v in node.operands], node.attr_dict, node.region)
    except OpError as error:
        raise VerifyError(f"{graph.name}: node {position}: {error}") from None
    if inferred != [r.type for r in node.results]:
        raise VerifyError(
            f"{graph.name}: node {position} ({node.op}) declares result types "
            f"{[str(r.type) for r in node.results]} but infers {[str(t) for t in inferred]}"
        )
    if node.region is None:
        _type_checked.add(node)
