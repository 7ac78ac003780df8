"""Eager execution: run one primitive now on NumPy-owned buffers.

NumPy is the storage here, never the arithmetic: elementwise ops, casts,
reductions and copies run compiled kernels (codegen), and layout primitives
that are free views in NumPy (reshape of contiguous data, broadcast,
permute, slice) stay views, so a later kernel reads them through strides.
Creation of constants and index ranges fills new storage directly.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any, Callable, Sequence

import numpy as np

from codegen import kernels
from codegen.argreduce import define_arg_reduce
from codegen.elementwise import define_fused_kernel
from codegen.plan import contiguous_view, plan_loops
from ir.graph import Graph, GraphBuilder
from ir.interpret import NP_DTYPES
from ir.ops import REGISTRY
from ir.printer import print_graph
from ir.types import DType, TensorType

from ..tensor import SUPPORTED, Tensor

Handler = Callable[[dict[str, Any], list[np.ndarray], list[TensorType]], list[np.ndarray]]
HANDLERS: dict[str, Handler] = {}


def register(*primitives: str) -> Callable[[Handler], Handler]:
    """Declare the eager executor of `primitives` (other modules add contractions this way)."""

    def wrap(handler: Handler) -> Handler:
        for primitive in primitives:
            HANDLERS[primitive] = handler
        return handler

    return wrap


_NUMPY_DTYPES = {d: np.dtype(NP_DTYPES[d.value]) for d in DType}


def numpy_dtype(dtype: DType) -> np.dtype:
    return _NUMPY_DTYPES[dtype]


def dtype_of(array: np.ndarray) -> DType:
    """The IR dtype of an array (a table lookup: `np.dtype.name` is slow enough to show per op)."""
    return SUPPORTED[array.dtype]


# Eager ops with a Python number see it as a broadcast view of a 0-d array; eager code repeats its
# numbers (relu's 0, a learning rate, a VJP's zeros), so the views are kept per (number, dtype, shape).
MAX_NUMBER_VIEWS = 1024
_number_views: dict[tuple, np.ndarray] = {}


def number_view(number: float | int, dtype: np.dtype, shape: tuple[int, ...]) -> Tensor:
    """`number` as a read-only tensor of `dtype` and `shape` (strides 0: no data per element)."""
    # float.hex tells -0.0 from 0.0, which compare (and hash) equal
    key = (number.hex() if isinstance(number, float) else number, dtype, shape)
    view = _number_views.get(key)
    if view is None:
        if len(_number_views) >= MAX_NUMBER_VIEWS:
            _number_views.clear()
        view = _number_views[key] = np.broadcast_to(np.asarray(number, dtype), shape)
    return Tensor._wrap(view)


def empty(t: TensorType) -> np.ndarray:
    return np.empty(t.shape, _NUMPY_DTYPES[t.dtype])


@functools.lru_cache(maxsize=None)
def single_op_region(primitive: str, attrs: tuple, in_dtypes: tuple[DType, ...]) -> tuple[Graph, str]:
    """A region holding one elementwise primitive on scalars (or none, for a copy)."""
    builder = GraphBuilder("region")
    params = [builder.input(TensorType((), d)) for d in in_dtypes]
    if primitive == "copy":
        graph = builder.output(*params)
    else:
        graph = builder.output(builder.add(primitive, params, **dict(attrs)).result)
    return graph, print_graph(graph)


def _view(array: np.ndarray) -> tuple[int, tuple[int, ...]]:
    return 0, tuple(s // array.itemsize for s in array.strides)


def _strided_ok(array: np.ndarray) -> np.ndarray:
    """Kernels address in elements: a byte stride that is not a whole element needs a copy."""
    if any(s % array.itemsize for s in array.strides):
        return np.ascontiguousarray(array)
    return array


# (region, reduction, operand layouts) -> (kernel, meta): an eager step repeats its calls, and
# planning the loops costs more than the dict lookup by far.
MAX_FUSED_CALLS = 4096
_fused_calls: dict[tuple, tuple[kernels.CompiledKernel, ctypes.Array] | None] = {}


def run_fused(region: Graph, region_text: str, outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray],
              reduce: str | None = None, axes: tuple[int, ...] = ()) -> None:
    """Run `region` over the inputs' index space, writing `outputs` (which may be strided views)."""
    key = (region_text, reduce, axes, len(outputs), inputs[0].shape if inputs else outputs[0].shape,
           *[(a.strides, a.dtype) for a in outputs], *[(a.strides, a.dtype) for a in inputs])
    call = _fused_calls.get(key, False)
    if call is False:
        aligned = [_strided_ok(a) for a in inputs]
        call = _plan_fused(region, region_text, outputs, aligned, reduce, axes)
        if all(a is b for a, b in zip(aligned, inputs)):  # else a copy per call: not kept
            if len(_fused_calls) >= MAX_FUSED_CALLS:  # many layouts seen: start over rather than grow
                _fused_calls.clear()
            _fused_calls[key] = call
        inputs = aligned
    if call is not None:
        kernel, meta = call
        kernel.call_prepared([*outputs, *inputs], meta)


def _plan_fused(region: Graph, region_text: str, outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray],
                reduce: str | None, axes: tuple[int, ...]) -> tuple[kernels.CompiledKernel, ctypes.Array] | None:
    """The kernel and meta `run_fused` calls for these operands, or None when there is nothing to do."""
    shape = inputs[0].shape if inputs else outputs[0].shape
    if reduce is None and 0 in shape:
        return None
    if reduce is None:
        out_views = [_view(o) for o in outputs]
    else:
        out_views = [contiguous_view(shape, axes)]
    plan, meta = plan_loops(shape, out_views + [_view(a) for a in inputs],
                            axes if reduce is not None else None, len(outputs))
    out_dtypes = tuple(dtype_of(o) for o in outputs)
    in_dtypes = tuple(dtype_of(a) for a in inputs)

    def build(module, name):
        define_fused_kernel(module, name, region, out_dtypes, in_dtypes, plan, reduce)

    kernel = kernels.get_kernel(("fused", region_text, out_dtypes, in_dtypes, plan, reduce), build)
    return kernel, kernels.meta_array(meta)


def copy_into(target: np.ndarray, source: np.ndarray) -> None:
    """target[...] = source (same shape; either may be strided) with a compiled copy."""
    region, text = single_op_region("copy", (), (dtype_of(source),))
    run_fused(region, text, [target], [source])


def contiguous(array: np.ndarray) -> np.ndarray:
    if array.flags.c_contiguous:
        return array
    out = np.empty(array.shape, array.dtype)
    copy_into(out, array)
    return out


def execute(primitive: str, attrs: dict[str, Any], inputs: Sequence, types: list[TensorType]) -> list:
    arrays = [t._array for t in inputs]
    handler = HANDLERS.get(primitive)
    if handler is None:
        raise NotImplementedError(f"{primitive} has no eager implementation")
    return [Tensor._wrap(a) for a in handler(attrs, arrays, types)]


def _make_elementwise(primitive: str) -> Handler:
    regions: dict[tuple, tuple[Graph, str]] = {}  # by attributes and NumPy dtypes (cheap to hash)

    def handler(attrs, arrays, types):
        key = (*attrs.items(), *[a.dtype for a in arrays])
        region = regions.get(key)
        if region is None:
            region = regions[key] = single_op_region(primitive, tuple(sorted(attrs.items())),
                                                     tuple(dtype_of(a) for a in arrays))
        region, text = region
        out = empty(types[0])
        run_fused(region, text, [out], arrays)
        return [out]

    return handler


for _name, _opdef in REGISTRY.items():
    if _opdef.elementwise:
        HANDLERS[_name] = _make_elementwise(_name)


@register("constant")
def _constant(attrs, arrays, types):
    return [np.full(types[0].shape, attrs["value"], numpy_dtype(types[0].dtype))]


@register("iota")
def _iota(attrs, arrays, types):
    shape, axis = types[0].shape, attrs["axis"]
    index = np.arange(shape[axis], dtype=numpy_dtype(types[0].dtype))
    return [np.broadcast_to(index.reshape([-1 if d == axis else 1 for d in range(len(shape))]), shape)]


@register("reshape")
def _reshape(attrs, arrays, types):
    return [contiguous(arrays[0]).reshape(types[0].shape)]


@register("broadcast")
def _broadcast(attrs, arrays, types):
    return [np.broadcast_to(arrays[0], types[0].shape)]


@register("permute")
def _permute(attrs, arrays, types):
    return [np.transpose(arrays[0], attrs["perm"])]


@register("slice")
def _slice(attrs, arrays, types):
    index = tuple(slice(a, b, c) for a, b, c in zip(attrs["starts"], attrs["stops"], attrs["steps"]))
    return [arrays[0][index]]


@register("pad")
def _pad(attrs, arrays, types):
    out = np.full(types[0].shape, attrs["value"], numpy_dtype(types[0].dtype))
    interior = tuple(slice(lo, lo + d) for lo, d in zip(attrs["low"], arrays[0].shape))
    copy_into(out[interior], arrays[0])
    return [out]


@register("concat")
def _concat(attrs, arrays, types):
    out = empty(types[0])
    axis, start = attrs["axis"] % out.ndim, 0
    for array in arrays:
        index = [slice(None)] * out.ndim
        index[axis] = slice(start, start + array.shape[axis])
        copy_into(out[tuple(index)], array)
        start += array.shape[axis]
    return [out]


def _make_reduction(primitive: str) -> Handler:
    def handler(attrs, arrays, types):
        region, text = single_op_region("copy", (), (dtype_of(arrays[0]),))
        out = empty(types[0])
        run_fused(region, text, [out], arrays, reduce=primitive, axes=attrs["axes"])
        return [out]

    return handler


for _name in ("reduce_sum", "reduce_max", "reduce_min"):
    HANDLERS[_name] = _make_reduction(_name)


def _make_arg_reduce(primitive: str) -> Handler:
    def handler(attrs, arrays, types):
        x = _strided_ok(arrays[0])
        axis = attrs["axis"]
        out = empty(types[0])
        outer = int(np.prod(x.shape[:axis]))
        inner = int(np.prod(x.shape[axis + 1:]))
        if out.size == 0:
            return [out]
        # View x as (outer, n, inner) without copying when its strides allow it.
        try:
            x3 = x.reshape(outer, x.shape[axis], inner) if x.flags.c_contiguous else None
        except ValueError:
            x3 = None
        if x3 is None:
            x3 = contiguous(x).reshape(outer, x.shape[axis], inner)
        dtype = dtype_of(x)
        kernel = kernels.get_kernel((primitive, dtype), lambda m, n: define_arg_reduce(m, n, dtype, primitive))
        meta = [outer, x3.shape[1], inner, *(s // x3.itemsize for s in x3.strides)]
        kernel([out, x3], meta)
        return [out]

    return handler


HANDLERS["argmax"] = _make_arg_reduce("argmax")
HANDLERS["argmin"] = _make_arg_reduce("argmin")


@register("assign")
def _assign(attrs, arrays, types):
    target, value = arrays
    copy_into(target, value)
    return [target]
from . import eager_nn  # noqa: E402,F401  (contraction executors register themselves)
from . import eager_conv  # noqa: E402,F401  (window-op executors register themselves)
from . import eager_random  # noqa: E402,F401
