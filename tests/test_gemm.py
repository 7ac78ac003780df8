"""GEMM generator: every transpose and dtype, odd and empty sizes, batch
broadcasting, sub-matrix views, fused epilogues, static shapes and thread
counts, against float64 NumPy references."""

from __future__ import annotations

import ctypes
import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import ir

from codegen import cache, target
from codegen.gemm import EpilogueIndex, compile_gemm, define_gemm
from codegen.gemm_kernel import blocking_for
from codegen.lanes import lane_mask, masked_load
from codegen.parallel import get_num_threads, set_num_threads

DTYPES = ["float32", "float64"]
TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]
# Sizes around the micro-tile and block edges, primes, 0 and 1.
SIZES = st.one_of(st.sampled_from([0, 1, 2, 3, 5, 6, 7, 8, 13, 16, 17, 31, 61, 97, 127, 211, 257, 293]),
                  st.integers(0, 300))


def tolerance(dtype: str, k: int) -> dict:
    if dtype == "float32":
        return dict(rtol=2e-4, atol=1e-5 * np.sqrt(max(k, 1)))
    return dict(rtol=1e-10, atol=1e-12 * np.sqrt(max(k, 1)))


def stored(op: np.ndarray, trans: bool) -> np.ndarray:
    """The array to pass so that op(stored) == op."""
    return np.ascontiguousarray(np.swapaxes(op, -1, -2)) if trans else op


def reference(a_op: np.ndarray, b_op: np.ndarray) -> np.ndarray:
    return np.matmul(a_op.astype(np.float64), b_op.astype(np.float64))


@pytest.fixture(autouse=True)
def _restore_threads():
    count = get_num_threads()
    yield
    set_num_threads(count)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@settings(max_examples=12)
@given(m=SIZES, n=SIZES, k=SIZES, seed=st.integers(0, 2**31 - 1))
def test_matches_numpy(dtype, trans_a, trans_b, m, n, k, seed):
    rng = np.random.default_rng(seed)
    a_op = rng.uniform(-1, 1, (m, k)).astype(dtype)
    b_op = rng.uniform(-1, 1, (k, n)).astype(dtype)
    out = compile_gemm(dtype, trans_a, trans_b)(stored(a_op, trans_a), stored(b_op, trans_b))
    assert out.shape == (m, n) and out.dtype == dtype
    np.testing.assert_allclose(out, reference(a_op, b_op), **tolerance(dtype, k))


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@settings(max_examples=8)
@given(batch=st.integers(1, 4), m=SIZES, n=SIZES, k=SIZES, broadcast=st.sampled_from(["none", "a", "b"]),
       offsets=st.tuples(*[st.integers(0, 3)] * 6), seed=st.integers(0, 2**31 - 1))
def test_batched_views_and_broadcasting(trans_a, trans_b, batch, m, n, k, broadcast, offsets, seed):
    """Batch 1 broadcasts (stride 0); sub-matrix views give lda/ldb/ldc beyond the row length."""
    rng = np.random.default_rng(seed)
    dtype = "float32"
    r0, c0, r1, c1, r2, c2 = offsets

    def view(batch_count: int, rows: int, cols: int, dr: int, dc: int) -> np.ndarray:
        big = rng.uniform(-1, 1, (batch_count, rows + dr + 2, cols + dc + 3)).astype(dtype)
        return big[:, dr:dr + rows, dc:dc + cols]

    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    a = view(1 if broadcast == "a" else batch, *a_shape, r0, c0)
    b = view(1 if broadcast == "b" else batch, *b_shape, r1, c1)
    out_big = np.full((batch, m + r2 + 1, n + c2 + 2), 7.0, dtype)
    out = out_big[:, r2:r2 + m, c2:c2 + n]
    result = compile_gemm(dtype, trans_a, trans_b)(a, b, out=out)
    assert result is out
    a_op = np.swapaxes(a, -1, -2) if trans_a else a
    b_op = np.swapaxes(b, -1, -2) if trans_b else b
    np.testing.assert_allclose(out, reference(a_op, b_op), **tolerance(dtype, k))
    outside = np.ones(out_big.shape, bool)
    outside[:, r2:r2 + m, c2:c2 + n] = False
    assert np.all(out_big[outside] == 7.0), "wrote outside C"


def test_errors_name_the_problem():
    gemm = compile_gemm("float32", False, False)
    with pytest.raises(ValueError, match="do not match"):
        gemm(np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32))
    with pytest.raises(TypeError, match="float32"):
        gemm(np.zeros((3, 4), np.float64), np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="batches"):
        gemm(np.zeros((2, 3, 4), np.float32), np.zeros((3, 4, 2), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        gemm(np.zeros((3, 4), np.float32), np.zeros((4, 2), np.float32), out=np.zeros((2, 3), np.float32))


# ----------------------------------------------------------------------------- raw functions

ARGS = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 10


def bias_relu(builder: ir.IRBuilder, value: ir.Value, index: EpilogueIndex, extra):
    """relu(value + bias[col : col + lanes]): the epilogue a Linear layer fuses."""
    (bias,) = extra
    pointer = builder.gep(bias, [index.col])
    if index.valid is not None:  # a row's last columns: lanes past `valid` must not be read
        loaded = masked_load(builder, pointer, lane_mask(builder, index.valid, index.lanes), value.type)
    else:
        if index.lanes > 1:
            pointer = builder.bitcast(pointer, value.type.as_pointer())
        element = value.type.element if index.lanes > 1 else value.type
        loaded = builder.load(pointer, align=4 if element == ir.FloatType() else 8)
    biased = builder.fadd(value, loaded)
    zero = ir.Constant(value.type, None)
    return builder.select(builder.fcmp_ordered(">", biased, zero), biased, zero)


STATIC_SHAPES = ((1, 61, 37, 300), (2, 6, 16, 64))


@functools.lru_cache(maxsize=None)
def raw_gemms(dtype: str):
    """{name: ctypes function}, all A @ B.T with a bias+relu epilogue (one module, compiled
    once per dtype): `bias_relu`, and `static<i>` specialised to STATIC_SHAPES[i]."""
    element = ir.FloatType() if dtype == "float32" else ir.DoubleType()
    module = ir.Module(name="test_gemm")
    module.triple = target.host().triple
    extra = [element.as_pointer()]
    define_gemm(module, "bias_relu", dtype, False, True, extra, bias_relu)
    for i, shape in enumerate(STATIC_SHAPES):
        define_gemm(module, f"static{i}", dtype, False, True, extra, bias_relu, static_shape=shape)
    loaded = target.LoadedObject(cache.cached_object(str(module), target.object_code))
    functions = {name: ctypes.CFUNCTYPE(None, *ARGS, ctypes.c_void_p)(loaded.address(name))
                 for name in ["bias_relu"] + [f"static{i}" for i in range(len(STATIC_SHAPES))]}
    functions["_keep"] = loaded
    return functions


def call(function, a, b, c, batch, m, n, k, *extra, strides=None):
    """Call a raw GEMM on contiguous 3-D (or 2-D) arrays; strides = (sa, sb, sc) in elements."""
    item = c.itemsize
    sa, sb, sc = strides or (a.strides[0] // item if a.ndim == 3 and a.shape[0] > 1 else 0,
                             b.strides[0] // item if b.ndim == 3 and b.shape[0] > 1 else 0,
                             c.strides[0] // item if c.ndim == 3 else 0)
    function(a.ctypes.data, b.ctypes.data, c.ctypes.data, batch, m, n, k,
             a.strides[-2] // item, b.strides[-2] // item, c.strides[-2] // item, sa, sb, sc,
             *[x.ctypes.data for x in extra])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10)
@given(m=SIZES, n=SIZES, k=SIZES, batch=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_bias_relu_epilogue(dtype, m, n, k, batch, seed):
    """The epilogue sees each element once, after the whole K reduction (K may span several blocks)."""
    rng = np.random.default_rng(seed)
    a_op = rng.uniform(-1, 1, (batch, m, k)).astype(dtype)
    b_op = rng.uniform(-1, 1, (1, k, n)).astype(dtype)  # broadcast weights, as in a Linear layer
    bias = rng.uniform(-1, 1, n + 1).astype(dtype)
    c = np.full((batch, m, n), np.nan, dtype)
    call(raw_gemms(dtype)["bias_relu"], a_op, stored(b_op, True), c, batch, m, n, k, bias)
    expected = np.maximum(reference(a_op, b_op) + bias[:n], 0)
    np.testing.assert_allclose(c, expected, **tolerance(dtype, k))


def test_empty_sizes_leave_c_alone_and_k0_gives_epilogue_of_zero():
    functions = raw_gemms("float32")
    a = np.ones((4, 5), np.float32)
    b = np.ones((6, 5), np.float32)
    bias = np.arange(-3, 4, dtype=np.float32)
    for m, n in [(0, 6), (4, 0)]:
        c = np.full((4, 6), 9.0, np.float32)
        call(functions["bias_relu"], a, b, c, 1, m, n, 5, bias)
        assert np.all(c == 9.0)
    c = np.full((4, 6), 9.0, np.float32)
    call(functions["bias_relu"], a, b, c, 1, 4, 6, 0, bias)
    np.testing.assert_array_equal(c, np.broadcast_to(np.maximum(bias[:6], 0), (4, 6)))
    c = np.full((4, 6), 9.0, np.float32)
    call(functions["bias_relu"], a, b, c, 0, 4, 6, 5, bias)
    assert np.all(c == 9.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_static_shape_gives_the_same_bits(dtype):
    functions = raw_gemms(dtype)
    rng = np.random.default_rng(1)
    for i, (batch, m, n, k) in enumerate(STATIC_SHAPES):
        a = rng.uniform(-1, 1, (batch, m, k)).astype(dtype)
        b = rng.uniform(-1, 1, (batch, n, k)).astype(dtype)
        bias = rng.uniform(-1, 1, n).astype(dtype)
        dynamic, static = np.empty((2, batch, m, n), dtype)
        call(functions["bias_relu"], a, b, dynamic, batch, m, n, k, bias)
        # The static function ignores its size arguments.
        call(functions[f"static{i}"], a, b, static, 0, 0, 0, 0, bias,
             strides=(m * k if batch > 1 else 0, k * n if batch > 1 else 0, m * n))
        np.testing.assert_array_equal(static, dynamic)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 301, 97, 530), (3, 50, 200, 70), (1, 7, 1000, 300), (1, 500, 40, 600),
                                   (1, 1, 1, 1)])
def test_thread_count_does_not_change_bits(dtype, shape):
    batch, m, n, k = shape
    rng = np.random.default_rng(2)
    a = rng.uniform(-1, 1, (batch, m, k)).astype(dtype)
    b = rng.uniform(-1, 1, (batch, k, n)).astype(dtype)
    gemm = compile_gemm(dtype, False, False)
    results = []
    for threads in (1, 2):
        set_num_threads(threads)
        results.append(gemm(a, b))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], reference(a, b), **tolerance(dtype, k))


def test_blocking_is_derived_from_the_host():
    info = target.host()
    for dtype in DTYPES:
        blk = blocking_for(dtype)
        assert blk.lanes == info.lanes(blk.element_bytes)
        assert 2 * blk.mr + blk.nv + 1 <= info.vector_registers  # accumulators + B vectors + broadcast
        assert blk.kc * blk.nr * blk.element_bytes <= info.l1d_bytes
        assert blk.mc % blk.mr == 0 and blk.nc % blk.nr == 0


# Both packers transpose 16 x 16 blocks here (A by rows, B transposed); the
# copying modes do not depend on the vector width.
AVX512_TRANSPOSES = [(False, True)]


@functools.lru_cache(maxsize=None)
def avx512_gemms(dtype: str):
    """GEMMs built with the AVX-512 blocking (14 x 32 fp32 tiles, 16 lanes): LLVM splits the
    512-bit vectors on this host, so the logic is checked even without AVX-512."""
    from dataclasses import replace

    import codegen.gemm as gemm_module

    info = replace(target.host(), vector_bits=512, vector_registers=32, l1d_bytes=48 * 1024, l2_bytes=1 << 20)
    module = ir.Module(name="test_gemm_avx512")
    module.triple = target.host().triple
    original = gemm_module.blocking_for
    gemm_module.blocking_for = lambda d, _=None: original(d, info)
    try:
        for ta, tb in AVX512_TRANSPOSES:
            define_gemm(module, f"gemm{int(ta)}{int(tb)}", dtype, ta, tb)
    finally:
        gemm_module.blocking_for = original
    loaded = target.LoadedObject(cache.cached_object(str(module), target.object_code))
    functions = {(ta, tb): ctypes.CFUNCTYPE(None, *ARGS)(loaded.address(f"gemm{int(ta)}{int(tb)}"))
                 for ta, tb in AVX512_TRANSPOSES}
    return loaded, functions


@settings(max_examples=15)
@given(m=SIZES, n=SIZES, k=st.one_of(SIZES, st.integers(180, 420)), trans=st.sampled_from(AVX512_TRANSPOSES),
       seed=st.integers(0, 2**31 - 1))
def test_avx512_blocking(m, n, k, trans, seed):
    dtype = "float32"
    trans_a, trans_b = trans
    rng = np.random.default_rng(seed)
    a_op = rng.uniform(-1, 1, (m, k)).astype(dtype)
    b_op = rng.uniform(-1, 1, (k, n)).astype(dtype)
    c = np.full((m, n), np.nan, dtype)
    a, b = stored(a_op, trans_a), stored(b_op, trans_b)
    call(avx512_gemms(dtype)[1][trans], a, b, c, 1, m, n, k)
    np.testing.assert_allclose(c, reference(a_op, b_op), **tolerance(dtype, k))


@pytest.mark.parametrize("threads", [1, 2])
def test_packing_buffers_come_from_the_workspace_when_it_fits(threads):
    """A GEMM defined with a workspace packs into thread t's slot (sized by `workspace_bytes`) and
    mallocs (counted in the module's FALLBACK_ALLOCATIONS_SYMBOL) only without one, with a slot too
    small, or on a thread past the slots; the results are the same bits every way."""
    from codegen.gemm import FALLBACK_ALLOCATIONS_SYMBOL, workspace_bytes

    module = ir.Module(name="test_workspace")
    module.triple = target.host().triple
    define_gemm(module, "gemm", "float32", False, False, workspace=True)
    loaded = target.LoadedObject(cache.cached_object(str(module), target.object_code))
    gemm = ctypes.CFUNCTYPE(None, *ARGS, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(loaded.address("gemm"))
    counter = ctypes.c_int64.from_address(loaded.address(FALLBACK_ALLOCATIONS_SYMBOL))
    rng = np.random.default_rng(5)
    m, n, k = 150, 333, 301  # two K blocks: packed, not read in place
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    slot = workspace_bytes("float32", m, n, k)
    workspace = np.zeros(2 * slot + 64, np.uint8)
    aligned = workspace.ctypes.data + (-workspace.ctypes.data % 64)
    previous = get_num_threads()
    set_num_threads(threads)
    try:
        results = []
        for space, slot_bytes, slots in [(None, 0, 0), (aligned, slot, 2), (aligned, slot // 2, 2), (aligned, slot, 1)]:
            c = np.empty((m, n), np.float32)
            before = counter.value
            gemm(a.ctypes.data, b.ctypes.data, c.ctypes.data, 1, m, n, k, k, n, n, 0, 0, 0, space, slot_bytes, slots)
            results.append((c, counter.value - before))
    finally:
        set_num_threads(previous)
    (c0, none), (c1, fits), (c2, small), (c3, one_slot) = results
    assert none >= 1 and fits == 0 and small >= 1
    assert (one_slot == 0) if threads == 1 else (one_slot >= 1)  # thread 1 is past the single slot
    for c in (c1, c2, c3):
        np.testing.assert_array_equal(c, c0)
    np.testing.assert_allclose(c0, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
