"""Emitting the scalar body of a fused kernel as LLVM IR.

`emit_region` turns a region (a small graph of elementwise ops on scalars)
into LLVM instructions. It works on scalars and on explicit vectors alike
(`lanes > 1`), so the same body serves the elementwise loop (which LLVM's loop
vectoriser widens to the target's width) and GEMM/convolution epilogues (which
apply it to a whole register of the output tile).

Floating-point arithmetic is emitted without fast-math flags: elementwise
results match IEEE (and NumPy) operation by operation. Only reductions use
`reassoc`, which is what lets LLVM keep vector accumulators.
"""

from __future__ import annotations

from typing import Sequence

from llvmlite import ir

from ir.graph import Graph, Value
from ir.types import DType

F32, F64 = ir.FloatType(), ir.DoubleType()
I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)

_REGISTER_TYPES = {DType.float32: F32, DType.float64: F64, DType.int32: I32, DType.int64: I64, DType.bool: I1}
_MEMORY_TYPES = {**_REGISTER_TYPES, DType.bool: I8}

REDUCE_FLAGS = ("reassoc", "nsz", "contract")


def module_global(module: ir.Module, name: str, type_: ir.Type) -> ir.GlobalVariable:
    """Global variable `name` of `module` (zero-initialised), defined the first time it is asked for."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    variable = ir.GlobalVariable(module, type_, name)
    variable.initializer = ir.Constant(type_, None)
    return variable


def register_type(dtype: DType, lanes: int = 1) -> ir.Type:
    """The type a value lives in while computed (bool is i1)."""
    scalar = _REGISTER_TYPES[dtype]
    return scalar if lanes == 1 else ir.VectorType(scalar, lanes)


def memory_type(dtype: DType) -> ir.Type:
    """The element type in memory (bool is one byte, as in NumPy)."""
    return _MEMORY_TYPES[dtype]


def constant(dtype: DType, value: float | int | bool, lanes: int = 1) -> ir.Constant:
    scalar = _REGISTER_TYPES[dtype]
    if dtype.is_float:
        element = ir.Constant(scalar, float(value))
    else:
        element = ir.Constant(scalar, int(value))
    if lanes == 1:
        return element
    return ir.Constant(ir.VectorType(scalar, lanes), [element] * lanes)


def intrinsic(builder: ir.IRBuilder, name: str, args: Sequence[ir.Value], result_type: ir.Type | None = None) -> ir.Value:
    """Call `llvm.<name>.<type suffix>` overloaded on the first argument's type."""
    arg_type = args[0].type
    suffix = _type_suffix(arg_type)
    if result_type is not None and result_type != arg_type:
        suffix = _type_suffix(result_type) + "." + suffix
    module = builder.module
    full = f"llvm.{name}.{suffix}"
    function = module.globals.get(full)
    if function is None:
        ftype = ir.FunctionType(result_type or arg_type, [a.type for a in args])
        function = ir.Function(module, ftype, full)
    return builder.call(function, list(args))


def _type_suffix(t: ir.Type) -> str:
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{_type_suffix(t.element)}"
    if t == F32:
        return "f32"
    if t == F64:
        return "f64"
    return f"i{t.width}"


def load(builder: ir.IRBuilder, pointer: ir.Value, dtype: DType) -> ir.Value:
    value = builder.load(pointer)
    return builder.trunc(value, I1) if dtype.is_bool else value


def store(builder: ir.IRBuilder, value: ir.Value, pointer: ir.Value, dtype: DType) -> None:
    builder.store(builder.zext(value, I8) if dtype.is_bool else value, pointer)


def _float_pred(op: str) -> str:
    return {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]


def _compare(b: ir.IRBuilder, op: str, x: ir.Value, y: ir.Value, dtype: DType) -> ir.Value:
    if dtype.is_float:
        # NumPy: every comparison with NaN is False except `!=`.
        return b.fcmp_unordered("!=", x, y) if op == "ne" else b.fcmp_ordered(_float_pred(op), x, y)
    if dtype.is_bool:
        return b.icmp_unsigned(_float_pred(op), x, y)
    return b.icmp_signed(_float_pred(op), x, y)


def _int_floor_div_mod(b: ir.IRBuilder, x: ir.Value, y: ir.Value, dtype: DType, lanes: int, want: str) -> ir.Value:
    """Python/NumPy floor division and modulo; division by zero gives 0 (as NumPy) instead of trapping."""
    zero, one = constant(dtype, 0, lanes), constant(dtype, 1, lanes)
    y_is_zero = b.icmp_signed("==", y, zero)
    safe_y = b.select(y_is_zero, one, y)
    quotient = b.sdiv(x, safe_y)
    remainder = b.srem(x, safe_y)
    # Truncation rounds toward zero; floor needs one less when the signs differ and it was inexact.
    adjust = b.and_(b.icmp_signed("!=", remainder, zero),
                    b.icmp_signed("<", b.xor(remainder, safe_y), zero))
    if want == "div":
        result = b.select(adjust, b.sub(quotient, one), quotient)
    else:
        result = b.select(adjust, b.add(remainder, safe_y), remainder)
    return b.select(y_is_zero, zero, result)


def _cast(b: ir.IRBuilder, x: ir.Value, source: DType, target: DType, lanes: int) -> ir.Value:
    if source == target:
        return x
    to_type = register_type(target, lanes)
    if target.is_bool:
        if source.is_float:
            return b.fcmp_unordered("!=", x, constant(source, 0.0, lanes))
        return b.icmp_signed("!=", x, constant(source, 0, lanes))
    if source.is_bool:
        return b.uitofp(x, to_type) if target.is_float else b.zext(x, to_type)
    if source.is_float and target.is_float:
        return b.fptrunc(x, to_type) if source.itemsize > target.itemsize else b.fpext(x, to_type)
    if source.is_float:
        # Saturating conversion: defined for NaN and out-of-range values (plain fptosi is poison there).
        return intrinsic(b, "fptosi.sat", [x], to_type)
    if target.is_float:
        return b.sitofp(x, to_type)
    return b.trunc(x, to_type) if source.itemsize > target.itemsize else b.sext(x, to_type)


def emit_op(b: ir.IRBuilder, op: str, args: Sequence[ir.Value], in_dtypes: Sequence[DType],
            out_dtype: DType, lanes: int, attrs: dict) -> ir.Value:
    """One elementwise primitive on registers of `lanes` elements."""
    dtype = in_dtypes[0] if in_dtypes else out_dtype
    is_float = dtype.is_float
    x = args[0] if args else None
    y = args[1] if len(args) > 1 else None
    if op == "constant":
        return constant(out_dtype, attrs["value"], lanes)
    if op == "cast":
        return _cast(b, x, dtype, out_dtype, lanes)
    if op == "select":
        return b.select(args[0], args[1], args[2])
    if op in ("eq", "ne", "lt", "le", "gt", "ge"):
        return _compare(b, op, x, y, dtype)
    if op in ("logical_and", "logical_or", "logical_xor"):
        return {"logical_and": b.and_, "logical_or": b.or_, "logical_xor": b.xor}[op](x, y)
    if op == "logical_not":
        return b.xor(x, constant(DType.bool, 1, lanes))
    if op in ("add", "sub", "mul"):
        if is_float:
            return {"add": b.fadd, "sub": b.fsub, "mul": b.fmul}[op](x, y)
        return {"add": b.add, "sub": b.sub, "mul": b.mul}[op](x, y)
    if op == "div":
        return b.fdiv(x, y) if is_float else _int_floor_div_mod(b, x, y, dtype, lanes, "div")
    if op == "mod":
        if not is_float:
            return _int_floor_div_mod(b, x, y, dtype, lanes, "mod")
        # NumPy: the result has the divisor's sign.
        remainder = b.frem(x, y)
        zero = constant(dtype, 0.0, lanes)
        differ = b.and_(b.fcmp_ordered("!=", remainder, zero),
                        b.xor(b.fcmp_ordered("<", remainder, zero), b.fcmp_ordered("<", y, zero)))
        return b.select(differ, b.fadd(remainder, y), remainder)
    if op in ("maximum", "minimum"):
        if is_float:
            # x wins when it is larger or NaN; otherwise y, which is NaN when y is. So NaN propagates.
            pick_x = b.or_(b.fcmp_ordered(">" if op == "maximum" else "<", x, y), b.fcmp_unordered("!=", x, x))
            return b.select(pick_x, x, y)
        return b.select(b.icmp_signed(">" if op == "maximum" else "<", x, y), x, y)
    if op == "neg":
        return b.fneg(x) if is_float else b.sub(constant(dtype, 0, lanes), x)
    if op == "abs":
        if is_float:
            return intrinsic(b, "fabs", [x])
        return b.select(b.icmp_signed("<", x, constant(dtype, 0, lanes)), b.sub(constant(dtype, 0, lanes), x), x)
    if op == "sign":
        zero, one, minus = constant(dtype, 0, lanes), constant(dtype, 1, lanes), constant(dtype, -1, lanes)
        if is_float:
            # Zero and NaN map to themselves, as in NumPy.
            return b.select(b.fcmp_ordered(">", x, zero), one, b.select(b.fcmp_ordered("<", x, zero), minus, x))
        return b.select(b.icmp_signed(">", x, zero), one, b.select(b.icmp_signed("<", x, zero), minus, zero))
    if op in ("floor", "ceil", "round"):
        if not is_float:
            return x
        return intrinsic(b, {"floor": "floor", "ceil": "ceil", "round": "roundeven"}[op], [x])
    if op == "pow":
        from . import vmath

        return vmath.pow(b, x, y)
    if op in ("exp", "expm1", "log", "log1p", "sqrt", "rsqrt", "tanh", "logistic", "sin", "cos", "erf"):
        from . import vmath

        return getattr(vmath, op)(b, x)
    raise NotImplementedError(f"codegen has no elementwise rule for {op!r}")


def emit_region(builder: ir.IRBuilder, region: Graph, args: Sequence[ir.Value], lanes: int = 1) -> list[ir.Value]:
    """Emit the body of a fused op; `args` are the region inputs' registers."""
    env: dict[Value, ir.Value] = dict(zip(region.inputs, args))
    for node in region.nodes:
        result = emit_op(
            builder, node.op, [env[v] for v in node.operands], [v.dtype for v in node.operands],
            node.result.dtype, lanes, node.attr_dict,
        )
        env[node.result] = result
    return [env[v] for v in region.outputs]
