"""The registry of primitive ops: operands, attributes, and type inference.

Every primitive declares how many operands it takes, which attributes it
accepts, and a rule computing its result types. The rule is also the
op's check: a bad shape, dtype or attribute raises `OpError` naming the op,
the operand types and what to do instead. Elementwise primitives take
operands of one shape and dtype; the front end makes broadcasting and dtype
promotion explicit (`broadcast`, `cast`), so passes and back end see only
simple cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .types import DType, TensorType, broadcast_shapes


class OpError(ValueError):
    """A primitive was applied to operands or attributes it does not accept."""


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str  # 'unary', 'binary', 'compare', 'select', 'cast', 'layout', 'reduce', 'source', ...
    arity: int | None  # None: variadic
    required: tuple[str, ...]
    optional: dict[str, Any] = field(default_factory=dict)
    infer: Callable[..., list[TensorType]] | None = None
    has_region: bool = False

    @property
    def elementwise(self) -> bool:
        return self.kind in ("unary", "binary", "compare", "select", "cast")


REGISTRY: dict[str, OpDef] = {}


def register(
    name: str,
    kind: str,
    arity: int | None,
    required: Sequence[str] = (),
    optional: dict[str, Any] | None = None,
    has_region: bool = False,
) -> Callable:
    """Decorator: declare primitive `name` with its inference rule."""

    def wrap(rule: Callable[..., list[TensorType]]) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"primitive {name!r} is declared twice")
        REGISTRY[name] = OpDef(name, kind, arity, tuple(required), dict(optional or {}), rule, has_region)
        return rule

    return wrap


def describe(types: Sequence[TensorType]) -> str:
    return ", ".join(str(t) for t in types) or "no operands"


def infer(op: str, operand_types: Sequence[TensorType], attrs: dict[str, Any], region=None) -> list[TensorType]:
    """Check `op` applied to `operand_types` with `attrs`; return its result types."""
    opdef = REGISTRY.get(op)
    if opdef is None:
        raise OpError(f"unknown primitive {op!r}")
    if opdef.arity is not None and len(operand_types) != opdef.arity:
        raise OpError(f"{op} takes {opdef.arity} operand(s), got {len(operand_types)} ({describe(operand_types)})")
    missing = [a for a in opdef.required if a not in attrs]
    unknown = [a for a in attrs if a not in opdef.required and a not in opdef.optional]
    if missing or unknown:
        raise OpError(
            f"{op}: missing attribute(s) {missing} / unknown attribute(s) {unknown}; "
            f"it takes {list(opdef.required)} and optionally {list(opdef.optional)}"
        )
    if opdef.has_region != (region is not None):
        raise OpError(f"{op}: {'needs' if opdef.has_region else 'takes no'} region")
    full = {**opdef.optional, **attrs}
    if opdef.has_region:
        return opdef.infer(operand_types, region=region, **full)
    return opdef.infer(operand_types, **full)


def check(condition: bool, op: str, types: Sequence[TensorType], message: str) -> None:
    if not condition:
        raise OpError(f"{op}({describe(types)}): {message}")


def normalize_axis(axis: int, rank: int, op: str, types: Sequence[TensorType]) -> int:
    check(isinstance(axis, int) and -rank <= axis < max(rank, 1), op, types,
          f"axis {axis} is out of range for rank {rank}; use an axis in [{-rank}, {rank})")
    return axis % rank if rank else 0


# ---------------------------------------------------------------- elementwise

FLOAT_UNARY = ("exp", "expm1", "log", "log1p", "sqrt", "rsqrt", "tanh", "logistic", "sin", "cos", "erf")
NUMERIC_UNARY = ("neg", "abs", "sign", "floor", "ceil", "round")
ARITHMETIC = ("add", "sub", "mul", "div", "maximum", "minimum", "mod")
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
LOGICAL = ("logical_and", "logical_or", "logical_xor")


def _unary(op: str, dtypes: str) -> None:
    @register(op, "unary", 1)
    def rule(types):
        (x,) = types
        if dtypes == "float":
            check(x.dtype.is_float, op, types, "needs a float operand; cast with astype('float32') first")
        elif dtypes == "bool":
            check(x.dtype.is_bool, op, types, "needs a bool operand")
        else:
            check(not x.dtype.is_bool, op, types, "needs a numeric operand; cast bool with astype first")
        return [x]


for _name in FLOAT_UNARY:
    _unary(_name, "float")
for _name in NUMERIC_UNARY:
    _unary(_name, "numeric")
_unary("logical_not", "bool")


def _same_operands(op: str, types: Sequence[TensorType]) -> TensorType:
    first = types[0]
    check(all(t.shape == first.shape for t in types), op, types,
          "operands must have one shape; broadcast them first (F.broadcast_to)")
    check(all(t.dtype == first.dtype for t in types), op, types,
          "operands must have one dtype; cast them first (astype)")
    return first


def _binary(op: str, kind: str) -> None:
    @register(op, kind, 2)
    def rule(types):
        t = _same_operands(op, types)
        if kind == "compare":
            return [t.with_dtype(DType.bool)]
        if op in LOGICAL:
            check(t.dtype.is_bool, op, types, "needs bool operands")
        else:
            check(not t.dtype.is_bool, op, types, "needs numeric operands; cast bool with astype first")
        return [t]


for _name in ARITHMETIC + LOGICAL:
    _binary(_name, "binary")


@register("pow", "binary", 2)
def _pow(types):
    t = _same_operands("pow", types)
    check(t.dtype.is_float, "pow", types, "needs float operands; cast integers with astype('float32') first")
    return [t]
for _name in COMPARISONS:
    _binary(_name, "compare")


@register("select", "select", 3)
def _select(types):
    cond, a, b = types
    check(cond.dtype.is_bool, "select", types, "the condition must be bool")
    check(cond.shape == a.shape == b.shape, "select", types, "condition and both branches must have one shape")
    check(a.dtype == b.dtype, "select", types, "both branches must have one dtype")
    return [a]


@register("cast", "cast", 1, required=("dtype",))
def _cast(types, dtype):
    return [types[0].with_dtype(DType.parse(str(dtype)))]


# ---------------------------------------------------------------- sources

def _shape_attr(shape: Any, op: str, types) -> tuple[int, ...]:
    check(isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape), op, types,
          f"shape must be a tuple of non-negative ints, got {shape!r}")
    return shape


@register("constant", "source", 0, required=("value", "shape", "dtype"))
def _constant(types, value, shape, dtype):
    check(isinstance(value, (int, float, bool)), "constant", types, f"value must be a number, got {value!r}")
    return [TensorType(_shape_attr(shape, "constant", types), DType.parse(str(dtype)))]


@register("iota", "source", 0, required=("shape", "axis", "dtype"))
def _iota(types, shape, axis, dtype):
    shape = _shape_attr(shape, "iota", types)
    normalize_axis(axis, len(shape), "iota", types)
    return [TensorType(shape, DType.parse(str(dtype)))]


# ---------------------------------------------------------------- layout

@register("reshape", "layout", 1, required=("shape",))
def _reshape(types, shape):
    (x,) = types
    shape = _shape_attr(shape, "reshape", types)
    result = x.with_shape(shape)
    check(result.size == x.size, "reshape", types,
          f"cannot reshape {x.size} elements into shape {shape}")
    return [result]


@register("broadcast", "layout", 1, required=("shape",))
def _broadcast(types, shape):
    (x,) = types
    shape = _shape_attr(shape, "broadcast", types)
    try:
        ok = len(shape) >= x.rank and broadcast_shapes(x.shape, shape) == shape
    except ValueError:
        ok = False
    check(ok, "broadcast", types, f"cannot broadcast to shape {shape}: each dim must be 1 or match")
    return [x.with_shape(shape)]


@register("permute", "layout", 1, required=("perm",))
def _permute(types, perm):
    (x,) = types
    check(isinstance(perm, tuple) and sorted(perm) == list(range(x.rank)), "permute", types,
          f"perm {perm!r} is not a permutation of {tuple(range(x.rank))}")
    return [x.with_shape(tuple(x.shape[p] for p in perm))]


@register("slice", "layout", 1, required=("starts", "stops", "steps"))
def _slice(types, starts, stops, steps):
    (x,) = types
    check(len(starts) == len(stops) == len(steps) == x.rank, "slice", types,
          "starts, stops and steps need one entry per axis")
    shape = []
    for dim, start, stop, step in zip(x.shape, starts, stops, steps):
        check(step >= 1 and 0 <= start <= dim and start <= stop <= dim, "slice", types,
              f"slice [{start}:{stop}:{step}] is invalid for a dim of {dim} (normalised bounds, positive step)")
        shape.append(max(0, -(-(stop - start) // step)))
    return [x.with_shape(tuple(shape))]


@register("pad", "layout", 1, required=("low", "high"), optional={"value": 0.0})
def _pad(types, low, high, value):
    (x,) = types
    check(len(low) == len(high) == x.rank and min(low + high, default=0) >= 0, "pad", types,
          "low and high need one non-negative entry per axis")
    return [x.with_shape(tuple(d + lo + hi for d, lo, hi in zip(x.shape, low, high)))]


@register("concat", "layout", None, required=("axis",))
def _concat(types, axis):
    check(len(types) >= 1, "concat", types, "needs at least one operand")
    first = types[0]
    axis = normalize_axis(axis, first.rank, "concat", types)
    for t in types:
        check(t.rank == first.rank and t.dtype == first.dtype
              and all(a == b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis),
              "concat", types, f"operands must match in dtype and in every dim but axis {axis}")
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in types)
    return [first.with_shape(tuple(shape))]


# ---------------------------------------------------------------- reductions

REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min")


def reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _check_axes(op: str, types, axes, rank: int) -> None:
    check(isinstance(axes, tuple) and list(axes) == sorted(set(axes)) and all(0 <= a < rank for a in axes),
          op, types, f"axes {axes!r} must be sorted, unique and in [0, {rank})")


def _reduction(op: str) -> None:
    @register(op, "reduce", 1, required=("axes",))
    def rule(types, axes):
        (x,) = types
        _check_axes(op, types, axes, x.rank)
        check(not x.dtype.is_bool, op, types, "needs a numeric operand; cast bool with astype first")
        if op != "reduce_sum":
            check(all(x.shape[a] > 0 for a in axes), op, types, "cannot reduce an empty axis: it has no identity")
        return [x.with_shape(reduced_shape(x.shape, axes))]


for _name in REDUCTIONS:
    _reduction(_name)


def _arg_reduction(op: str) -> None:
    @register(op, "reduce", 1, required=("axis",))
    def rule(types, axis):
        (x,) = types
        check(isinstance(axis, int) and 0 <= axis < x.rank, op, types, f"axis {axis!r} must be in [0, {x.rank})")
        check(x.shape[axis] > 0, op, types, "cannot take the arg-extremum of an empty axis")
        check(not x.dtype.is_bool, op, types, "needs a numeric operand; cast bool with astype first")
        return [TensorType(reduced_shape(x.shape, (axis,)), DType.int32)]


_arg_reduction("argmax")
_arg_reduction("argmin")


# ---------------------------------------------------------------- fused kernels

def view_of(views, index: int) -> tuple[int, tuple[int, ...]]:
    offset, *strides = views[index]
    return offset, tuple(strides)


def _check_fused(op: str, types, region, views, shape) -> None:
    shape = _shape_attr(shape, op, types)
    check(len(region.inputs) == len(types) == len(views), op, types,
          "needs one region input and one view per operand")
    for i, (t, param, view) in enumerate(zip(types, region.inputs, views)):
        check(param.type == TensorType((), t.dtype), op, types, f"region input {i} must be a {t.dtype} scalar")
        check(len(view) == len(shape) + 1, op, types, f"view {i} needs an offset and one stride per dim")
        offset, strides = view[0], view[1:]
        if 0 in shape:
            continue
        last = offset + sum(s * (d - 1) for s, d in zip(strides, shape))
        check(0 <= offset and offset < max(t.size, 1) and min(strides, default=0) >= 0 and last < max(t.size, 1),
              op, types, f"view {i} {view} reads outside its operand of {t.size} elements")
    for r in region.outputs:
        check(r.type.shape == (), op, types, "region outputs must be scalars")


@register("fused", "fused", None, required=("shape", "views"), has_region=True)
def _fused(types, region, shape, views):
    """Elementwise kernel: iterate `shape`; operand i is read at offset + strides . index."""
    _check_fused("fused", types, region, views, shape)
    return [TensorType(shape, r.dtype) for r in region.outputs]


@register("fused_reduce", "fused", None, required=("shape", "views", "reduce", "axes"), has_region=True)
def _fused_reduce(types, region, shape, views, reduce, axes):
    """Elementwise body over `shape` whose one result is reduced over `axes`."""
    _check_fused("fused_reduce", types, region, views, shape)
    check(len(region.outputs) == 1, "fused_reduce", types, "the region must have exactly one output")
    check(reduce in REDUCTIONS, "fused_reduce", types, f"reduce must be one of {REDUCTIONS}")
    _check_axes("fused_reduce", types, axes, len(shape))
    return [TensorType(reduced_shape(shape, axes), region.outputs[0].dtype)]


# ---------------------------------------------------------------- state

@register("assign", "state", 2)
def _assign(types):
    """Write `value` into the state tensor `target` (in place, at the end of the step)."""
    target, value = types
    check(target == value, "assign", types, "the new value must have the state tensor's shape and dtype")
    return [target]


def is_elementwise(op: str) -> bool:
    return REGISTRY[op].elementwise
from . import ops_nn  # noqa: E402,F401  (contractions register themselves)
from . import ops_conv  # noqa: E402,F401
from . import ops_random  # noqa: E402,F401
from . import ops_epilogue  # noqa: E402,F401  (contractions with fused epilogues)
