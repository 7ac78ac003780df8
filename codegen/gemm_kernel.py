"""GEMM building blocks: blocking sizes from the host, packing routines and
the register-blocked micro-kernel (BLIS structure).

Micro-tile (MR x NR): NR = 2 vector registers of B, MR = the rows of A whose
broadcasts share those two B vectors. With R vector registers, 2*MR
accumulators + 2 B vectors + 1 broadcast must fit: MR = (R - 3) // 2.
  AVX2 + FMA, 16 ymm:   6 x 16 fp32 (6 x 8 fp64), 12 accumulators (BLIS haswell)
  AVX-512, 32 zmm:     14 x 32 fp32 (14 x 16 fp64), 28 accumulators
12 independent FMA chains cover Zen 1's 5-cycle FMA latency at one ymm FMA
per cycle (two 128-bit pipes), and Haswell/Skylake's 4-5 cycles at two.

Cache blocking (element size e):
  KC = (L1d / 2) / (NR * e)   a B micro-panel (KC x NR) uses half of L1d, the
                              other half holds the streamed A micro-panel and C
  MC = (L2 / 2) / (KC * e)    the packed A block (MC x KC) uses half of L2,
                              rounded down to a multiple of MR
  NC = (L3 / 4) / (KC * e)    the packed B block (KC x NC): every thread packs
                              its own, so two threads take half of L3
Zen 1 fp32: KC = 256, MC = 252, NC = 2048 (multiple of NR).

Every result element is the sum over K blocks (KC long, the same split for any
thread count and any M/N blocking) of an FMA chain in k order: the arithmetic
never depends on how the M x N plane is cut up or which thread runs a tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from llvmlite import ir

from .loops import for_range
from .target import HostInfo, host

I1, I32, I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
ELEMENT_TYPES = {"float32": ir.FloatType(), "float64": ir.DoubleType()}
ELEMENT_BYTES = {"float32": 4, "float64": 8}
UNROLL_K = 4  # micro-kernel k-loop unroll: amortises the loop overhead over 4 x 2*MR FMAs


@dataclass(frozen=True)
class Blocking:
    """Register and cache blocking of one GEMM dtype on one host."""

    dtype: str
    lanes: int  # elements in one vector register
    nv: int  # vector registers across a micro-tile row
    mr: int
    kc: int
    mc: int
    nc: int

    @property
    def nr(self) -> int:
        return self.nv * self.lanes

    @property
    def element(self) -> ir.Type:
        return ELEMENT_TYPES[self.dtype]

    @property
    def element_bytes(self) -> int:
        return ELEMENT_BYTES[self.dtype]

    @property
    def vector(self) -> ir.VectorType:
        return ir.VectorType(self.element, self.lanes)


def blocking_for(dtype: str, info: HostInfo | None = None) -> Blocking:
    """The blocking for `dtype` on `info` (default: this host); formulas in the module doc."""
    info = info or host()
    e = ELEMENT_BYTES[dtype]
    lanes = info.lanes(e)
    nv = 2
    mr = max(1, (info.vector_registers - nv - 1) // nv)
    nr = nv * lanes
    kc = max(32, (info.l1d_bytes // 2) // (nr * e) // 8 * 8)
    mc = max(mr, (info.l2_bytes // 2) // (kc * e) // mr * mr)
    nc = max(nr, (info.l3_bytes // 4) // (kc * e) // nr * nr)
    return Blocking(dtype, lanes, nv, mr, kc, mc, nc)


# ----------------------------------------------------------------------------- IR helpers


def entry_alloca(builder: ir.IRBuilder, typ: ir.Type, name: str = "") -> ir.AllocaInstr:
    """An alloca in the entry block, where LLVM's SROA promotes it to registers."""
    entry = builder.function.entry_basic_block
    with builder.goto_block(entry):
        if entry.instructions:
            builder.position_before(entry.instructions[0])
        return builder.alloca(typ, name=name)


def splat(builder: ir.IRBuilder, scalar: ir.Value, lanes: int) -> ir.Value:
    vector_type = ir.VectorType(scalar.type, lanes)
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar, I32(0))
    return builder.shuffle_vector(one, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))


def shuffle(builder: ir.IRBuilder, x: ir.Value, y: ir.Value, mask: Sequence[int]) -> ir.Value:
    return builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, len(mask)), list(mask)))


def transpose(builder: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """Transpose an L x L block held in L vectors (L a power of two).

    log2(L) stages; stage d swaps the off-diagonal d x d sub-blocks of every
    2d x 2d block (rows i and i+d exchange their lanes j with bit d set /
    clear), which LLVM lowers to unpck/shuf/perm2f128 (or vperm*) sequences.
    """
    lanes = len(rows)
    rows = list(rows)
    d = lanes // 2
    while d:
        for i in range(lanes):
            if i & d:
                continue
            x, y = rows[i], rows[i + d]
            low = [j if not j & d else lanes + (j ^ d) for j in range(lanes)]
            high = [(j ^ d) if not j & d else lanes + j for j in range(lanes)]
            rows[i], rows[i + d] = shuffle(builder, x, y, low), shuffle(builder, x, y, high)
        d //= 2
    return rows


def fma(builder: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    """x * y + z: llvm.fma (one rounding) with FMA hardware; without it llvm.fmuladd,
    a multiply and an add, instead of a libm call per lane. (IRBuilder.fma rejects vectors.)"""
    t = x.type
    suffix = f"v{t.count}{t.element.intrinsic_name}" if isinstance(t, ir.VectorType) else t.intrinsic_name
    name = f"llvm.{'fma' if host().has_fma else 'fmuladd'}.{suffix}"
    function = builder.module.globals.get(name)
    if function is None:
        function = ir.Function(builder.module, ir.FunctionType(t, [t, t, t]), name)
    return builder.call(function, [x, y, z])


def gep(builder: ir.IRBuilder, pointer: ir.Value, *offsets: ir.Value | int) -> ir.Value:
    """pointer + sum(offsets) elements."""
    total: ir.Value | None = None
    for offset in offsets:
        if isinstance(offset, int):
            if offset == 0:
                continue
            offset = I64(offset)
        total = offset if total is None else builder.add(total, offset)
    return pointer if total is None else builder.gep(pointer, [total])


def vector_pointer(builder: ir.IRBuilder, pointer: ir.Value, vector_type: ir.Type) -> ir.Value:
    return builder.bitcast(pointer, vector_type.as_pointer())


def imin(builder: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return builder.select(builder.icmp_signed("<", x, y), x, y)


def ceil_div(builder: ir.IRBuilder, x: ir.Value, y: ir.Value | int) -> ir.Value:
    y = I64(y) if isinstance(y, int) else y
    return builder.sdiv(builder.add(x, builder.sub(y, I64(1))), y)


def define_once(module: ir.Module, name: str, define: Callable[[], ir.Function]) -> ir.Function:
    """Function `name` of `module`, defined by `define()` the first time it is asked for: kernels
    that take their sizes at run time are shared by every node of a graph that needs them."""
    existing = module.globals.get(name)
    return existing if existing is not None else define()


def new_function(module: ir.Module, name: str, args: Sequence[ir.Type]) -> ir.Function:
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), list(args)), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.append_basic_block("entry")
    return fn


# ----------------------------------------------------------------------------- packing
# Packed layouts: B panels of NR columns, element (k, j) of panel p at
# dst[p*kc*NR + k*NR + j]; A panels of MR rows, element (i, k) at
# dst[p*kc*MR + k*MR + i]. Edge panels are zero-padded so the micro-kernel
# always runs the full tile (zeros add nothing to the valid elements).
# Every packer has the signature (src, ld, kc, count, dst) where src points at
# element (0, 0) of the block of op(X), ld is X's row stride and count is the
# number of valid columns (B) or rows (A).


def _pack_scalar(b: ir.IRBuilder, src: ir.Value, k_stride: ir.Value | int, x_stride: ir.Value | int,
                 k_start: ir.Value, k_stop: ir.Value, valid: ir.Value, width: int, dst: ir.Value) -> None:
    """dst[k*width + x] = src[k*k_stride + x*x_stride] for x < valid, 0 for valid <= x < width."""
    zero = ir.Constant(dst.type.pointee, 0.0)
    k_stride = I64(k_stride) if isinstance(k_stride, int) else k_stride
    x_stride = I64(x_stride) if isinstance(x_stride, int) else x_stride
    with for_range(b, k_start, k_stop, name="pk") as k:
        row = gep(b, dst, b.mul(k, I64(width)))
        with for_range(b, I64(0), valid, name="px") as x:
            value = b.load(gep(b, src, b.mul(k, k_stride), b.mul(x, x_stride)))
            b.store(value, gep(b, row, x))
        with for_range(b, valid, I64(width), name="pz") as x:
            b.store(zero, gep(b, row, x))


def define_pack(module: ir.Module, name: str, blk: Blocking, operand: str, along_k_contiguous: bool) -> ir.Function:
    """A packer for operand "A" (MR-row panels) or "B" (NR-column panels).

    `along_k_contiguous`: consecutive k are adjacent in memory (A not
    transposed, B transposed); those are transposed L x L blocks at a time.
    Otherwise a panel's row at fixed k is contiguous and copied as vectors.
    """
    T = blk.element
    P = T.as_pointer()
    width = blk.mr if operand == "A" else blk.nr
    fn = new_function(module, name, [P, I64, I64, I64, P])
    for arg in (fn.args[0], fn.args[4]):
        arg.add_attribute("noalias")
    src, ld, kc, count, dst = fn.args
    b = ir.IRBuilder(fn.entry_basic_block)
    L = blk.lanes
    full_panels = b.sdiv(count, I64(width))
    with for_range(b, I64(0), full_panels, name="panel") as p:
        panel_dst = gep(b, dst, b.mul(p, b.mul(kc, I64(width))))
        if along_k_contiguous:
            # x-th row/column of the panel starts at src + (p*width + x)*ld; k runs along it.
            panel_src = gep(b, src, b.mul(b.mul(p, I64(width)), ld))
            k_vec = b.mul(b.sdiv(kc, I64(L)), I64(L))
            groups = -(-width // L)
            with for_range(b, I64(0), k_vec, L, name="kv") as k:
                blocks = []
                for g in range(groups):
                    rows = []
                    for r in range(L):
                        x = g * L + r
                        if x < width:
                            ptr = vector_pointer(b, gep(b, panel_src, b.mul(I64(x), ld), k), blk.vector)
                            rows.append(b.load(ptr, align=blk.element_bytes))
                        else:
                            rows.append(ir.Constant(blk.vector, [0.0] * L))
                    blocks.append(transpose(b, rows))
                for kk in range(L):
                    out_row = gep(b, panel_dst, b.mul(b.add(k, I64(kk)), I64(width)))
                    for g in range(groups):
                        part = blocks[g][kk]
                        lanes = min(L, width - g * L)
                        if lanes < L:
                            part = shuffle(b, part, part, range(lanes))
                        ptr = vector_pointer(b, gep(b, out_row, g * L), part.type)
                        b.store(part, ptr, align=blk.element_bytes)
            _pack_scalar(b, panel_src, 1, ld, k_vec, kc, I64(width), width, panel_dst)
        else:
            panel_src = gep(b, src, b.mul(p, I64(width)))
            row_type = ir.VectorType(T, width)
            with for_range(b, I64(0), kc, name="k") as k:
                value = b.load(vector_pointer(b, gep(b, panel_src, b.mul(k, ld)), row_type),
                               align=blk.element_bytes)
                out = gep(b, panel_dst, b.mul(k, I64(width)))
                b.store(value, vector_pointer(b, out, row_type), align=blk.element_bytes)
    rest = b.sub(count, b.mul(full_panels, I64(width)))
    with b.if_then(b.icmp_signed(">", rest, I64(0))):
        start = b.mul(full_panels, I64(width))
        edge_dst = gep(b, dst, b.mul(full_panels, b.mul(kc, I64(width))))
        if along_k_contiguous:
            _pack_scalar(b, gep(b, src, b.mul(start, ld)), 1, ld, I64(0), kc, rest, width, edge_dst)
        else:
            _pack_scalar(b, gep(b, src, start), ld, 1, I64(0), kc, rest, width, edge_dst)
    b.ret_void()
    return fn


# ----------------------------------------------------------------------------- micro-kernel


@dataclass(frozen=True)
class EpilogueIndex:
    """Where an output value goes: `lanes` consecutive elements of C[batch] from (row, col),
    along the columns (axis "col": C[batch][row, col : col + lanes], the GEMM's vectors) or
    the rows (axis "row": C[batch][row : row + lanes, col], the direct convolution's vectors
    along output channels). With `valid` (an i64, 1 <= valid <= lanes) only the first `valid`
    lanes are elements: the others are computed but never read from or written to memory."""

    batch: ir.Value
    row: ir.Value
    col: ir.Value
    lanes: int
    axis: str = "col"
    valid: ir.Value | None = None


Epilogue = Callable[[ir.IRBuilder, ir.Value, EpilogueIndex, Sequence[ir.Value]], ir.Value]


def micro_heights(blk: Blocking) -> tuple[int, ...]:
    """The tile heights that get a micro-kernel: MR, MR/2 and 1. An edge tile of `rows` rows runs
    the lowest height >= rows, computing (never storing) up to height - rows extra rows: three
    kernels instead of MR keep the code (and its compile time) small for a few wasted FMAs on
    edge tiles, while a single row (matrix-vector) still computes one."""
    return tuple(sorted({blk.mr, -(-blk.mr // 2), 1}))


def define_micro_kernel(module: ir.Module, blk: Blocking, height: int, vectors: int) -> ir.Function:
    """`micro(a, a_row_stride, a_k_stride, b, b_k_stride, kc, c_in, ld_in, c_out, ld_out, rows, cols, first)`:
    C tile (`rows` <= height rows, vectors*L columns of which `cols` valid) = sum_k A[:, k] B[k, :],
    stored at c_out as (first ? 0 : c_in) + the sum. One definition per (dtype, height, vectors)
    serves every GEMM of a module: epilogues run on the stored tile (codegen.gemm), so the FMA
    loop, most of a GEMM's code, is compiled once, not once per fused GEMM. Rows past `rows`
    read A's last valid row again (in bounds) and are not stored.

    `vectors` < NV serves narrow last panels (N % NR <= L) without computing
    the zero padding.

    Strides are run-time arguments: packed panels pass (1, MR) for A and NR
    for B, the no-pack path passes op(A)'s and op(B)'s own. Measured: no
    slower than constants (the row pointers are hoisted, the FMAs bound the
    loop), and one kernel per row count serves both paths.
    """
    name = f"gemm.{blk.dtype}.micro{height}x{vectors}"
    return define_once(module, name, lambda: _define_micro_kernel(module, name, blk, height, vectors))


def _define_micro_kernel(module: ir.Module, name: str, blk: Blocking, height: int, vectors: int) -> ir.Function:
    T, V, L, nv = blk.element, blk.vector, blk.lanes, vectors
    width = nv * L
    P = T.as_pointer()
    fn = new_function(module, name, [P, I64, I64, P, I64, I64, P, I64, P, I64, I64, I64, I1])
    # Out of line: one call per tile costs little next to its kc x 2*rows FMAs, and
    # inlining all MR variants into the loop nest triples the compile time.
    fn.attributes.add("noinline")
    a, a_rs, a_ks, bp, b_ks, kc, c_in, ld_in, c_out, ld_out, rows, cols, first = fn.args
    b = ir.IRBuilder(fn.entry_basic_block)
    zero = ir.Constant(V, [0.0] * L)
    acc_slots = [[entry_alloca(b, V, f"acc{r}_{v}") for v in range(nv)] for r in range(height)]
    for slots in acc_slots:
        for slot in slots:
            b.store(zero, slot)
    last_row = b.sub(rows, I64(1))
    a_rows = [a] + [gep(b, a, b.mul(imin(b, I64(r), last_row), a_rs)) for r in range(1, height)]
    # The C tile is read (K blocks after the first) and written only after the
    # k loop: fetch its lines now so those accesses do not stall on memory.
    prefetch = module.globals.get("llvm.prefetch.p0") or ir.Function(
        module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), I32, I32, I32]), "llvm.prefetch.p0")
    for r in range(height):
        c_row = gep(b, c_in, b.mul(imin(b, I64(r), last_row), ld_in))
        for offset in sorted({0, width - 1}):
            line = b.bitcast(gep(b, c_row, offset), ir.IntType(8).as_pointer())
            b.call(prefetch, [line, ir.IntType(32)(1), ir.IntType(32)(3), ir.IntType(32)(1)])

    def step(k: ir.Value) -> None:
        b_k = gep(b, bp, b.mul(k, b_ks))
        b_vectors = [b.load(vector_pointer(b, gep(b, b_k, v * L), V), align=blk.element_bytes) for v in range(nv)]
        a_k = b.mul(k, a_ks)
        for r in range(height):
            broadcast = splat(b, b.load(gep(b, a_rows[r], a_k)), L)
            for v in range(nv):
                slot = acc_slots[r][v]
                b.store(fma(b, broadcast, b_vectors[v], b.load(slot)), slot)

    k_main = b.mul(b.sdiv(kc, I64(UNROLL_K)), I64(UNROLL_K))
    with for_range(b, I64(0), k_main, UNROLL_K, name="k4") as k:
        for u in range(UNROLL_K):
            step(b.add(k, I64(u)))
    with for_range(b, k_main, kc, name="k1") as k:
        step(k)

    def finish(value: ir.Value, r: ir.Value, column: ir.Value | int, lanes: int) -> None:
        """C_out = (first ? 0 : C_in) + value at (r, column)."""
        source = gep(b, c_in, b.mul(r, ld_in), column)
        target = gep(b, c_out, b.mul(r, ld_out), column)
        if lanes > 1:
            source, target = vector_pointer(b, source, value.type), vector_pointer(b, target, value.type)
        previous = b.load(source, align=blk.element_bytes)
        b.store(b.select(first, value, b.fadd(previous, value)), target, align=blk.element_bytes)

    accumulators = [[b.load(slot) for slot in slots] for slots in acc_slots]
    tile = entry_alloca(b, ir.ArrayType(T, height * width), "tile")
    whole = b.and_(b.icmp_signed(">=", cols, I64(width)), b.icmp_signed(">=", rows, I64(height)))
    with b.if_else(whole) as (full_tile, edge_tile):
        with full_tile:
            for r in range(height):
                for v in range(nv):
                    finish(accumulators[r][v], I64(r), v * L, L)
        with edge_tile:
            # Spill the tile, then write `rows` x `cols` of it: whole vectors, then scalars.
            tile_ptr = b.gep(tile, [I32(0), I32(0)])
            for r in range(height):
                for v in range(nv):
                    b.store(accumulators[r][v], vector_pointer(b, gep(b, tile_ptr, r * width + v * L), V),
                            align=blk.element_bytes)
            vector_cols = b.mul(b.sdiv(cols, I64(L)), I64(L))
            with for_range(b, I64(0), rows, name="er") as r:
                t_row = gep(b, tile_ptr, b.mul(r, I64(width)))
                with for_range(b, I64(0), vector_cols, L, name="ev") as j:
                    finish(b.load(vector_pointer(b, gep(b, t_row, j), V), align=blk.element_bytes), r, j, L)
                with for_range(b, vector_cols, cols, name="es") as j:
                    finish(b.load(gep(b, t_row, j)), r, j, 1)
    b.ret_void()
    return fn
