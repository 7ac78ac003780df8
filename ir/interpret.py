"""A reference interpreter: runs a graph with NumPy.

It defines what each primitive means (integer division floors like Python,
`round` is half-to-even, `maximum`/`minimum` propagate NaN), and it is the
oracle for pass tests and the evaluator of constant folding. It is never on
the compute path of jitgine itself.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .graph import Graph, Node, Value

NP_DTYPES = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64, "bool": np.bool_}

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        with np.errstate(divide="ignore"):
            return np.floor_divide(a, np.where(b == 0, 1, b)) * (b != 0)
    return np.true_divide(a, b)


def _mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        return np.mod(a, np.where(b == 0, 1, b)) * (b != 0)
    return np.mod(a, b)


def _int_identity(f: Callable) -> Callable:
    return lambda x: x if x.dtype.kind in "iub" else f(x)


UNARY: dict[str, Callable] = {
    "neg": np.negative, "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p,
    "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x), "tanh": np.tanh,
    "logistic": lambda x: 1 / (1 + np.exp(-x)), "sin": np.sin, "cos": np.cos,
    "erf": lambda x: _erf(x).astype(x.dtype), "abs": np.abs, "sign": np.sign,
    "floor": _int_identity(np.floor), "ceil": _int_identity(np.ceil), "round": _int_identity(np.round),
    "logical_not": np.logical_not,
}
BINARY: dict[str, Callable] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": _div, "pow": np.power,
    "maximum": np.maximum, "minimum": np.minimum, "mod": _mod,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}
REDUCERS = {"reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min}

# Extra primitives (contractions, windows, randomness) register their NumPy meaning here.
EXTRA: dict[str, Callable[[Node, list[np.ndarray]], list[np.ndarray]]] = {}


def strided_view(array: np.ndarray, view: tuple, shape: tuple[int, ...]) -> np.ndarray:
    """The operand of a fused op as the fused op sees it: an offset + strides view."""
    offset, strides = view[0], view[1:]
    flat = np.ascontiguousarray(array).reshape(-1)
    if 0 in shape or flat.size == 0:
        return np.zeros(shape, array.dtype)
    base = flat[offset:]
    return np.lib.stride_tricks.as_strided(base, shape, [s * flat.itemsize for s in strides], writeable=False)


def _cast(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float -> int saturates like the kernels' fptosi.sat: NaN is 0, out-of-range values clamp
    (NumPy's astype leaves those undefined)."""
    if np.issubdtype(array.dtype, np.floating) and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        clamped = np.clip(np.nan_to_num(np.trunc(array), nan=0.0), info.min, info.max)
        too_high = clamped >= 2.0 ** (info.bits - 1)  # float(info.max) rounds up, out of range
        return np.where(too_high, info.max, np.where(too_high, 0, clamped).astype(dtype))
    return array


def evaluate_node(node: Node, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    op, attrs = node.op, node.attr_dict
    out_dtypes = [NP_DTYPES[r.dtype.value] for r in node.results]
    with np.errstate(all="ignore"):
        if op in UNARY:
            result = UNARY[op](args[0])
        elif op in BINARY:
            result = BINARY[op](args[0], args[1])
        elif op == "select":
            result = np.where(args[0], args[1], args[2])
        elif op == "cast":
            result = _cast(args[0], out_dtypes[0])
        elif op == "constant":
            result = np.full(node.result.shape, attrs["value"])
        elif op == "iota":
            shape, axis = attrs["shape"], attrs["axis"]
            index = np.arange(shape[axis]).reshape([-1 if i == axis else 1 for i in range(len(shape))])
            result = np.broadcast_to(index, shape)
        elif op == "reshape":
            result = np.reshape(args[0], attrs["shape"])
        elif op == "broadcast":
            result = np.broadcast_to(args[0], attrs["shape"])
        elif op == "permute":
            result = np.transpose(args[0], attrs["perm"])
        elif op == "slice":
            result = args[0][tuple(slice(a, b, c) for a, b, c in zip(attrs["starts"], attrs["stops"], attrs["steps"]))]
        elif op == "pad":
            result = np.pad(args[0], list(zip(attrs["low"], attrs["high"])), constant_values=attrs["value"])
        elif op == "concat":
            result = np.concatenate(args, axis=attrs["axis"])
        elif op in REDUCERS:
            result = REDUCERS[op](args[0], axis=attrs["axes"])
        elif op in ("argmax", "argmin"):
            result = (np.argmax if op == "argmax" else np.argmin)(args[0], axis=attrs["axis"])
        elif op in ("fused", "fused_reduce"):
            shape = attrs["shape"]
            views = [strided_view(a, attrs["views"][i], shape) for i, a in enumerate(args)]
            outputs = run(node.region, views)
            if op == "fused":
                return [np.asarray(np.broadcast_to(o, shape), dtype=d, order="C") for o, d in zip(outputs, out_dtypes)]
            reducer = REDUCERS[attrs["reduce"]]
            result = reducer(np.broadcast_to(outputs[0], shape), axis=attrs["axes"])
        elif op == "assign":
            result = args[1]
        elif op in EXTRA:
            return EXTRA[op](node, list(args))
        else:
            raise NotImplementedError(f"the interpreter has no rule for {op!r}")
    # asarray, not ascontiguousarray: the latter turns rank-0 results into shape (1,)
    return [np.asarray(result, dtype=out_dtypes[0], order="C")]


def run(graph: Graph, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate `graph` on NumPy arrays (one per input) and return its outputs."""
    if len(args) != len(graph.inputs):
        raise ValueError(f"{graph.name} takes {len(graph.inputs)} inputs, got {len(args)}")
    env: dict[Value, np.ndarray] = {}
    for value, arg in zip(graph.inputs, args):
        env[value] = np.asarray(arg, dtype=NP_DTYPES[value.dtype.value])
    for node in graph.nodes:
        for result, array in zip(node.results, evaluate_node(node, [env[v] for v in node.operands])):
            env[result] = array
    return [env[v] for v in graph.outputs]


__all__ = ["run", "evaluate_node", "EXTRA", "NP_DTYPES"]
