"""Algebraic simplification by small pattern rules, applied to a fixpoint.

Each rule is a (matcher, rewrite) pair in the tinygrad style: the matcher
looks at one node and returns the bindings the rewrite needs (or None), and
the rewrite returns either an existing value that replaces the node's result
or a new node that replaces the node (and is matched again).

Only rewrites that are exact for every input are here. `x * 0 -> 0` is not
(NaN * 0 and inf * 0 are NaN), and neither is `x + 0.0 -> x` for floats:
-0.0 + 0.0 is +0.0, so that identity only holds with a zero of the other
sign (`x + (-0.0)`, `x - 0.0`). Integers have no signed zero.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ..graph import Graph, Node, Value, freeze_attrs
from . import register_pass

Match = dict[str, Any] | None
Rule = tuple[Callable[[Node, "Context"], Match], Callable[[Node, dict[str, Any], "Context"], "Value | Node"]]

# Layout ops that keep every element's value: a splat behind them is still that splat.
SPLAT_PRESERVING = frozenset({"reshape", "broadcast", "permute", "slice"})


class Context:
    """What rules may ask about the graph being rewritten: who produced a value."""

    def __init__(self) -> None:
        self.producer: dict[Value, Node] = {}

    def splat(self, value: Value) -> float | int | bool | None:
        """The value of a splat constant (possibly behind layout ops), or None."""
        node = self.producer.get(value)
        while node is not None and node.op in SPLAT_PRESERVING:
            node = self.producer.get(node.operands[0])
        if node is None or node.op != "constant":
            return None
        return node.attr("value")

    def op_of(self, value: Value) -> Node | None:
        return self.producer.get(value)


def _is_zero(value: Any, want_negative: bool, is_float: bool) -> bool:
    """Is `value` a zero that is an exact additive identity here?"""
    if value is None or isinstance(value, bool) or value != 0:
        return False
    if not is_float:
        return True
    return (math.copysign(1.0, float(value)) < 0) == want_negative


def _identity_operand(op: str, position: int, check: Callable[[Any, bool], bool]) -> tuple[Callable, Callable]:
    """`op(x, c)` (or `op(c, x)` when position is 0) -> x, when check(c, is_float)."""
    other = 1 - position

    def match(node: Node, ctx: Context) -> Match:
        if node.op != op:
            return None
        x, c = node.operands[other], node.operands[position]
        if x.type != node.result.type or not check(ctx.splat(c), node.result.dtype.is_float):
            return None
        return {"x": x}

    return match, lambda node, m, ctx: m["x"]


def _is_one(value: Any, is_float: bool) -> bool:
    return value is not None and not isinstance(value, bool) and value == 1


def _chain(op: str) -> Callable[[Node, Context], Match]:
    """Matches op(op(x)): the inner node binds as 'inner'."""

    def match(node: Node, ctx: Context) -> Match:
        if node.op != op:
            return None
        inner = ctx.op_of(node.operands[0])
        return {"inner": inner} if inner is not None and inner.op == op else None

    return match


def _rebuild(node: Node, operand: Value, **attrs: Any) -> Node:
    merged = {**node.attr_dict, **attrs}
    return Node(node.op, (operand,), freeze_attrs(merged), (Value(node.result.type),))


def _same_type(op: str, attr_ok: Callable[[Node], bool] = lambda n: True) -> Callable[[Node, Context], Match]:
    """Matches an `op` node that returns its operand unchanged."""

    def match(node: Node, ctx: Context) -> Match:
        if node.op == op and node.operands[0].type == node.result.type and attr_ok(node):
            return {"x": node.operands[0]}
        return None

    return match


def _identity_perm(node: Node) -> bool:
    return tuple(node.attr("perm")) == tuple(range(len(node.attr("perm"))))


RULES: list[Rule] = [
    _identity_operand("mul", 1, _is_one),
    _identity_operand("mul", 0, _is_one),
    _identity_operand("div", 1, _is_one),
    _identity_operand("add", 1, lambda c, f: _is_zero(c, True, f)),
    _identity_operand("add", 0, lambda c, f: _is_zero(c, True, f)),
    _identity_operand("sub", 1, lambda c, f: _is_zero(c, False, f)),
    (_chain("neg"), lambda node, m, ctx: m["inner"].operands[0]),
    (_chain("reshape"), lambda node, m, ctx: _rebuild(node, m["inner"].operands[0])),
    (_chain("broadcast"), lambda node, m, ctx: _rebuild(node, m["inner"].operands[0])),
    (_chain("permute"), lambda node, m, ctx: _rebuild(
        node, m["inner"].operands[0], perm=tuple(m["inner"].attr("perm")[p] for p in node.attr("perm")))),
    (_same_type("reshape"), lambda node, m, ctx: m["x"]),
    (_same_type("broadcast"), lambda node, m, ctx: m["x"]),
    (_same_type("permute", _identity_perm), lambda node, m, ctx: m["x"]),
    (_same_type("cast"), lambda node, m, ctx: m["x"]),
]


def _rewrite(node: Node, ctx: Context) -> Value | Node:
    """Apply rules to `node` until none matches; the final node or replacing value."""
    while True:
        for match, rewrite in RULES:
            bindings = match(node, ctx)
            if bindings is not None:
                result = rewrite(node, bindings, ctx)
                break
        else:
            return node
        if isinstance(result, Value):
            return result
        node = result


def _simplify_once(graph: Graph) -> tuple[Graph, bool]:
    ctx = Context()
    replace: dict[Value, Value] = {}
    nodes: list[Node] = []
    changed = False
    for node in graph.nodes:
        operands = tuple(replace.get(v, v) for v in node.operands)
        if operands != node.operands:
            node = Node(node.op, operands, node.attrs, node.results, node.region)
        result = _rewrite(node, ctx)
        if isinstance(result, Value):
            replace[node.result] = result
            changed = True
            continue
        if result is not node:
            replace[node.result] = result.result
            changed = True
        nodes.append(result)
        for value in result.results:
            ctx.producer[value] = result
    outputs = [replace.get(v, v) for v in graph.outputs]
    return Graph(list(graph.inputs), nodes, outputs, graph.name), changed


@register_pass("simplify")
def simplify(graph: Graph) -> Graph:
    """A new graph with the rules applied everywhere until nothing changes."""
    while True:
        graph, changed = _simplify_once(graph)
        if not changed:
            return graph
