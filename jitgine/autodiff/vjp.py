"""Vector-Jacobian products: one rule per primitive, written in primitives.

`VJP[name](attrs, inputs, outputs, cotangent)` returns one cotangent per
input, or None for an input that gets no gradient (integer/bool operands,
conditions, piecewise-constant functions). Rules call `apply()` / F ops only,
so a backward pass run under trace is an ordinary graph of primitives.

Conventions at non-differentiable points: `maximum`/`minimum` and
`reduce_max`/`reduce_min` split the cotangent evenly between tied operands /
positions (so the total is preserved); `abs` uses sign(x) (0 at 0).
`sign`, `floor`, `ceil`, `round` and `mod`'s divisor-floor term are
piecewise constant and give zero (None).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Sequence

from ..core import dispatch, eager
from ..core.dispatch import apply1
from ..tensor import Tensor

Rule = Callable[[dict[str, Any], Sequence[Tensor], Sequence[Tensor], Tensor], list[Tensor | None]]
VJP: dict[str, Rule] = {}

# Primitives that get no gradient on purpose: sources, comparisons and logic
# (bool results), index results, state updates, fused kernels (they only
# exist after graph passes, never on a GradManager tape), random draws (their
# values do not depend on a differentiable input), and the backward-only
# primitives of windows (differentiating them would be higher-order autodiff), but for
# conv2d_grad_input, which is also F.conv_transpose2d.
NON_DIFFERENTIABLE = frozenset({
    "constant", "iota", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
    "logical_not", "argmax", "argmin", "assign", "fused", "fused_reduce", "fused_matmul", "fused_conv2d",
    "random_uniform",
    "conv2d_grad_weight", "max_pool2d_grad", "avg_pool2d_grad",
})

# Which inputs the caller needs a cotangent for (set by GradManager around each
# rule call); rules with an expensive per-input term (matmul, conv2d) skip the
# others. None means all.
_needed: ContextVar[tuple[bool, ...] | None] = ContextVar("vjp_needed", default=None)


@contextmanager
def needing(mask: Sequence[bool]) -> Iterator[None]:
    """Run rules knowing that only inputs i with mask[i] need a cotangent."""
    token = _needed.set(tuple(mask))
    try:
        yield
    finally:
        _needed.reset(token)


def needed(index: int) -> bool:
    mask = _needed.get()
    return mask is None or (index < len(mask) and mask[index])


def rule(*names: str) -> Callable[[Rule], Rule]:
    def wrap(fn: Rule) -> Rule:
        for name in names:
            VJP[name] = fn
        return fn

    return wrap


# ------------------------------------------------------------------ small helpers (primitives only)

def _const(value: float, like: Tensor) -> Tensor:
    """A scalar of `like`'s dtype broadcast to its shape: primitives under trace (the graph folds
    them), a cached broadcast view eagerly."""
    if dispatch.tracer is None and like._symbol is None:
        return eager.number_view(float(value), like._array.dtype, like._array.shape)
    scalar = apply1("constant", value=float(value), shape=(), dtype=like._type.dtype.name)
    return apply1("broadcast", scalar, shape=like.shape) if like.shape else scalar


def _mul(a: Tensor, b: Tensor) -> Tensor: return apply1("mul", a, b)
def _add(a: Tensor, b: Tensor) -> Tensor: return apply1("add", a, b)
def _sub(a: Tensor, b: Tensor) -> Tensor: return apply1("sub", a, b)
def _div(a: Tensor, b: Tensor) -> Tensor: return apply1("div", a, b)
def _neg(a: Tensor) -> Tensor: return apply1("neg", a)


def _scale(a: Tensor, value: float) -> Tensor:
    return _mul(a, _const(value, a))


def _where(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return apply1("select", cond, a, b)


def _mask(cond: Tensor, like: Tensor) -> Tensor:
    """A bool tensor as 1.0 / 0.0 of `like`'s dtype."""
    return apply1("cast", cond, dtype=like._type.dtype.name)


def _reshape(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    return x if x.shape == tuple(shape) else apply1("reshape", x, shape=tuple(shape))


def _sum_axes(x: Tensor, axes: tuple[int, ...]) -> Tensor:
    return apply1("reduce_sum", x, axes=tuple(axes)) if axes else x


def unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum `g` over the dims that broadcasting `shape` to g.shape added or stretched."""
    lead = len(g.shape) - len(shape)
    axes = tuple(i for i, d in enumerate(g.shape) if i < lead or (shape[i - lead] == 1 and d != 1))
    return _reshape(_sum_axes(g, axes), shape)


def _float(t: Tensor) -> bool:
    return t._type.dtype.is_float


# ------------------------------------------------------------------ unary

@rule("neg")
def _vjp_neg(attrs, inputs, outputs, g):
    return [_neg(g)]


@rule("exp")
def _vjp_exp(attrs, inputs, outputs, g):
    return [_mul(g, outputs[0])]


@rule("expm1")
def _vjp_expm1(attrs, inputs, outputs, g):
    return [_mul(g, apply1("exp", inputs[0]))]


@rule("log")
def _vjp_log(attrs, inputs, outputs, g):
    return [_div(g, inputs[0])]


@rule("log1p")
def _vjp_log1p(attrs, inputs, outputs, g):
    x = inputs[0]
    return [_div(g, _add(x, _const(1.0, x)))]


@rule("sqrt")
def _vjp_sqrt(attrs, inputs, outputs, g):
    y = outputs[0]
    return [_div(_scale(g, 0.5), y)]


@rule("rsqrt")
def _vjp_rsqrt(attrs, inputs, outputs, g):
    x, y = inputs[0], outputs[0]
    return [_mul(_scale(g, -0.5), _div(y, x))]  # d x^-1/2 = -1/2 x^-3/2 = -1/2 y / x


@rule("tanh")
def _vjp_tanh(attrs, inputs, outputs, g):
    y = outputs[0]
    return [_mul(g, _sub(_const(1.0, y), _mul(y, y)))]


@rule("logistic")
def _vjp_logistic(attrs, inputs, outputs, g):
    y = outputs[0]
    return [_mul(g, _mul(y, _sub(_const(1.0, y), y)))]


@rule("sin")
def _vjp_sin(attrs, inputs, outputs, g):
    return [_mul(g, apply1("cos", inputs[0]))]


@rule("cos")
def _vjp_cos(attrs, inputs, outputs, g):
    return [_neg(_mul(g, apply1("sin", inputs[0])))]


@rule("erf")
def _vjp_erf(attrs, inputs, outputs, g):
    x = inputs[0]
    return [_mul(_scale(g, 2.0 / math.sqrt(math.pi)), apply1("exp", _neg(_mul(x, x))))]


@rule("abs")
def _vjp_abs(attrs, inputs, outputs, g):
    x = inputs[0]
    return [_mul(g, apply1("sign", x))] if _float(x) else [None]


@rule("sign", "floor", "ceil", "round")
def _vjp_piecewise_constant(attrs, inputs, outputs, g):
    return [None]


# ------------------------------------------------------------------ binary

@rule("add")
def _vjp_add(attrs, inputs, outputs, g):
    return [g, g]


@rule("sub")
def _vjp_sub(attrs, inputs, outputs, g):
    return [g, _neg(g)]


@rule("mul")
def _vjp_mul(attrs, inputs, outputs, g):
    a, b = inputs
    return [_mul(g, b), _mul(g, a)]


@rule("div")
def _vjp_div(attrs, inputs, outputs, g):
    a, b = inputs
    if not _float(a):
        return [None, None]
    ga = _div(g, b)
    return [ga, _neg(_mul(ga, outputs[0]))]  # d(a/b)/db = -(a/b)/b


@rule("pow")
def _vjp_pow(attrs, inputs, outputs, g):
    a, b = inputs
    y = outputs[0]
    one = _const(1.0, a)
    ga = _mul(g, _mul(b, apply1("pow", a, _sub(b, one))))
    # d a^b / db = a^b log a, taken as 0 where a <= 0 (where a^b is 0 or only defined for integer b).
    positive = apply1("gt", a, _const(0.0, a))
    log_a = apply1("log", _where(positive, a, one))
    gb = _mul(g, _mul(y, _mul(log_a, _mask(positive, a))))
    return [ga, gb]


def _split_tie(a: Tensor, b: Tensor, g: Tensor, pick: str) -> list[Tensor | None]:
    """maximum (pick='gt') / minimum (pick='lt'): the winner takes g, ties share it evenly."""
    if not _float(a):
        return [None, None]
    wins_a = _mask(apply1(pick, a, b), g)
    tie = _mask(apply1("eq", a, b), g)
    share_a = _add(wins_a, _scale(tie, 0.5))
    ga = _mul(g, share_a)
    return [ga, _sub(g, ga)]


@rule("maximum")
def _vjp_maximum(attrs, inputs, outputs, g):
    return _split_tie(inputs[0], inputs[1], g, "gt")


@rule("minimum")
def _vjp_minimum(attrs, inputs, outputs, g):
    return _split_tie(inputs[0], inputs[1], g, "lt")


@rule("mod")
def _vjp_mod(attrs, inputs, outputs, g):
    a, b = inputs
    if not _float(a):
        return [None, None]
    # a mod b = a - floor(a / b) * b; the floor is piecewise constant.
    return [g, _neg(_mul(g, apply1("floor", _div(a, b))))]


@rule("select")
def _vjp_select(attrs, inputs, outputs, g):
    cond, a, _ = inputs
    if not _float(a):
        return [None, None, None]
    zero = _const(0.0, g)
    return [None, _where(cond, g, zero) if needed(1) else None, _where(cond, zero, g) if needed(2) else None]


@rule("cast")
def _vjp_cast(attrs, inputs, outputs, g):
    x = inputs[0]
    if not (_float(x) and _float(outputs[0])):
        return [None]
    return [apply1("cast", g, dtype=x._type.dtype.name) if g._type.dtype != x._type.dtype else g]


# ------------------------------------------------------------------ layout

@rule("reshape")
def _vjp_reshape(attrs, inputs, outputs, g):
    return [_reshape(g, inputs[0].shape)]


@rule("broadcast")
def _vjp_broadcast(attrs, inputs, outputs, g):
    return [unbroadcast(g, inputs[0].shape)]


@rule("permute")
def _vjp_permute(attrs, inputs, outputs, g):
    perm = attrs["perm"]
    inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
    return [apply1("permute", g, perm=inverse)]


@rule("slice")
def _vjp_slice(attrs, inputs, outputs, g):
    shape = inputs[0].shape
    low, high = [], []
    for axis, (dim, start, step) in enumerate(zip(shape, attrs["starts"], attrs["steps"])):
        count = g.shape[axis]
        if step > 1 and count > 0:
            # Interleave step-1 zeros after each element: (.., n, ..) -> (.., n, step, ..) -> (.., n*step, ..).
            spread = g.shape[:axis] + (count, 1) + g.shape[axis + 1:]
            g = _reshape(g, spread)
            pad_high = [0] * len(spread)
            pad_high[axis + 1] = step - 1
            g = apply1("pad", g, low=(0,) * len(spread), high=tuple(pad_high), value=0.0)
            g = _reshape(g, g.shape[:axis] + (count * step,) + g.shape[axis + 2:])
            keep = min(count * step, dim - start)
            if keep < count * step:
                stops = list(g.shape)
                stops[axis] = keep
                g = apply1("slice", g, starts=(0,) * g.ndim, stops=tuple(stops), steps=(1,) * g.ndim)
        low.append(start)
        high.append(dim - start - g.shape[axis])
    if any(low) or any(high):
        g = apply1("pad", g, low=tuple(low), high=tuple(high), value=0.0)
    return [g]


@rule("pad")
def _vjp_pad(attrs, inputs, outputs, g):
    shape = inputs[0].shape
    low = tuple(attrs["low"])
    stops = tuple(lo + d for lo, d in zip(low, shape))
    return [apply1("slice", g, starts=low, stops=stops, steps=(1,) * len(shape))]


@rule("concat")
def _vjp_concat(attrs, inputs, outputs, g):
    axis = attrs["axis"] % g.ndim
    grads, start = [], 0
    for x in inputs:
        starts, stops = [0] * g.ndim, list(g.shape)
        starts[axis], stops[axis] = start, start + x.shape[axis]
        grads.append(apply1("slice", g, starts=tuple(starts), stops=tuple(stops), steps=(1,) * g.ndim))
        start += x.shape[axis]
    return grads


# ------------------------------------------------------------------ reductions

def _expand_reduced(g: Tensor, shape: tuple[int, ...], axes: tuple[int, ...]) -> Tensor:
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
    return apply1("broadcast", _reshape(g, kept), shape=shape) if kept != shape else _reshape(g, shape)


@rule("reduce_sum")
def _vjp_reduce_sum(attrs, inputs, outputs, g):
    x = inputs[0]
    if not _float(x):
        return [None]
    return [_expand_reduced(g, x.shape, attrs["axes"])]


@rule("reduce_max", "reduce_min")
def _vjp_reduce_extremum(attrs, inputs, outputs, g):
    x = inputs[0]
    if not _float(x):
        return [None]
    axes = attrs["axes"]
    hit = _mask(apply1("eq", x, _expand_reduced(outputs[0], x.shape, axes)), x)
    count = _sum_axes(hit, axes)  # ties share the cotangent evenly
    return [_mul(hit, _expand_reduced(_div(g, count), x.shape, axes))]


# ------------------------------------------------------------------ contractions

@rule("matmul")
def _vjp_matmul(attrs, inputs, outputs, g):
    a, b = inputs
    ta, tb = attrs.get("transpose_a", False), attrs.get("transpose_b", False)
    ga = gb = None
    if needed(0):
        if ta:  # a holds op(a)^T: da = op(b) @ g^T
            ga = apply1("matmul", b, g, transpose_a=tb, transpose_b=True)
        else:  # da = g @ op(b)^T
            ga = apply1("matmul", g, b, transpose_a=False, transpose_b=not tb)
        ga = _unbroadcast_batch(ga, a.shape)
    if needed(1):
        if tb:  # db = g^T @ op(a)
            gb = apply1("matmul", g, a, transpose_a=True, transpose_b=ta)
        else:  # db = op(a)^T @ g
            gb = apply1("matmul", a, g, transpose_a=not ta, transpose_b=False)
        gb = _unbroadcast_batch(gb, b.shape)
    return [ga, gb]


def _unbroadcast_batch(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    return g if g.shape == shape else unbroadcast(g, shape)


# ------------------------------------------------------------------ windows (declared in ir/ops_conv.py)

@rule("conv2d")
def _vjp_conv2d(attrs, inputs, outputs, g):
    x, w = inputs
    gx = apply1("conv2d_grad_input", g, w, input_hw=tuple(x.shape[2:]), **attrs) if needed(0) else None
    gw = apply1("conv2d_grad_weight", x, g, kernel_hw=tuple(w.shape[2:]), **attrs) if needed(1) else None
    return [gx, gw]


@rule("conv2d_grad_input")
def _vjp_conv2d_grad_input(attrs, inputs, outputs, g):
    # y = grad_input(u, w) is conv2d's adjoint: <grad_input(u, w), g> = <u, conv2d(g, w)>.
    u, w = inputs
    conv = {k: attrs[k] for k in ("stride", "padding", "dilation", "groups") if k in attrs}
    gu = apply1("conv2d", g, w, **conv) if needed(0) else None
    gw = apply1("conv2d_grad_weight", g, u, kernel_hw=tuple(w.shape[2:]), **conv) if needed(1) else None
    return [gu, gw]


@rule("max_pool2d")
def _vjp_max_pool2d(attrs, inputs, outputs, g):
    # Each window's cotangent goes to its first maximum (row-major), as the primitive defines.
    return [apply1("max_pool2d_grad", inputs[0], g, **attrs)]


@rule("avg_pool2d")
def _vjp_avg_pool2d(attrs, inputs, outputs, g):
    return [apply1("avg_pool2d_grad", g, input_hw=tuple(inputs[0].shape[2:]), **attrs)]
