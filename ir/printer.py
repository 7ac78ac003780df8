"""The IR's text form. `ir.parser.parse_graph` reads back exactly this text.

    func @main(%0: f32[4,8], %1: f32[8]) {
      %2 = broadcast(%1) {shape=[4,8]} : f32[4,8]
      %3 = add(%0, %2) : f32[4,8]
      %4 = fused(%0, %1) {shape=[4,8], views=[[0,8,1],[0,0,1]]} : f32[4,8] region (%5: f32[], %6: f32[]) {
        %7 = mul(%5, %6) : f32[]
        return %7
      }
      return %3, %4
    }
"""

from __future__ import annotations

import json
import math
from typing import Any

from .graph import Graph, Node, Value


def format_attr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if any(c in text for c in ".e") else text + ".0"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ",".join(format_attr(v) for v in value) + "]"
    raise TypeError(f"attribute value {value!r} has no text form")


def _name(value: Value, names: dict[Value, str]) -> str:
    if value not in names:
        names[value] = f"%{len(names)}"
    return names[value]


def _params(values: list[Value], names: dict[Value, str]) -> str:
    return ", ".join(f"{_name(v, names)}: {v.type}" for v in values)


def _node_lines(node: Node, names: dict[Value, str], indent: str) -> list[str]:
    operands = ", ".join(_name(v, names) for v in node.operands)
    results = ", ".join(_name(v, names) for v in node.results)
    attrs = ""
    if node.attrs:
        attrs = " {" + ", ".join(f"{k}={format_attr(v)}" for k, v in node.attrs) + "}"
    types = ", ".join(str(v.type) for v in node.results)
    head = f"{indent}{results} = {node.op}({operands}){attrs} : {types}"
    if node.region is None:
        return [head]
    lines = [f"{head} region ({_params(node.region.inputs, names)}) {{"]
    lines += _body_lines(node.region, names, indent + "  ")
    lines.append(indent + "}")
    return lines


def _body_lines(graph: Graph, names: dict[Value, str], indent: str) -> list[str]:
    lines = []
    for node in graph.nodes:
        lines += _node_lines(node, names, indent)
    lines.append(f"{indent}return {', '.join(_name(v, names) for v in graph.outputs)}")
    return lines


class _IdNames(dict):
    """Names every value by its `Value.id`, so a value keeps its name in every graph it appears in."""

    def __contains__(self, value: object) -> bool:
        return True

    def __missing__(self, value: Value) -> str:
        return f"%{value.id}"


def print_graph(graph: Graph, stable_names: bool = False) -> str:
    """The text of `graph`; values are numbered in order of appearance, or with `stable_names` by
    their ids (the same value then reads the same in the graphs before and after a pass: for diffs)."""
    names: dict[Value, str] = _IdNames() if stable_names else {}
    head = f"func @{graph.name}({_params(graph.inputs, names)}) {{"
    return "\n".join([head, *_body_lines(graph, names, "  "), "}"]) + "\n"
