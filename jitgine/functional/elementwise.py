"""Elementwise math. Broadcasting and dtype promotion happen here, explicitly,
so the primitives below see operands of one shape and one dtype."""

from __future__ import annotations

from typing import Any

import numpy as np

from ir.types import DType, broadcast_shapes, promote

from ..core import dispatch, eager
from ..core.dispatch import apply1
from ..tensor import Tensor, as_tensor


def _dtype_of(t: Tensor) -> DType:
    return t._type.dtype


def cast(x: Tensor, dtype: DType) -> Tensor:
    return x if _dtype_of(x) == dtype else apply1("cast", x, dtype=dtype.name)


def broadcast_to(x: Any, shape: Any) -> Tensor:
    """Broadcast `x` to `shape` (NumPy rules)."""
    x = as_tensor(x)
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    return apply1("broadcast", x, shape=shape)


def _eager_binary(a: Any, b: Any, float_only: bool) -> list[Tensor] | None:
    """Eager binary operands that need no promotion or broadcasting work: two tensors of one dtype
    and shape, or a tensor and a Python number that takes the tensor's dtype (a float tensor and a
    float or int, an int tensor and an int), the number as a cached broadcast view. None otherwise."""
    if dispatch.tracer is not None:
        return None
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a._symbol is None and b._symbol is None:
            x, y = a._array, b._array
            if x.dtype == y.dtype and x.shape == y.shape and (x.dtype.kind == "f" or not float_only):
                return [a, b]
        return None
    tensor, number = (a, b) if isinstance(a, Tensor) else (b, a)
    kind = type(number)
    if not isinstance(tensor, Tensor) or kind not in (float, int) or tensor._symbol is not None:
        return None
    dtype = tensor._array.dtype
    if not (dtype.kind == "f" or (dtype.kind in "iu" and kind is int and not float_only)):
        return None
    view = eager.number_view(number, dtype, tensor._array.shape)
    return [tensor, view] if tensor is a else [view, tensor]


def prepare(name: str, *operands: Any, float_only: bool = False) -> list[Tensor]:
    """Tensors of one dtype (promoted) and one shape (broadcast) for an elementwise op."""
    if len(operands) == 2:
        ready = _eager_binary(*operands, float_only)
        if ready is not None:
            return ready
    if all(isinstance(o, Tensor) for o in operands):  # the common case, cheaply (eager pays per op)
        first = operands[0]._type
        if all(o._type == first for o in operands[1:]) and (first.dtype.is_float or not float_only):
            return list(operands)
    like = next((o for o in operands if isinstance(o, Tensor)), None)
    tensors = [as_tensor(o, like) for o in operands]
    dtype = _dtype_of(tensors[0])
    for t in tensors[1:]:
        dtype = promote(dtype, _dtype_of(t))
    if float_only and not dtype.is_float:
        dtype = DType.float32
    try:
        shape = broadcast_shapes(*(t.shape for t in tensors))
    except ValueError:
        raise ValueError(
            f"{name}: operand shapes {', '.join(str(t.shape) for t in tensors)} cannot be broadcast together"
        ) from None
    if dispatch.tracer is None:  # eager: a Python number needs no primitives, only a broadcast view
        numpy_dtype = np.dtype(dtype.name)
        return [Tensor._wrap(np.broadcast_to(np.asarray(t._array, numpy_dtype), shape))
                if not isinstance(o, Tensor) else broadcast_to(cast(t, dtype), shape)
                for o, t in zip(operands, tensors)]
    return [broadcast_to(cast(t, dtype), shape) for t in tensors]


def _binary(primitive: str, name: str, a: Any, b: Any, float_only: bool = False) -> Tensor:
    x, y = prepare(name, a, b, float_only=float_only)
    return apply1(primitive, x, y)


def add(x: Any, y: Any) -> Tensor: return _binary("add", "add", x, y)
def sub(x: Any, y: Any) -> Tensor: return _binary("sub", "sub", x, y)
def mul(x: Any, y: Any) -> Tensor: return _binary("mul", "mul", x, y)
def maximum(x: Any, y: Any) -> Tensor: return _binary("maximum", "maximum", x, y)
def minimum(x: Any, y: Any) -> Tensor: return _binary("minimum", "minimum", x, y)
def mod(x: Any, y: Any) -> Tensor: return _binary("mod", "mod", x, y)
def equal(x: Any, y: Any) -> Tensor: return _binary("eq", "equal", x, y)
def not_equal(x: Any, y: Any) -> Tensor: return _binary("ne", "not_equal", x, y)
def less(x: Any, y: Any) -> Tensor: return _binary("lt", "less", x, y)
def less_equal(x: Any, y: Any) -> Tensor: return _binary("le", "less_equal", x, y)
def greater(x: Any, y: Any) -> Tensor: return _binary("gt", "greater", x, y)
def greater_equal(x: Any, y: Any) -> Tensor: return _binary("ge", "greater_equal", x, y)


def true_div(x: Any, y: Any) -> Tensor:
    """x / y; integer operands divide as float32 (as NumPy's true division)."""
    return _binary("div", "div", x, y, float_only=True)


div = true_div


def floor_div(x: Any, y: Any) -> Tensor:
    a, b = prepare("floor_div", x, y)
    if _dtype_of(a).is_float:
        return apply1("floor", apply1("div", a, b))
    return apply1("div", a, b)


def pow(x: Any, y: Any) -> Tensor:
    return _binary("pow", "pow", x, y, float_only=True)


def _logical(primitive: str, x: Any, y: Any) -> Tensor:
    a, b = prepare(primitive, x, y)
    return apply1(primitive, cast(a, DType.bool), cast(b, DType.bool))


def logical_and(x: Any, y: Any) -> Tensor: return _logical("logical_and", x, y)
def logical_or(x: Any, y: Any) -> Tensor: return _logical("logical_or", x, y)
def logical_xor(x: Any, y: Any) -> Tensor: return _logical("logical_xor", x, y)
def logical_not(x: Any) -> Tensor: return apply1("logical_not", cast(as_tensor(x), DType.bool))


def _unary(primitive: str, x: Any, float_only: bool = False) -> Tensor:
    x = as_tensor(x)
    if float_only and not _dtype_of(x).is_float:
        x = cast(x, DType.float32)
    return apply1(primitive, x)


def neg(x: Any) -> Tensor: return _unary("neg", x)
def abs(x: Any) -> Tensor: return _unary("abs", x)
def sign(x: Any) -> Tensor: return _unary("sign", x)
def floor(x: Any) -> Tensor: return _unary("floor", x)
def ceil(x: Any) -> Tensor: return _unary("ceil", x)
def round(x: Any) -> Tensor: return _unary("round", x)
def exp(x: Any) -> Tensor: return _unary("exp", x, True)
def expm1(x: Any) -> Tensor: return _unary("expm1", x, True)
def log(x: Any) -> Tensor: return _unary("log", x, True)
def log1p(x: Any) -> Tensor: return _unary("log1p", x, True)
def sqrt(x: Any) -> Tensor: return _unary("sqrt", x, True)
def rsqrt(x: Any) -> Tensor: return _unary("rsqrt", x, True)
def tanh(x: Any) -> Tensor: return _unary("tanh", x, True)
def sigmoid(x: Any) -> Tensor: return _unary("logistic", x, True)
def sin(x: Any) -> Tensor: return _unary("sin", x, True)
def cos(x: Any) -> Tensor: return _unary("cos", x, True)
def erf(x: Any) -> Tensor: return _unary("erf", x, True)


def square(x: Any) -> Tensor:
    x = as_tensor(x)
    return apply1("mul", x, x)


def where(mask: Any, x: Any, y: Any) -> Tensor:
    """Elements of `x` where `mask` is true, else of `y` (broadcast together)."""
    a, b = prepare("where", x, y)
    condition = cast(as_tensor(mask), DType.bool)
    try:
        shape = broadcast_shapes(condition.shape, a.shape)
    except ValueError:
        raise ValueError(f"where: mask shape {condition.shape} and value shape {a.shape} cannot be broadcast") from None
    return apply1("select", broadcast_to(condition, shape), broadcast_to(a, shape), broadcast_to(b, shape))


def clip(x: Any, lower: Any = None, upper: Any = None) -> Tensor:
    x = as_tensor(x)
    if lower is not None:
        x = maximum(x, lower)
    if upper is not None:
        x = minimum(x, upper)
    return x


def astype(x: Any, dtype: Any) -> Tensor:
    x = as_tensor(x)
    try:
        target = DType.parse(np.dtype(dtype).name)
    except (TypeError, ValueError):
        raise TypeError(
            f"astype: cannot cast {x.dtype} tensor of shape {x.shape} to {dtype!r}; "
            "jitgine supports float32, float64, int32, int64 and bool"
        ) from None
    return cast(x, target)


def relu(x: Any) -> Tensor:
    """max(x, 0) with PyTorch's and MegEngine's gradient: 0 at x = 0 (maximum's VJP would split
    that tie), NaN passes through."""
    x = as_tensor(x)
    return where(less_equal(x, 0), 0, x)


def isnan(x: Any) -> Tensor:
    x = as_tensor(x)
    return not_equal(x, x)


def isinf(x: Any) -> Tensor:
    return equal(abs(x), float("inf"))
