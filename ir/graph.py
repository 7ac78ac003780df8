"""Values, nodes and graphs: the IR in SSA form.

A `Graph` has input values, a list of nodes in a valid execution order and
output values. Every `Node` applies one primitive (named by `op`, declared in
`ir.ops`) to operand values and defines result values. Values and nodes are
frozen; passes build new graphs rather than mutating old ones. A node may own
a `region`: a nested graph that describes its body (fused kernels).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from .types import TensorType

_ids = itertools.count()


@dataclass(frozen=True, eq=False)
class Value:
    """An SSA value. Identity is the object; `id` only names it in text."""

    type: TensorType
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.id}: {self.type}"


Attrs = tuple[tuple[str, Any], ...]


def _freeze(value: Any) -> Any:
    # Module level, not nested in freeze_attrs: a recursive closure is a reference cycle per call,
    # garbage that only the cyclic collector frees (its pauses showed in eager steps).
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def freeze_attrs(attrs: dict[str, Any]) -> Attrs:
    """Attributes as a sorted tuple of pairs with lists turned into tuples (hashable)."""
    return tuple(sorted((k, _freeze(v)) for k, v in attrs.items()))


@dataclass(frozen=True, eq=False)
class Node:
    op: str
    operands: tuple[Value, ...]
    attrs: Attrs
    results: tuple[Value, ...]
    region: "Graph | None" = None

    def attr(self, name: str, default: Any = None) -> Any:
        for key, value in self.attrs:
            if key == name:
                return value
        return default

    @property
    def attr_dict(self) -> dict[str, Any]:
        return dict(self.attrs)

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise ValueError(f"{self.op} has {len(self.results)} results, not one")
        return self.results[0]


@dataclass(eq=False)
class Graph:
    inputs: list[Value]
    nodes: list[Node]
    outputs: list[Value]
    name: str = "main"

    def producers(self) -> dict[Value, Node]:
        return {r: node for node in self.nodes for r in node.results}

    def users(self) -> dict[Value, list[Node]]:
        users: dict[Value, list[Node]] = {}
        for node in self.nodes:
            for operand in node.operands:
                users.setdefault(operand, []).append(node)
        return users

    def walk(self) -> Iterator[Node]:
        """Every node, including those inside regions."""
        for node in self.nodes:
            yield node
            if node.region is not None:
                yield from node.region.walk()

    def __str__(self) -> str:
        from .printer import print_graph

        return print_graph(self)


class GraphBuilder:
    """Appends nodes to a graph under construction, inferring result types."""

    def __init__(self, name: str = "main"):
        self.graph = Graph([], [], [], name)

    def input(self, type: TensorType) -> Value:
        value = Value(type)
        self.graph.inputs.append(value)
        return value

    def add(self, op: str, operands: Iterable[Value], region: Graph | None = None, **attrs: Any) -> Node:
        from .ops import infer

        operands = tuple(operands)
        frozen = freeze_attrs(attrs)
        types = infer(op, [v.type for v in operands], dict(frozen), region)
        node = Node(op, operands, frozen, tuple(Value(t) for t in types), region)
        self.graph.nodes.append(node)
        return node

    def apply(self, op: str, *operands: Value, **attrs: Any) -> Value:
        return self.add(op, operands, **attrs).result

    def output(self, *values: Value) -> Graph:
        self.graph.outputs.extend(values)
        return self.graph
