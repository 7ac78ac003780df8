"""A cost model: floating-point operations and bytes moved per node.

FLOPs count one per arithmetic, comparison or select operation on one
element, and one per transcendental (exp, log, tanh, ...) like the
usual roofline convention; a multiply-add in a contraction counts two.
Casts, constants and layout ops count none. A node with a region (a fused
kernel) costs its region's operations times the points it iterates, plus
the contraction it starts with for contraction-with-epilogue ops
(`fused_<op>` costs `<op>` plus its region).

Bytes moved are every operand read once plus every result written once: a
lower bound on the memory traffic (a broadcast operand is counted once,
scratch buffers such as conv's im2col columns are not counted).
"""

from __future__ import annotations

import math
from typing import Callable

from .graph import Graph, Node
from .ops import REGISTRY

FLOP_KINDS = ("unary", "binary", "compare", "select", "reduce")
FlopRule = Callable[[Node], int]
FLOP_RULES: dict[str, FlopRule] = {}


def flop_rule(*ops: str) -> Callable[[FlopRule], FlopRule]:
    def wrap(fn: FlopRule) -> FlopRule:
        for op in ops:
            FLOP_RULES[op] = fn
        return fn

    return wrap


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


@flop_rule("matmul")
def _matmul(node: Node) -> int:
    a = node.operands[0].shape
    k = a[-2] if node.attr("transpose_a", False) else a[-1]
    return 2 * _size(node.results[0].shape) * k


@flop_rule("conv2d", "conv2d_grad_input")
def _conv(node: Node) -> int:
    # x or dy (operand 0) against the weight (operand 1): 2 * output points * C/groups * KH * KW.
    # (A fused_conv2d's results all have the convolution's output shape.)
    weight = node.operands[1].shape
    out = node.operands[0].shape if node.op == "conv2d_grad_input" else node.results[0].shape
    return 2 * _size(out) * _size(weight[1:])


@flop_rule("conv2d_grad_weight")
def _conv_grad_weight(node: Node) -> int:
    return 2 * _size(node.operands[1].shape) * _size(node.results[0].shape[1:])


@flop_rule("max_pool2d", "avg_pool2d", "max_pool2d_grad", "avg_pool2d_grad")
def _pool(node: Node) -> int:
    windows = node.results[0].shape if node.op in ("max_pool2d", "avg_pool2d") else node.operands[-1].shape
    return _size(windows) * _size(tuple(node.attr("kernel")))


def region_flops(region: Graph) -> int:
    """Operations one evaluation of a region performs (per point of the iteration space)."""
    total = 0
    for node in region.walk():
        opdef = REGISTRY.get(node.op)
        if opdef is not None and opdef.kind in FLOP_KINDS:
            total += 1
    return total


def node_flops(node: Node) -> int:
    """Floating-point (and integer) operations `node` performs."""
    base = node.op[len("fused_"):] if node.op.startswith("fused_") else node.op
    total = FLOP_RULES[base](node) if base in FLOP_RULES else 0
    if node.region is not None:
        points = _size(tuple(node.attr("shape", node.results[0].shape)))
        total += points * (region_flops(node.region) + (node.op == "fused_reduce"))
    elif base not in FLOP_RULES:
        opdef = REGISTRY.get(node.op)
        if opdef is not None and opdef.kind in FLOP_KINDS:
            total += max(_size(v.shape) for v in node.operands + node.results)
    return total


def node_bytes(node: Node) -> int:
    """Bytes read (each distinct operand once) plus bytes written (each result once)."""
    operands = {id(v): v for v in node.operands}.values()
    return sum(v.type.nbytes for v in list(operands) + list(node.results))
