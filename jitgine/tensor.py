"""Tensor and Parameter.

An eager Tensor owns a NumPy array (its storage; possibly a strided view).
While a function is being traced, a Tensor may instead stand for a value in
the graph under construction (`_symbol`); reading its data then is an error
that the tracer reports. dtypes follow MegEngine: `tensor.dtype` is a NumPy
dtype, Python floats become float32 and Python ints int32; NumPy arrays of a
supported dtype (float32, float64, int32, int64, bool) keep it, others are
converted (unsigned and small ints to int32, float16 to float32).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ir.types import DType, TensorType

SUPPORTED = {np.dtype(n): DType.parse(n) for n in ("float32", "float64", "int32", "int64", "bool")}
DEVICE = "cpux:0"


@functools.lru_cache(maxsize=4096)
def _eager_type(shape: tuple[int, ...], dtype: np.dtype) -> TensorType:
    """The IR type of an array (cached: every eager op asks for its operands' types)."""
    return TensorType(shape, SUPPORTED[dtype])


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    if isinstance(data, Tensor):
        array = data.numpy()
    elif isinstance(data, np.ndarray):
        array = data
    else:
        array = np.asarray(data)
        if dtype is None:
            # Python numbers: float32 / int32 defaults, as MegEngine.
            if array.dtype.kind == "f":
                array = array.astype(np.float32)
            elif array.dtype.kind in "iu":
                array = array.astype(np.int32)
    if dtype is not None:
        array = array.astype(np.dtype(dtype), copy=False)
    if array.dtype not in SUPPORTED:
        kind = array.dtype.kind
        if kind == "f":
            array = array.astype(np.float32)
        elif kind in "iu":
            array = array.astype(np.int32)
        else:
            raise TypeError(
                f"jitgine.tensor: dtype {array.dtype} is not supported; "
                "use float32, float64, int32, int64 or bool"
            )
    return array


class Tensor:
    """A multi-dimensional array on which every operation runs compiled code."""

    __array_priority__ = 1000  # so ndarray (op) Tensor defers to Tensor's operators
    __slots__ = ("_array", "_symbol", "grad", "name", "__weakref__")

    def __init__(self, data: Any = None, dtype: Any = None, device: str | None = None, name: str | None = None):
        if device not in (None, "cpux", "cpu0", "cpux:0", "cpu", "cpu:0", "xpux"):
            raise ValueError(f"jitgine.tensor: device {device!r} is not available; jitgine runs on 'cpux' only")
        array = _as_array(data if data is not None else [], dtype)
        self._array = np.array(array, copy=True) if array is data else array
        self._symbol = None
        self.grad: Tensor | None = None
        self.name = name

    @classmethod
    def _wrap(cls, array: np.ndarray) -> "Tensor":
        tensor = object.__new__(Tensor)
        tensor._array = array
        tensor._symbol = None
        tensor.grad = None
        tensor.name = None
        return tensor

    # ------------------------------------------------------------- metadata
    @property
    def _type(self) -> TensorType:
        if self._symbol is not None:
            return self._symbol.type
        return _eager_type(self._array.shape, self._array.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._array.shape if self._symbol is None else self._symbol.type.shape

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype if self._symbol is None else np.dtype(self._symbol.type.dtype.name)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return self._type.size

    @property
    def device(self) -> str:
        return DEVICE

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ------------------------------------------------------------- data
    def _data(self, what: str) -> np.ndarray:
        if self._symbol is not None:
            from .core import dispatch

            if dispatch.tracer is not None:
                raise dispatch.tracer.value_error(what)
            raise RuntimeError(f"{what}: this tensor belongs to a finished trace and has no value")
        return self._array

    def numpy(self) -> np.ndarray:
        """A NumPy copy of the data."""
        return np.array(self._data("Tensor.numpy()"), copy=True)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self._data("np.asarray(Tensor)")
        return array.astype(dtype) if dtype is not None else array

    def item(self) -> Any:
        array = self._data("Tensor.item()")
        if array.size != 1:
            raise ValueError(f"Tensor.item(): only one-element tensors convert to a Python scalar, shape is {array.shape}")
        return array.reshape(()).item()

    def tolist(self) -> Any:
        return self._data("Tensor.tolist()").tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        array = self._data("bool(Tensor) (Python control flow on a tensor value)")
        if array.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {array.shape} is ambiguous; use .any() or .all()")
        return bool(array.reshape(()))

    def __index__(self) -> int:
        if not np.issubdtype(self.dtype, np.integer):
            raise TypeError("only integer tensors can be used as an index")
        return int(self.item())

    def __repr__(self) -> str:
        if self._symbol is not None:
            return f"Tensor(<traced {self._type}>, device={DEVICE})"
        body = np.array2string(self._array, separator=" ", prefix="Tensor(")
        suffix = "" if self._array.dtype in (np.float32, np.int32, np.bool_) else f", dtype={self._array.dtype}"
        return f"Tensor({body}{suffix}, device={DEVICE})"

    def __hash__(self) -> int:
        return id(self)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # ------------------------------------------------------------- methods (as MegEngine)
    def astype(self, dtype: Any) -> "Tensor":
        from . import functional as F

        return F.astype(self, dtype)

    def reshape(self, *shape: Any) -> "Tensor":
        from . import functional as F

        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return F.reshape(self, shape)

    def transpose(self, *pattern: Any) -> "Tensor":
        from . import functional as F

        if len(pattern) == 1 and isinstance(pattern[0], (tuple, list)):
            pattern = tuple(pattern[0])
        return F.transpose(self, pattern or tuple(reversed(range(self.ndim))))

    @property
    def T(self) -> "Tensor":
        return self.transpose()

    def flatten(self, start_axis: int = 0, end_axis: int = -1) -> "Tensor":
        from . import functional as F

        return F.flatten(self, start_axis, end_axis)

    def sum(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        from . import functional as F

        return F.sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        from . import functional as F

        return F.mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        from . import functional as F

        return F.max(self, axis, keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        from . import functional as F

        return F.min(self, axis, keepdims)

    def argmax(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        from . import functional as F

        return F.argmax(self, axis, keepdims)

    def argmin(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        from . import functional as F

        return F.argmin(self, axis, keepdims)

    def detach(self) -> "Tensor":
        """The same data, cut from autodiff: no gradient flows through the result."""
        from . import functional as F

        return F.detach(self)

    def to(self, device: str) -> "Tensor":
        Tensor(None, device=device)  # validates the device name
        return self

    def _reset(self, value: "Tensor") -> None:
        """Replace this tensor's contents in place (optimizers and BatchNorm use this).

        Eagerly the data is swapped; under trace the tracer turns it into an
        `assign` state update of the captured tensor.
        """
        from .core import dispatch

        if tuple(value.shape) != tuple(self.shape) or value.dtype != self.dtype:
            raise ValueError(
                f"Tensor._reset: new value {value._type} does not match the tensor's {self._type}"
            )
        if dispatch.tracer is not None:
            dispatch.tracer.reset(self, value)
        else:
            self._array = value._array

    # ------------------------------------------------------------- operators
    def __add__(self, other): return _binary("add", self, other)
    def __radd__(self, other): return _binary("add", other, self)
    def __sub__(self, other): return _binary("sub", self, other)
    def __rsub__(self, other): return _binary("sub", other, self)
    def __mul__(self, other): return _binary("mul", self, other)
    def __rmul__(self, other): return _binary("mul", other, self)
    def __truediv__(self, other): return _binary("true_div", self, other)
    def __rtruediv__(self, other): return _binary("true_div", other, self)
    def __floordiv__(self, other): return _binary("floor_div", self, other)
    def __rfloordiv__(self, other): return _binary("floor_div", other, self)
    def __mod__(self, other): return _binary("mod", self, other)
    def __rmod__(self, other): return _binary("mod", other, self)
    def __pow__(self, other): return _binary("pow", self, other)
    def __rpow__(self, other): return _binary("pow", other, self)
    def __matmul__(self, other): return _binary("matmul", self, other)
    def __rmatmul__(self, other): return _binary("matmul", other, self)
    def __eq__(self, other): return _binary("equal", self, other)  # type: ignore[override]
    def __ne__(self, other): return _binary("not_equal", self, other)  # type: ignore[override]
    def __lt__(self, other): return _binary("less", self, other)
    def __le__(self, other): return _binary("less_equal", self, other)
    def __gt__(self, other): return _binary("greater", self, other)
    def __ge__(self, other): return _binary("greater_equal", self, other)
    def __and__(self, other): return _binary("logical_and", self, other)
    def __or__(self, other): return _binary("logical_or", self, other)
    def __xor__(self, other): return _binary("logical_xor", self, other)

    def __neg__(self):
        from . import functional as F

        return F.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        from . import functional as F

        return F.abs(self)

    def __invert__(self):
        from . import functional as F

        return F.logical_not(self)

    def __getitem__(self, index: Any) -> "Tensor":
        from .functional.indexing import getitem

        return getitem(self, index)


_operators: dict[str, Any] = {}  # operator name -> its F function, looked up once (eager pays per op)


def _binary(name: str, a: Any, b: Any) -> Tensor:
    op = _operators.get(name)
    if op is None:
        from . import functional as F

        op = _operators[name] = getattr(F, name)
    return op(a, b)


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates."""

    __slots__ = ("requires_grad",)

    def __init__(self, data: Any = None, dtype: Any = None, device: str | None = None,
                 name: str | None = None, requires_grad: bool = True):
        super().__init__(data, dtype, device, name)
        self.requires_grad = requires_grad

    def __repr__(self) -> str:
        return "Parameter" + super().__repr__()[len("Tensor"):]


def tensor(data: Any = None, dtype: Any = None, device: str | None = None) -> Tensor:
    """Make a Tensor from a NumPy array, a (nested) list, a Python number or a Tensor."""
    return Tensor(data, dtype=dtype, device=device)


def as_tensor(value: Any, like: Tensor | None = None) -> Tensor:
    """`value` as a Tensor. Python scalars take `like`'s dtype when it is compatible (weak typing)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        # A Python number is a `constant` primitive, so a traced graph sees (and folds) it.
        from .core import dispatch
        from .core.dispatch import apply1

        dtype = np.asarray(value).dtype
        dtype = {"f": np.float32, "i": np.int32, "b": np.bool_}[dtype.kind]
        if like is not None:
            kind = like.dtype.kind
            if isinstance(value, bool) or (isinstance(value, int) and kind in "fiu") or (isinstance(value, float) and kind == "f"):
                dtype = like.dtype
        dtype = np.dtype(dtype)
        value = bool(value) if dtype.kind == "b" else float(value) if dtype.kind == "f" else int(value)
        if dispatch.tracer is None:  # eager: the constant is just data (no recorder needs an op without inputs)
            return Tensor._wrap(np.full((), value, dtype))
        return apply1("constant", value=value, shape=(), dtype=dtype.name)
    return Tensor(value)

