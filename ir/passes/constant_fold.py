"""Constant folding of splat constants.

A `constant` node is a splat: one value repeated over its shape. An
elementwise op whose operands are all splats is a splat too, so it is
evaluated once, on 0-d arrays, by the reference interpreter - which gives the
exact result of the op in its dtype (float32 rounding, integer wraparound,
floor division). Layout ops (reshape, broadcast, permute, slice) move
elements around without changing them, so a layout op of a splat is the same
splat in the new shape.
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Node, Value, freeze_attrs
from ..interpret import NP_DTYPES, evaluate_node
from ..ops import is_elementwise
from ..types import DType, TensorType
from . import register_pass

LAYOUT = frozenset({"reshape", "broadcast", "permute", "slice"})


def splat(value: float | int | bool, shape: tuple[int, ...], dtype: DType) -> Node:
    """A new constant node."""
    attrs = freeze_attrs({"value": value, "shape": shape, "dtype": dtype.value})
    return Node("constant", (), attrs, (Value(TensorType(shape, dtype)),))


def scalar_array(node: Node) -> np.ndarray:
    """The 0-d array a splat constant repeats, in its dtype (as the interpreter makes it)."""
    return np.full((), node.attr("value")).astype(NP_DTYPES[node.result.dtype.value])


def python_scalar(array: np.ndarray) -> float | int | bool:
    """A 0-d array as the Python number that the IR text stores exactly."""
    item = array.item()
    if array.dtype.kind == "f":
        return float(item)
    if array.dtype.kind == "b":
        return bool(item)
    return int(item)


@register_pass("constant_fold")
def constant_fold(graph: Graph) -> Graph:
    """A new graph where elementwise and layout ops of splat constants are constants."""
    constants: dict[Value, Node] = {}  # value -> the splat constant node defining it
    replace: dict[Value, Value] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        operands = tuple(replace.get(v, v) for v in node.operands)
        if operands != node.operands:
            node = Node(node.op, operands, node.attrs, node.results, node.region)
        folded = None
        if node.op == "constant":
            constants[node.result] = node
        elif operands and all(v in constants for v in operands):
            if node.op in LAYOUT:
                source = constants[operands[0]]
                folded = splat(source.attr("value"), node.result.shape, node.result.dtype)
            elif is_elementwise(node.op):
                # Evaluate the op once on the scalars: exact in the result dtype.
                args = [scalar_array(constants[v]) for v in operands]
                scalar = Node(node.op, node.operands, node.attrs,
                              tuple(Value(r.type.with_shape(())) for r in node.results))
                value = python_scalar(evaluate_node(scalar, args)[0])
                folded = splat(value, node.result.shape, node.result.dtype)
        if folded is None:
            nodes.append(node)
            continue
        nodes.append(folded)
        constants[folded.result] = folded
        replace[node.result] = folded.result
    outputs = [replace.get(v, v) for v in graph.outputs]
    return Graph(list(graph.inputs), nodes, outputs, graph.name)
