"""codegen.vmath: accuracy in ulp against long-double references, special values,
the scalar-loop and explicit-vector code paths, and that a loop using them vectorises."""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from llvmlite import ir

from codegen import target, vmath

UNARY = ("exp", "expm1", "log", "log1p", "tanh", "logistic", "erf", "sin", "cos", "sqrt", "rsqrt")
FUNCS = UNARY + ("pow",)
DTYPES = (np.float32, np.float64)
LD = np.longdouble

# Max error in ulp asserted per function (the brief: 4 ulp; what we measure is well below).
MAX_ULP = {
    np.float32: dict(exp=4, expm1=4, log=4, log1p=4, tanh=4, logistic=4, erf=4, sin=4, cos=4, pow=4,
                     sqrt=0.5, rsqrt=2),
    np.float64: dict(exp=4, expm1=4, log=4, log1p=4, tanh=4, logistic=4, erf=4, sin=4, cos=4, pow=4,
                     sqrt=0.5, rsqrt=2),
}


def _ir_type(dtype) -> ir.Type:
    return ir.FloatType() if dtype == np.float32 else ir.DoubleType()


def _define_loop(module: ir.Module, name: str, elem: ir.Type, value_ty: ir.Type, arity: int, fn) -> None:
    """void name(T* in0[, T* in1], T* out, i64 n): out[i] = fn(in0[i], ...) for i < n,
    where element i is one `value_ty` (a scalar, or a vector of consecutive elements)."""
    ptr = elem.as_pointer()
    func = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] * (arity + 1) + [ir.IntType(64)]), name)
    *ins, out, n = func.args
    entry, body, done = (func.append_basic_block(s) for s in ("entry", "body", "done"))
    b = ir.IRBuilder(entry)
    vptr = value_ty.as_pointer()
    ins = [b.bitcast(p, vptr) for p in ins]
    out = b.bitcast(out, vptr)
    b.cbranch(b.icmp_signed(">", n, ir.Constant(n.type, 0)), body, done)
    b.position_at_end(body)
    i = b.phi(n.type)
    i.add_incoming(ir.Constant(n.type, 0), entry)
    align = 4 if isinstance(elem, ir.FloatType) else 8  # NumPy only guarantees element alignment
    args = [b.load(b.gep(p, [i]), align=align) for p in ins]
    b.store(fn(b, *args), b.gep(out, [i]), align=align)
    nxt = b.add(i, ir.Constant(n.type, 1))
    i.add_incoming(nxt, body)
    b.cbranch(b.icmp_signed("<", nxt, n), body, done)
    b.position_at_end(done)
    b.ret_void()


def _lanes(dtype) -> int:
    return target.host().lanes(np.dtype(dtype).itemsize)


def _ctype(dtype):
    return ctypes.POINTER(ctypes.c_float if dtype == np.float32 else ctypes.c_double)


@functools.lru_cache(maxsize=None)
def _kernels(dtype, fma: bool = True) -> tuple:
    """Every function as a scalar loop and (with FMA, the host's choice) as an explicit-vector
    loop, compiled once per dtype. fma=False emits the code a host without FMA gets."""
    module = ir.Module(name=f"vmath_{np.dtype(dtype).name}")
    elem = _ir_type(dtype)
    shapes = [("s", elem)]
    if fma:
        shapes.append(("v", ir.VectorType(elem, _lanes(dtype))))
    host = target.host() if fma else dataclasses.replace(target.host(), has_fma=False)
    real_host = vmath.host
    vmath.host = lambda: host  # what vmath asks to decide fma vs fmul+fadd
    try:
        for name in FUNCS:
            for suffix, ty in shapes:
                _define_loop(module, f"{name}_{suffix}", elem, ty, 2 if name == "pow" else 1, getattr(vmath, name))
    finally:
        vmath.host = real_host
    text = str(module)
    assert fma or "llvm.fma" not in text
    loaded = target.LoadedObject(target.object_code(text))
    funcs = {}
    for name in FUNCS:
        proto = ctypes.CFUNCTYPE(None, *[_ctype(dtype)] * (3 if name == "pow" else 2), ctypes.c_int64)
        for suffix, _ in shapes:
            funcs[name, suffix] = proto(loaded.address(f"{name}_{suffix}"))
    return loaded, funcs


def run(name: str, dtype, *xs, vector: bool = False, fma: bool = True) -> np.ndarray:
    """Apply vmath.<name> elementwise through the compiled scalar (or vector) loop."""
    xs = [np.ascontiguousarray(x, dtype=dtype).ravel() for x in xs]
    count = xs[0].size
    step = _lanes(dtype) if vector else 1
    padded = -(-count // step) * step
    xs = [np.concatenate([x, np.ones(padded - count, dtype)]) for x in xs]
    out = np.empty(padded, dtype)
    _, funcs = _kernels(dtype, fma)
    funcs[name, "v" if vector else "s"](*[a.ctypes.data_as(_ctype(dtype)) for a in xs + [out]], padded // step)
    return out[:count]


def _erf_ref(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(LD)


REFERENCE = {
    "exp": lambda x: np.exp(x.astype(LD)),
    "expm1": lambda x: np.expm1(x.astype(LD)),
    "log": lambda x: np.log(x.astype(LD)),
    "log1p": lambda x: np.log1p(x.astype(LD)),
    "tanh": lambda x: np.tanh(x.astype(LD)),
    "logistic": lambda x: 1 / (1 + np.exp(-x.astype(LD))),
    "erf": _erf_ref,
    "sin": lambda x: np.sin(x.astype(LD)),
    "cos": lambda x: np.cos(x.astype(LD)),
    "sqrt": lambda x: np.sqrt(x.astype(LD)),
    "rsqrt": lambda x: 1 / np.sqrt(x.astype(LD)),
    "pow": lambda x, y: np.power(x.astype(LD), y.astype(LD)),
}


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype) -> np.ndarray:
    """|got - ref| in units of the spacing of `dtype` at ref (denormal spacing below the
    normal range); 0 where both are the same inf or both NaN, inf where only one is."""
    info = np.finfo(dtype)
    ref = np.asarray(ref, LD)
    # What `ref` is in dtype once rounded: beyond the largest float it is inf.
    top = LD(info.max) * (1 + LD(info.eps) / 4)
    ref = np.where(np.abs(ref) >= top, np.copysign(LD(np.inf), ref), ref)
    _, e = np.frexp(np.where(np.isfinite(ref), ref, 1))
    ulp = np.ldexp(LD(1), np.maximum(e, info.minexp + 1) - info.nmant - 1)
    g = got.astype(LD)
    with np.errstate(invalid="ignore"):
        err = np.abs(g - ref) / ulp
    same = (g == ref) | (np.isnan(g) & np.isnan(ref))
    return np.where(same, 0.0, np.where(np.isfinite(err), err, np.inf)).astype(np.float64)


def random_floats(dtype, count: int, rng, positive: bool = False) -> np.ndarray:
    """Floats uniform over bit patterns (every binade equally), finite only."""
    bits = 32 if dtype == np.float32 else 64
    ity = np.uint32 if bits == 32 else np.uint64
    raw = rng.integers(0, 2**bits, size=count, dtype=ity).view(dtype)
    raw = raw[np.isfinite(raw)]
    return np.abs(raw) if positive else raw


def sweep(name: str, dtype, rng) -> tuple[np.ndarray, ...]:
    """Dense inputs over the interesting range of `name`, plus random bit patterns."""
    f32 = dtype == np.float32
    lin = lambda a, b, k=100_000: np.linspace(a, b, k).astype(dtype)  # noqa: E731
    tiny = np.concatenate([np.geomspace(1e-40 if f32 else 1e-310, 1e-3, 2000)]).astype(dtype)
    tiny = np.concatenate([tiny, -tiny])
    bits = random_floats(dtype, 20_000, rng)
    if name == "exp":
        lo, hi = (-104, 89) if f32 else (-746, 710)
        return (np.concatenate([lin(lo, hi), lin(-1, 1, 20_000), tiny, bits]),)
    if name == "expm1":
        return (np.concatenate([lin(-20, 89 if f32 else 710), lin(-1, 1, 50_000), tiny, bits]),)
    if name in ("log", "sqrt", "rsqrt"):
        return (np.concatenate([lin(0.5, 2, 50_000), random_floats(dtype, 100_000, rng, True)]),)
    if name == "log1p":
        return (np.concatenate([lin(-1, 3, 100_000), tiny, random_floats(dtype, 50_000, rng, True)]),)
    if name == "tanh":
        return (np.concatenate([lin(-10 if f32 else -20, 10 if f32 else 20), lin(-1, 1, 50_000), tiny, bits]),)
    if name == "logistic":
        lim = 110 if f32 else 750
        return (np.concatenate([lin(-lim, lim), lin(-20, 20, 50_000), tiny, bits]),)
    if name == "erf":
        return (np.concatenate([lin(-7, 7), lin(-1.5, 1.5, 50_000), tiny, bits]),)
    if name in ("sin", "cos"):
        # Near multiples of pi/2 the result is tiny and the reduction is put to the test.
        k = np.arange(-6400, 6400)
        near = (k * (np.pi / 2)).astype(dtype)
        near = np.concatenate([near, np.nextafter(near, np.inf), np.nextafter(near, -np.inf)])
        return (np.concatenate([lin(-1e4, 1e4, 200_000), lin(-4, 4, 50_000), near, tiny]).astype(dtype),)
    if name == "pow":
        x = np.exp(rng.uniform(-20, 20, 100_000)).astype(dtype)
        # y such that |y log x| spans the whole range up to overflow and underflow.
        lim = 100 if f32 else 740
        y = (rng.uniform(-lim, lim, x.size) / np.maximum(np.abs(np.log(x.astype(np.float64))), 1e-3))
        y = y.astype(dtype)
        ints = rng.integers(-40, 40, 20_000).astype(dtype)
        xneg = -rng.uniform(0.1, 8, ints.size).astype(dtype)
        xs = rng.uniform(0, 4, 20_000).astype(dtype)
        ys = rng.uniform(-10, 10, xs.size).astype(dtype)
        return np.concatenate([x, xneg, xs]), np.concatenate([y, ints, ys])
    raise KeyError(name)


def _check(name: str, dtype, xs, vector: bool = False, fma: bool = True) -> float:
    got = run(name, dtype, *xs, vector=vector, fma=fma)
    with np.errstate(all="ignore"):
        ref = REFERENCE[name](*xs)
    err = ulp_error(got, ref, dtype)
    limit = MAX_ULP[dtype][name]
    bad = err > limit
    if name in ("tanh", "erf") and dtype == np.float32:
        bad &= np.abs(got.astype(LD) - ref) > 1e-7  # the brief's absolute slack near 0
    if bad.any():
        k = np.flatnonzero(bad)[:5]
        detail = ", ".join(f"x={tuple(float(a[j]) for a in xs)} got={got[j]!r} ref={float(ref[j])!r}" for j in k)
        raise AssertionError(f"{name}[{np.dtype(dtype).name}] max {err.max():.2f} ulp > {limit}: {detail}")
    return float(err.max())


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", FUNCS)
def test_accuracy_sweep(name, dtype):
    rng = np.random.default_rng(1234)
    xs = sweep(name, dtype, rng)
    _check(name, dtype, xs, vector=False)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", FUNCS)
def test_accuracy_without_fma(name, dtype):
    """Hosts without FMA get fmul+fadd and Dekker's exact products: same bounds."""
    rng = np.random.default_rng(4321)
    xs = [x[::5] for x in sweep(name, dtype, rng)]
    _check(name, dtype, xs, fma=False)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", FUNCS)
def test_vector_path_matches_scalar(name, dtype):
    """The explicit <lanes x T> code gives the same bits as the (vectorised) scalar loop."""
    rng = np.random.default_rng(99)
    xs = [x[::7] for x in sweep(name, dtype, rng)]
    scalar = run(name, dtype, *xs)
    vector = run(name, dtype, *xs, vector=True)
    np.testing.assert_array_equal(scalar.view(np.uint8), vector.view(np.uint8))


SPECIAL = {
    np.float32: [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-45, -1e-45, 1.17549435e-38,
                 3.4028235e38, -3.4028235e38, 88.72283, 88.72284, -87.33654, -103.97208, -103.97209, 0.5, -0.5],
    np.float64: [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 5e-324, -5e-324, 2.2250738585072014e-308,
                 1.7976931348623157e308, -1.7976931348623157e308, 709.782712893384, 709.7827128933841,
                 -708.3964185322641, -745.1332191019411, -745.1332191019412, 0.5, -0.5],
}


def _numpy_like(name: str, x: np.ndarray, dtype) -> np.ndarray:
    """NumPy's own answer in dtype (the special-value semantics we promise to match)."""
    with np.errstate(all="ignore"):
        if name == "logistic":
            return (1 / (1 + np.exp(-x.astype(LD)))).astype(dtype)
        if name == "erf":
            return np.vectorize(math.erf, otypes=[np.float64])(x).astype(dtype)
        if name == "rsqrt":
            return (1 / np.sqrt(x.astype(LD))).astype(dtype)
        return getattr(np, name)(x.astype(LD)).astype(dtype)


@pytest.mark.parametrize("vector", [False, True], ids=["scalar", "vector"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", UNARY)
def test_special_values(name, dtype, vector):
    x = np.array(SPECIAL[dtype], dtype)
    if name in ("sin", "cos"):
        x = x[~(np.abs(x) > 1e6)]  # past the accurate range (see test_sincos_huge_arguments)
    got = run(name, dtype, x, vector=vector)
    want = _numpy_like(name, x, dtype)
    err = ulp_error(got, want.astype(LD), dtype)
    # Exact at the specials themselves (inf, NaN, signed zeros, saturation), a few ulp elsewhere.
    exact = ~np.isfinite(want) | ~np.isfinite(x) | (want == 0) | (np.abs(want) == 1)
    assert (err[exact] == 0).all(), (x[exact], got[exact], want[exact])
    assert np.array_equal(np.signbit(got[want == 0]), np.signbit(want[want == 0])), (x, got)
    assert (err <= MAX_ULP[dtype][name] + 1).all(), (x, got, want)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_sincos_huge_arguments(dtype):
    """Without Payne-Hanek reduction huge arguments are inaccurate, but stay in [-1, 1]."""
    rng = np.random.default_rng(5)
    x = random_floats(dtype, 5000, rng)
    x = x[np.abs(x) > 1e6]
    for name in ("sin", "cos"):
        got = run(name, dtype, x)
        assert (np.abs(got) <= 1).all(), x[~(np.abs(got) <= 1)][:5]


def test_pow_special_values():
    vals = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, np.inf, -np.inf, np.nan,
            1e-300, -1e300, 1e300]
    x, y = np.meshgrid(vals, vals)
    x, y = x.ravel(), y.ravel()
    for dtype in DTYPES:
        with np.errstate(all="ignore"):  # 1e300 becomes inf in float32, on purpose
            xd, yd = x.astype(dtype), y.astype(dtype)
            want = np.power(xd, yd)
        for vector in (False, True):
            got = run("pow", dtype, xd, yd, vector=vector)
            err = ulp_error(got, want.astype(LD), dtype)
            assert (err <= 1).all(), list(zip(xd[err > 1], yd[err > 1], got[err > 1], want[err > 1]))
            zero = want == 0
            assert np.array_equal(np.signbit(got[zero]), np.signbit(want[zero]))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@given(data=st.data())
def test_hypothesis_floats(dtype, data):
    width = 32 if dtype == np.float32 else 64
    floats = st.floats(width=width, allow_nan=True, allow_infinity=True)
    xs = np.array(data.draw(st.lists(floats, min_size=1, max_size=9)), dtype)
    for name in UNARY:
        if name in ("sin", "cos"):
            xs_ = np.where(np.abs(xs) < 1e5, xs, 0.5).astype(dtype)  # documented accurate range
        else:
            xs_ = xs
        _check(name, dtype, (xs_,), vector=data.draw(st.booleans()))
    ys = np.array(data.draw(st.lists(floats, min_size=xs.size, max_size=xs.size)), dtype)
    _check("pow", dtype, (xs, ys), vector=False)


def test_scalar_loop_vectorises_without_libm_calls():
    lanes = target.host().lanes(4)
    module = ir.Module(name="vec_check")
    elem = ir.FloatType()
    for name in ("exp", "tanh", "logistic"):
        _define_loop(module, f"{name}_loop", elem, elem, 1, getattr(vmath, name))
    text = target.optimized_ir(str(module))
    for name in ("exp", "tanh", "logistic"):
        body = text[text.index(f"@{name}_loop("):]
        body = body[: body.index("\n}\n")]
        # AVX-512 CPUs that LLVM tunes for 256-bit vectors (prefer-256-bit) use 8 lanes.
        widths = {lanes, 8} if lanes == 16 else {lanes}
        assert any(f"<{w} x float>" in body for w in widths), f"{name} loop was not vectorised"
        callees = set(re.findall(r"call [^@]*@([\w.]+)", body))
        assert all(c.startswith("llvm.") for c in callees), callees


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_straight_line_code_with_single_instruction_intrinsics_only(dtype):
    allowed = {"fma", "fabs", "floor", "rint", "copysign", "sqrt"}
    for ty in (_ir_type(dtype), ir.VectorType(_ir_type(dtype), _lanes(dtype))):
        for name in FUNCS:
            module = ir.Module()
            arity = 2 if name == "pow" else 1
            func = ir.Function(module, ir.FunctionType(ty, [ty] * arity), "f")
            builder = ir.IRBuilder(func.append_basic_block())
            builder.ret(getattr(vmath, name)(builder, *func.args))
            assert len(func.blocks) == 1
            declared = {f.name for f in module.functions if f.is_declaration}
            assert {n.split(".")[1] for n in declared} <= allowed, (name, declared)
            assert all(n.startswith("llvm.") for n in declared), declared
            target.parse(str(module))  # well-formed and verifies


def test_type_errors_name_the_function():
    module = ir.Module()
    func = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.IntType(32), ir.FloatType(), ir.DoubleType()]), "f")
    builder = ir.IRBuilder(func.append_basic_block())
    i, f, d = func.args
    with pytest.raises(TypeError, match="vmath.exp"):
        vmath.exp(builder, i)
    with pytest.raises(TypeError, match="vmath.pow"):
        vmath.pow(builder, f, d)
