"""Direct convolution: register-blocked tap loops over a zero-padded copy of the input.

im2col + GEMM (codegen.conv) writes and re-reads C*KH*KW values per output
pixel; with LeNet's few channels (K = C*25) that copy costs as much as the
multiply-adds. Here the micro-kernel reads the padded input in place: tap k =
(kh, c, kw) of a pixel sits at a fixed offset `c*Hp*Wp + kh*DH*Wp + kw*DW`
from the pixel's first tap, so one table of CK offsets replaces the im2col
matrix. The micro-kernel is the GEMM's (codegen.gemm_kernel) with table
lookups: acc[r][v] += broadcast(A_r[a_off[k]]) * B[b_off[k] + v*L : +L], an
FMA chain in k order per output element, then the tile goes through the
epilogue hook (same `Epilogue` / `EpilogueIndex` as the GEMM: batch = image,
row = output channel, col = OH*OW position) to the NCHW output, so
fused_conv2d applies its region on the tile's vectors as the GEMM does: along
the row ("W", a row's last vector masked) or along the output channels ("C",
the channel tail masked; the lanes go to memory P apart, one scalar store
each, in the kernel with or without an epilogue).

Two orientations, picked by `plan` from the lanes they would waste:
  "W" vectors along the output row (needs stride 1 along W): A = weight rows
      (R output channels broadcast), B = input rows. Tasks = (image, group,
      channel block, chunk of output rows); a row takes ceil(OW / (NV*L))
      tiles, and kernel rows that fall into the zero padding are skipped.
  "C" vectors along the output channels (any stride): A = R output pixels
      (input values broadcast), B = the weights transposed to (CK, C_out
      padded to NV*L). Tasks = (image, group, chunk of R-pixel blocks).
Register blocks fit AVX2's 16 ymm like the GEMM: NV = 2 vectors x R = 6 rows,
or NV = 1 x R = 12 (accumulators + NV B vectors + 1 broadcast <= 15).
Measured (1 thread, thread CPU time, GFLOP/s; torch 2.13 in the same run):
  LeNet conv1 1->6 k5 32x32 N=64:  "W" 18.8, "C" 8.3   (plan: "W", 87% lanes)
  LeNet conv2 6->16 k5 14x14 N=64: "W" 15.5, "C" 24.4  (plan: "C", 100% lanes)
  ResNet 64->64 k3 56x56 N=32:     "W" 27.1, "C" 29.9  (plan: "C", 100% lanes)
  im2col + GEMM on the same shapes: 4.2, 8.6, 19.8 (the previous path).

grad_input with stride 1 is the forward convolution of dy, padded by
DH*(KH-1) - PH, with the weights transposed per group and flipped (`flip`).
The weight matrix is prepared by one affine scatter kernel (transpose, flip,
zero padding), the padded input by `define_pad` (codegen.conv_operands both).

grad_weight with stride 1 along W ("dW" plans, `define_grad_weight`): tiles of
dw (output channels x taps) accumulate vectors along the output rows over the
whole batch, then sum their lanes; no im2col, the reduction never split. With
at least a vector of output channels and dy small enough for L2 ("dWC" plans,
`define_grad_weight_channels`), dy is copied channels-last once and the "C"
micro-kernel runs with the batch's pixels as its reduction (taps as rows,
channels as vectors): any stride, and LeNet's conv2 twice as fast.

Every output element is computed by exactly one task with a fixed tap order,
so results are identical for any thread count.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from ir.types import DType

from .conv import define_plane_kernel
from .emit import I64
from .gemm_kernel import (
    Epilogue, EpilogueIndex, blocking_for, define_once, entry_alloca, fma, gep, imin, new_function, splat,
    vector_pointer,
)
from .lanes import masked_load, masked_store, scatter
from .loops import for_range
from .parallel import grain
from .target import host

I32 = ir.IntType(32)
UNROLL = 4
# Accumulator budget: 16 ymm minus NV B vectors and one broadcast.
MAX_ACCUMULATORS = 12
# grad_weight tiles: GW_ROWS output channels x GW_TAPS taps of accumulators, plus GW_ROWS dy vectors,
# one input vector and the tail mask: 2*5 + 2 + 1 + 1 = 14 ymm (3 x 4 fills all 16 and spills the
# mask: measured 6-12% slower on LeNet's conv2).
GW_ROWS, GW_TAPS = 2, 5
# "dWC" plans reduce over the batch's pixels in chunks of this many (see define_grad_weight_channels).
GW_CHUNK = 256
# Tasks per direct convolution (at least): many more than threads, for balance.
TASKS_WANTED = 64
# Below this many multiply-adds a kernel runs on the calling thread.
PARALLEL_MIN_FMAS = 1 << 18


def lanes_of(dtype: DType) -> int:
    return blocking_for(dtype.name).lanes


@dataclass(frozen=True)
class DirectPlan:
    """A convolution of src (N, G*cin, H, W) into dst (N, G*cout, OH, OW) by the direct kernel, or
    ("dW") the gradient of its weight from src and dst's gradient."""

    orientation: str  # "W", "C", "dW" or "dWC"
    nv: int  # vectors per tile row ("dW": taps per tile)
    rows: int  # tile rows: output channels ("W", "dW"), output pixels ("C") or taps ("dWC")
    lanes: int
    n: int
    groups: int
    cin: int
    cout: int
    h: int
    w: int
    kh: int
    kw: int
    oh: int
    ow: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    flip: bool  # the weight is the forward conv's (G*cin, cout, KH, KW): grad_input as a convolution
    channels_last: bool = False  # "C" only: the padded source is (N, Hp, Wp, C), see `plan`

    @property
    def hp(self) -> int:
        return self.h + 2 * self.ph

    @property
    def wp(self) -> int:
        return self.w + 2 * self.pw

    @property
    def ck(self) -> int:
        return self.cin * self.kh * self.kw

    @property
    def width(self) -> int:
        return self.nv * self.lanes

    @property
    def cpad(self) -> int:
        """Output channels per group rounded up to whole tiles ("C": the transposed weights' row length)."""
        return -(-self.cout // self.width) * self.width

    def padded_elements(self) -> int:
        # Tiles read up to one tile width past the last row ("W"): slack keeps that inside the buffer.
        return self.n * self.groups * self.cin * self.hp * self.wp + self.width + 16

    def pad_meta(self) -> list[int]:
        """define_pad meta (plane by plane), or define_pad_channels_last meta (padded row by row)."""
        channels = self.n * self.groups * self.cin
        if self.channels_last:
            tasks = self.n * self.hp
            return [tasks, grain(tasks, channels * self.hp * self.wp), self.groups * self.cin, self.h, self.w,
                    self.ph, self.pw]
        return [channels, grain(channels, channels * self.hp * self.wp), self.h, self.w, self.ph, self.pw]

    def weight_elements(self) -> int:
        """Size of the prepared weight matrix (the weights with their taps in the tables' order)."""
        return self.groups * self.ck * (self.cpad if self.orientation == "C" else self.cout)

    def weight_meta(self) -> list[int]:
        """define_weight_scatter meta: dst[base + g*sg + o*so + c*sc + kh*skh + kw*skw] = w[g, o, c, kh, kw]
        over the given weight (G, O/G, C/G, KH, KW). Taps go in the tables' order, (kh, c, kw) for "W"
        and (kh, kw, c) for "C"; a flipped weight (grad_input) swaps o and c and reverses kh and kw."""
        kh, kw, ck, cin = self.kh, self.kw, self.ck, self.cin
        if self.orientation == "W" and not self.flip:  # w[g, o][(kh, c, kw)]
            og, cg = self.cout, cin
            strides, base = (self.cout * ck, ck, kw, cin * kw, 1), 0
        elif self.orientation == "C" and not self.flip:  # wT[g][(kh, kw, c)][o]
            og, cg, cp = self.cout, cin, self.cpad
            strides, base = (ck * cp, 1, cp, kw * cin * cp, cin * cp), 0
        elif self.orientation == "W":  # w'[g, c][(KH-1-kh, o, KW-1-kw)], c the new output channel
            og, cg = cin, self.cout
            strides, base = (self.cout * ck, kw, ck, -cin * kw, -1), (kh - 1) * cin * kw + kw - 1
        else:  # wT'[g][(KH-1-kh, KW-1-kw, o)][c]
            og, cg, cp = cin, self.cout, self.cpad
            strides, base = (ck * cp, cp, 1, -kw * cin * cp, -cin * cp), ((kh - 1) * kw * cin + (kw - 1) * cin) * cp
        return [1, 1, self.groups, og, cg, kh, kw, self.weight_elements(), base, *strides]

    def tasks(self) -> int:
        if self.orientation == "dW":
            return self.groups * -(-self.cout // self.rows) * -(-self.ck // self.nv)
        if self.orientation == "dWC":
            return self.groups * (self.cpad // self.width) * -(-self.ck // self.rows)
        return self.n * self.groups * self.units() // self.chunk()

    def units(self) -> int:
        """Work units per (image, group): output rows x channel blocks ("W") or pixel blocks ("C")."""
        if self.orientation == "W":
            return -(-self.cout // self.rows) * self.oh
        return -(-(self.oh * self.ow) // self.rows)

    def chunk(self) -> int:
        """Units per task: enough tasks per image to share out, few enough that the task's index
        arithmetic (integer divisions) is paid once for several tiles."""
        per_image = self.oh if self.orientation == "W" else self.units()
        chunk = max(1, per_image * self.n * self.groups // TASKS_WANTED)
        while per_image % chunk:
            chunk -= 1
        return chunk

    def kernel_meta(self) -> list[int]:
        tasks = self.tasks()
        p = self.oh * self.ow
        split = grain(tasks, self.n * self.groups * self.cout * p * self.ck, PARALLEL_MIN_FMAS)
        plane = self.hp * self.wp
        if self.orientation == "dW":
            return [tasks, split, self.groups, -(-self.cout // self.rows), -(-self.ck // self.nv), self.n, self.oh,
                    self.ow, self.cout, self.ck, self.groups * self.cin * plane, self.cin * plane, self.sh * self.wp,
                    p, self.groups * self.cout * p]
        if self.orientation == "dWC":
            return [tasks, split, self.groups, self.cpad // self.width, -(-self.ck // self.rows), self.n * p,
                    self.cout, self.ck, self.cin * plane, self.cpad]
        blocks = -(-self.cout // self.rows) if self.orientation == "W" else -(-p // self.rows)
        # Element steps in the padded source: to the group's first channel, a pixel to the right.
        group_step, pixel = (self.cin, self.groups * self.cin) if self.channels_last else (self.cin * plane, 1)
        return [tasks, split, self.groups, blocks, self.oh, self.ow, self.cout, self.ck,
                self.groups * self.cin * plane, group_step, self.sh * self.wp * pixel, p,
                self.groups * self.cout * p, self.sw * pixel, self.cpad // self.width, self.chunk(), self.ph, self.h,
                self.kh, self.dh, self.cin * self.kw, self.sh]

    @functools.lru_cache(maxsize=64)
    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(a_off, b_off): per tap k, the offset added to the A rows and to the B pointer.

        "W" takes the taps in (kh, c, kw) order, so the taps of one kernel row are a contiguous
        range of k (it skips the rows that fall into the zero padding); "C" in (kh, kw, c) order,
        adjacent in a channels-last source; "dW" in weight order (c, kh, kw), the order it
        stores dw in; so does "dWC", whose A offsets (the batch's pixels) define_dwc_operands
        computes."""
        kh, c, kw = np.meshgrid(np.arange(self.kh), np.arange(self.cin), np.arange(self.kw), indexing="ij")
        if self.orientation in ("dW", "dWC"):
            c, kh, kw = (a.transpose(1, 0, 2) for a in (c, kh, kw))
        if self.orientation == "C":
            c, kh, kw = (a.transpose(0, 2, 1) for a in (c, kh, kw))
        if self.channels_last:
            pixel = self.groups * self.cin
            taps = ((kh * self.dh * self.wp + kw * self.dw) * pixel + c).reshape(-1).astype(np.int64)
        else:
            taps = (c * self.hp * self.wp + kh * self.dh * self.wp + kw * self.dw).reshape(-1).astype(np.int64)
        k = np.arange(self.ck, dtype=np.int64)  # the prepared weights are in tap order
        return (k, taps) if self.orientation in ("W", "dW", "dWC") else (taps, k * self.cpad)

    def operands_meta(self) -> list[int]:
        """define_dwc_operands meta ("dWC"): dy as (G, N*P, cpad), and the pixels' offsets."""
        tasks = self.groups * self.n
        p = self.oh * self.ow
        image = self.groups * self.cin * self.hp * self.wp
        return [tasks, grain(tasks, tasks * p * self.cpad), self.n, self.cout, p, self.cpad, self.groups, self.ow,
                self.sh * self.wp, self.sw, image]

    def key(self) -> tuple:
        return ("conv_direct", self.orientation, self.nv, self.rows)


def _blocks(count: int, most: int) -> int:
    """The tile height that covers `count` rows in the fewest blocks of at most `most`, balanced."""
    blocks = -(-count // most)
    return -(-count // blocks)


@functools.lru_cache(maxsize=256)
def plan(dtype: DType, n: int, groups: int, cin: int, cout: int, hw: tuple[int, int], khw: tuple[int, int],
         ohw: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
         flip: bool = False) -> DirectPlan:
    """The direct kernel's plan for this convolution: the orientation wasting fewer lanes.

    "W" wastes the tail of each output row (OW rounded up to tiles) and of the
    channel blocks; "C" wastes the channel tail (cout rounded up to vectors).
    Ties go to "W", whose output (and epilogue operand) accesses are vectors;
    "C" scatters each channel vector to P-apart addresses.
    """
    lanes = lanes_of(dtype)
    oh, ow = ohw
    nv_w = 1 if ow <= lanes else 2
    rows_w = _blocks(cout, MAX_ACCUMULATORS // nv_w)
    used_w = ow * cout / (-(-ow // (nv_w * lanes)) * nv_w * lanes * -(-cout // rows_w) * rows_w)
    nv_c = 1 if cout <= lanes else 2
    used_c = cout / (-(-cout // (nv_c * lanes)) * nv_c * lanes)
    orientation = "W" if stride[1] == 1 and used_w >= used_c else "C"
    nv, rows = (nv_w, rows_w) if orientation == "W" else (nv_c, MAX_ACCUMULATORS // nv_c)
    # "C" reads a pixel's taps channel after channel: from a channels-last copy they lie next to
    # each other instead of a plane apart (ResNet 64->64 k3 56x56 forward, one thread: 30.5 -> 35.7
    # GFLOP/s: fewer cache lines and pages per tile). Only when an image's planes overflow L1:
    # LeNet's conv2 (6 planes of 18x18) ran the same either way, and a graph with one kind of
    # padding kernel compiles faster.
    planes = cin * (hw[0] + 2 * padding[0]) * (hw[1] + 2 * padding[1]) * dtype.itemsize
    channels_last = orientation == "C" and planes > host().l1d_bytes
    return DirectPlan(orientation, nv, rows, lanes, n, groups, cin, cout, *hw, *khw, oh, ow, *stride, *padding,
                      *dilation, flip, channels_last)


def grad_weight_plan(dtype: DType, n: int, groups: int, c: int, o: int, hw: tuple[int, int],
                     khw: tuple[int, int], ohw: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                     dilation: tuple[int, int]) -> DirectPlan | None:
    """grad_weight by a direct reduction kernel, or None (im2col + GEMM).

    "dWC" (`define_grad_weight_channels`) when the output channels fill at least a vector and
    dy, channels last, fits in L2: the forward "C" micro-kernel with the pixels of the whole batch
    as its reduction (taps as rows, dy's channels as vectors). Measured on LeNet's conv2 (16
    channels, 10x10 output rows), 1 thread, thread CPU time: 3.1 ms -> 1.5 ms (PyTorch 2.1 ms).
    Otherwise "dW" (stride 1 along W), vectors along the output rows."""
    og = o // groups
    lanes = lanes_of(dtype)
    nv = 1 if og <= lanes else 2
    cpad = -(-og // (nv * lanes)) * nv * lanes
    if og >= lanes and n * ohw[0] * ohw[1] * cpad * dtype.itemsize <= host().l2_bytes:
        return DirectPlan("dWC", nv, MAX_ACCUMULATORS // nv, lanes, n, groups, c // groups, og, *hw, *khw, *ohw,
                          *stride, *padding, *dilation, False)
    if stride[1] != 1:
        return None
    return DirectPlan("dW", GW_TAPS, _blocks(og, GW_ROWS), lanes, n, groups, c // groups, og, *hw, *khw, *ohw,
                      *stride, *padding, *dilation, False)


def grad_input_plan(dtype: DType, n: int, groups: int, c: int, o: int, hw: tuple[int, int],
                    khw: tuple[int, int], ohw: tuple[int, int], stride, padding, dilation) -> DirectPlan | None:
    """grad_input of a stride-1 convolution as a direct forward convolution of dy, or None."""
    pads = tuple(d * (k - 1) - p for d, k, p in zip(dilation, khw, padding))
    if tuple(stride) != (1, 1) or min(pads) < 0:
        return None
    return plan(dtype, n, groups, o // groups, c // groups, ohw, khw, hw, (1, 1), pads, dilation, flip=True)


# ----------------------------------------------------------------------------- kernels


def _define_micro(module: ir.Module, dtype: DType, rows: int, nv: int, orientation: str) -> ir.Function:
    """`micro(T** a_rows, i64* a_off, T* b, i64* b_off, i64 k_begin, i64 k_end, T* tile, i64 b_step)`,
    one per module, dtype, shape and orientation (the kernels of a graph share it):
    tile[r][v*L + l] = sum_k a_rows[r][a_off[k]] * b[b_off[k] + v*L + l] over [k_begin, k_end), an
    FMA chain in k order. The weight side is affine in k and skips its table: A at k ("W"),
    B at k*b_step ("C")."""
    name = f"conv.{dtype}.micro{orientation}{rows}x{nv}"
    return define_once(module, name, lambda: _define_micro_function(module, name, dtype, rows, nv, orientation))


def _define_micro_function(module: ir.Module, name: str, dtype: DType, rows: int, nv: int,
                           orientation: str) -> ir.Function:
    blk = blocking_for(dtype.name)
    T, V, L = blk.element, blk.vector, blk.lanes
    P = T.as_pointer()
    fn = new_function(module, name, [P.as_pointer(), I64.as_pointer(), P, I64.as_pointer(), I64, I64, P, I64])
    fn.attributes.add("noinline")
    a_rows_arg, a_off, bp, b_off, k_begin, k_end, tile, b_step = fn.args
    b = ir.IRBuilder(fn.entry_basic_block)
    zero = ir.Constant(V, [0.0] * L)
    acc = [[entry_alloca(b, V, f"acc{r}_{v}") for v in range(nv)] for r in range(rows)]
    for slots in acc:
        for slot in slots:
            b.store(zero, slot)
    a_rows = [b.load(b.gep(a_rows_arg, [I64(r)])) for r in range(rows)]

    def step(k: ir.Value) -> None:
        b_k = gep(b, bp, b.mul(k, b_step) if orientation == "C" else b.load(b.gep(b_off, [k])))
        vectors = [b.load(vector_pointer(b, gep(b, b_k, v * L), V), align=blk.element_bytes) for v in range(nv)]
        ak = k if orientation == "W" else b.load(b.gep(a_off, [k]))
        for r in range(rows):
            broadcast = splat(b, b.load(b.gep(a_rows[r], [ak])), L)
            for v in range(nv):
                b.store(fma(b, broadcast, vectors[v], b.load(acc[r][v])), acc[r][v])

    k_main = b.add(k_begin, b.mul(b.sdiv(b.sub(k_end, k_begin), I64(UNROLL)), I64(UNROLL)))
    with for_range(b, k_begin, k_main, UNROLL, name="k4") as k:
        for u in range(UNROLL):
            step(b.add(k, I64(u)))
    with for_range(b, k_main, k_end, name="k1") as k:
        step(k)
    for r in range(rows):
        for v in range(nv):
            b.store(b.load(acc[r][v]), vector_pointer(b, gep(b, tile, (r * nv + v) * L), V), align=blk.element_bytes)
    b.ret_void()
    return fn


def define_direct_conv(module: ir.Module, name: str, dtype: DType, orientation: str, nv: int, rows: int,
                       epilogue: Epilogue | None = None, extra_types=()) -> ir.Function:
    """`name(i8** [dst, src_padded, wmat, a_off, b_off], i64* DirectPlan.kernel_meta, *extras)`."""
    blk = blocking_for(dtype.name)
    T, V, L = blk.element, blk.vector, blk.lanes
    width = nv * L
    micro = _define_micro(module, dtype, rows, nv, orientation)

    def store(b, value, pointer, index, extras, channel_step=None):
        """The epilogue on `value`, then its elements to `pointer`: along the row ("col") or,
        `channel_step` apart, along the output channels ("row"); lanes past index.valid not at all."""
        if epilogue is not None:
            value = epilogue(b, value, index, extras)
        if index.axis == "row":
            scatter(b, value, pointer, [b.mul(I64(j), channel_step) for j in range(L)], index.valid)
        elif index.valid is not None:
            masked_store(b, value, pointer, index.valid)
        else:
            b.store(value, vector_pointer(b, pointer, V), align=blk.element_bytes)

    def w_row(b, oh, n, g, o_first, channel0, src_img, src_group, row_step, OW, P, dst_img, cout, k_lo, k_hi,
              a_off, b_off, rows_ptr, tile, dst, src, extras):
        """Output row oh of channels channel0 + [0, rows): tiles of NV vectors along the row, the
        row's last vector masked."""
        b_row = gep(b, src, b.mul(n, src_img), b.mul(g, src_group), b.mul(oh, row_step))
        col_row = b.mul(oh, OW)
        out_row = gep(b, dst, b.mul(n, dst_img), b.mul(channel0, P), col_row)
        stored_rows = imin(b, I64(rows), b.sub(cout, o_first))
        with for_range(b, I64(0), OW, width, name="ow") as ow0:
            b.call(micro, [rows_ptr, a_off, gep(b, b_row, ow0), b_off, k_lo, k_hi, tile, I64(0)])
            # A loop, not unrolled: each store inlines the epilogue, twice (full and masked vector).
            with for_range(b, I64(0), stored_rows, name="r") as r:
                out = gep(b, out_row, b.mul(r, P))
                for v in range(nv):
                    col = b.add(ow0, I64(v * L))
                    left = b.sub(OW, col)
                    value = b.load(vector_pointer(b, gep(b, tile, b.add(b.mul(r, I64(width)), I64(v * L))), V),
                                   align=blk.element_bytes)

                    def put(valid, r=r, col=col, out=out, value=value):
                        store(b, value, gep(b, out, col),
                              EpilogueIndex(n, b.add(channel0, r), b.add(col_row, col), L, "col", valid), extras)

                    with b.if_else(b.icmp_signed(">=", left, I64(L))) as (full, part):
                        with full:
                            put(None)
                        with part:
                            if v == 0:  # the tile starts inside the row
                                put(left)
                            else:
                                with b.if_then(b.icmp_signed(">", left, I64(0))):
                                    put(left)

    def body(b, pointers, meta, task, extras=()):
        dst, src, wmat, a_off, b_off = pointers
        a_off, b_off = (b.bitcast(p, I64.as_pointer()) for p in (a_off, b_off))
        G, blocks, OH, OW, cout, CK, src_img, src_group, row_step, P, dst_img, SW, cblocks, chunk = meta[2:16]
        a_rows = entry_alloca(b, ir.ArrayType(T.as_pointer(), rows), "a_rows")
        tile_array = entry_alloca(b, ir.ArrayType(T, rows * width), "tile")
        tile = b.gep(tile_array, [I32(0), I32(0)])
        row_slot = lambda r: b.gep(a_rows, [I32(0), I32(r)])  # noqa: E731
        rows_ptr = b.bitcast(a_rows, T.as_pointer().as_pointer())
        if orientation == "W":
            # task = ((n*G + g)*blocks + channel block)*(OH/chunk) + row chunk
            row_chunks = b.sdiv(OH, chunk)
            oh_first = b.mul(b.srem(task, row_chunks), chunk)
            rest = b.sdiv(task, row_chunks)
            ob = b.srem(rest, blocks)
            rest = b.sdiv(rest, blocks)
            g, n = b.srem(rest, G), b.sdiv(rest, G)
            o_first = b.mul(ob, I64(rows))
            channel0 = b.add(b.mul(g, cout), o_first)
            for r in range(rows):  # rows past cout repeat the last channel (computed, not stored)
                o = imin(b, b.add(o_first, I64(r)), b.sub(cout, I64(1)))
                b.store(gep(b, wmat, b.mul(b.add(b.mul(g, cout), o), CK)), row_slot(r))
            PH, H, KH, DH, per_kh, SH = meta[16:]
            with for_range(b, oh_first, b.add(oh_first, chunk), name="oh") as oh:
                # kernel rows reading only zero padding contribute nothing: skip their taps
                top = b.mul(oh, SH)  # the output row's first input row, in padded coordinates
                first = b.sub(PH, top)
                kh_lo = b.select(b.icmp_signed(">", first, I64(0)), b.sdiv(b.add(first, b.sub(DH, I64(1))), DH), I64(0))
                last = b.sub(b.add(PH, b.sub(H, I64(1))), top)
                kh_hi = b.select(b.icmp_signed("<", last, I64(0)), I64(0), imin(b, KH, b.add(b.sdiv(last, DH), I64(1))))
                kh_hi = b.select(b.icmp_signed("<", kh_hi, kh_lo), kh_lo, kh_hi)
                k_lo, k_hi = b.mul(kh_lo, per_kh), b.mul(kh_hi, per_kh)
                w_row(b, oh, n, g, o_first, channel0, src_img, src_group, row_step, OW, P, dst_img, cout,
                      k_lo, k_hi, a_off, b_off, rows_ptr, tile, dst, src, extras)
        else:
            # task = (n*G + g)*(blocks/chunk) + pixel-block chunk; pixel positions advance
            # incrementally (one division per task, not per pixel)
            block_chunks = b.sdiv(blocks, chunk)
            pb_first = b.mul(b.srem(task, block_chunks), chunk)
            rest = b.sdiv(task, block_chunks)
            g, n = b.srem(rest, G), b.sdiv(rest, G)
            base = gep(b, src, b.mul(n, src_img), b.mul(g, src_group))
            cpad = b.mul(cblocks, I64(width))
            w_group = gep(b, wmat, b.mul(b.mul(g, CK), cpad))
            position = entry_alloca(b, ir.LiteralStructType([I64, I64]), "position")  # (oh, ow) of the next pixel
            p_start = b.mul(pb_first, I64(rows))
            b.store(b.sdiv(p_start, OW), b.gep(position, [I32(0), I32(0)]))
            b.store(b.srem(p_start, OW), b.gep(position, [I32(0), I32(1)]))
            with for_range(b, pb_first, b.add(pb_first, chunk), name="pb") as pb:
                p0 = b.mul(pb, I64(rows))
                previous = None
                for r in range(rows):  # pixels past P repeat the previous one (computed, not stored)
                    oh = b.load(b.gep(position, [I32(0), I32(0)]))
                    ow = b.load(b.gep(position, [I32(0), I32(1)]))
                    pointer = gep(b, base, b.mul(oh, row_step), b.mul(ow, SW))
                    if previous is not None:
                        pointer = b.select(b.icmp_signed("<", b.add(p0, I64(r)), P), pointer, previous)
                    b.store(pointer, row_slot(r))
                    previous = pointer
                    wrap = b.icmp_signed("==", b.add(ow, I64(1)), OW)
                    b.store(b.select(wrap, b.add(oh, I64(1)), oh), b.gep(position, [I32(0), I32(0)]))
                    b.store(b.select(wrap, I64(0), b.add(ow, I64(1))), b.gep(position, [I32(0), I32(1)]))
                valid = imin(b, I64(rows), b.sub(P, p0))
                out_image = gep(b, dst, b.mul(n, dst_img), p0)
                with for_range(b, I64(0), cblocks, name="cb") as cb:
                    c0 = b.mul(cb, I64(width))
                    b.call(micro, [rows_ptr, a_off, gep(b, w_group, c0), b_off, I64(0), CK, tile, cpad])
                    for v in range(nv):  # tile row r, vector v: channels c0 + v*L + [0, L) of pixel p0 + r
                        cv = b.add(c0, I64(v * L))
                        left = b.sub(cout, cv)
                        channel = b.add(b.mul(g, cout), cv)
                        out = gep(b, out_image, b.mul(channel, P))

                        def pixels(channels, v=v, channel=channel, out=out):
                            with for_range(b, I64(0), valid, name="r") as r:
                                value = b.load(vector_pointer(b, gep(b, tile, b.mul(r, I64(width)), v * L), V),
                                               align=blk.element_bytes)
                                store(b, value, gep(b, out, r),
                                      EpilogueIndex(n, channel, b.add(p0, r), L, "row", channels), extras, P)

                        with b.if_else(b.icmp_signed(">=", left, I64(L))) as (full, part):
                            with full:
                                pixels(None)
                            with part:
                                with b.if_then(b.icmp_signed(">", left, I64(0))):
                                    pixels(left)

    return define_plane_kernel(module, name, dtype, 5, 22, body, extra_types)


def define_grad_weight(module: ir.Module, name: str, dtype: DType, rows: int, taps: int) -> ir.Function:
    """`name(i8** [dw, src_padded, dy, tap_off], i64* DirectPlan.kernel_meta)` ("dW" plans).

    Task (group, channel block, tap block) owns a rows x taps tile of dw: vector
    accumulators over output columns, acc[r][t] += dy[n, o_r, oh, ow:+L] *
    x_pad[n, tap_t + oh*SH*Wp + ow:+L] over every (n, oh, ow block) in order
    (the row tail masked), then each accumulator's lanes summed in lane order.
    No im2col, and no reduction split across threads.
    """
    blk = blocking_for(dtype.name)
    V, L = blk.vector, blk.lanes
    zero = ir.Constant(V, [0.0] * L)
    lane_index = ir.Constant(ir.VectorType(I64, L), list(range(L)))
    bits = ir.VectorType(ir.IntType(blk.element_bytes * 8), L)  # lane masks as AND masks: stay in a register

    def body(b, pointers, meta, task):
        dw, src, dy, off = pointers
        off = b.bitcast(off, I64.as_pointer())
        G, OBLK, TBLK, N, OH, OW, cout, CK, src_img, src_group, row_step, P, dy_img = meta[2:]
        tb = b.srem(task, TBLK)
        rest = b.sdiv(task, TBLK)
        ob, g = b.srem(rest, OBLK), b.sdiv(rest, OBLK)
        o_first, k_first = b.mul(ob, I64(rows)), b.mul(tb, I64(taps))
        dy_rows = [gep(b, dy, b.mul(b.add(b.mul(g, cout), imin(b, b.add(o_first, I64(r)), b.sub(cout, I64(1)))), P))
                   for r in range(rows)]
        x_taps = [gep(b, src, b.mul(g, src_group),
                      b.load(b.gep(off, [imin(b, b.add(k_first, I64(t)), b.sub(CK, I64(1)))]))) for t in range(taps)]
        acc = [[entry_alloca(b, V, f"acc{r}_{t}") for t in range(taps)] for r in range(rows)]
        for row in acc:
            for slot in row:
                b.store(zero, slot)
        whole = b.mul(b.sdiv(OW, I64(L)), I64(L))
        rest_cols = b.sub(OW, whole)
        # The row tail: when the row has a whole vector, the last L columns are re-read (in
        # bounds) and the lanes already counted dropped; a row narrower than L is read masked.
        shift = b.sub(I64(L), rest_cols)
        keep = b.icmp_signed(">=", lane_index, splat(b, shift, L))
        narrow_mask = b.icmp_signed("<", lane_index, splat(b, rest_cols, L))
        narrow = b.icmp_signed("<", OW, I64(L))

        def step(dy_at: ir.Value, x_at: ir.Value, mask: ir.Value | None = None, masked_dy: bool = False) -> None:
            if masked_dy:
                dys = [masked_load(b, gep(b, row, dy_at), mask, V) for row in dy_rows]
            else:
                dys = [b.load(vector_pointer(b, gep(b, row, dy_at), V), align=blk.element_bytes) for row in dy_rows]
            for t in range(taps):
                xv = b.load(vector_pointer(b, gep(b, x_taps[t], x_at), V), align=blk.element_bytes)
                if mask is not None:  # dropped lanes hold other pixels (finite or not): zero them, not the product
                    xv = b.bitcast(b.and_(b.bitcast(xv, bits), b.sext(mask, bits)), V)
                for r in range(rows):
                    b.store(fma(b, dys[r], xv, b.load(acc[r][t])), acc[r][t])

        def rows_of_batch(visit) -> None:
            with for_range(b, I64(0), N, name="n") as n:
                with for_range(b, I64(0), OH, name="oh") as oh:
                    visit(b.add(b.mul(n, dy_img), b.mul(oh, OW)), b.add(b.mul(n, src_img), b.mul(oh, row_step)))

        def whole_vectors(dy_at, x_at):
            with for_range(b, I64(0), whole, L, name="ow") as ow:
                step(b.add(dy_at, ow), b.add(x_at, ow))

        # Whole vectors of every row first, then the row tails in a second pass (a fixed order
        # either way): each pass is a tight loop without the tail's branches.
        rows_of_batch(whole_vectors)
        with b.if_then(b.icmp_signed("<", whole, OW)):
            with b.if_else(narrow) as (short_row, long_row):
                with short_row:
                    rows_of_batch(lambda dy_at, x_at: step(dy_at, x_at, narrow_mask, masked_dy=True))
                with long_row:
                    back = b.sub(whole, shift)
                    rows_of_batch(lambda dy_at, x_at: step(b.add(dy_at, back), b.add(x_at, back), keep))
        for r in range(rows):
            o = b.add(o_first, I64(r))
            with b.if_then(b.icmp_signed("<", o, cout)):
                for t in range(taps):
                    k = b.add(k_first, I64(t))
                    with b.if_then(b.icmp_signed("<", k, CK)):
                        vector = b.load(acc[r][t])
                        total = b.extract_element(vector, I32(0))
                        for lane in range(1, L):
                            total = b.fadd(total, b.extract_element(vector, I32(lane)))
                        b.store(total, gep(b, dw, b.mul(b.add(b.mul(g, cout), o), CK), k))

    return define_plane_kernel(module, name, dtype, 4, 15, body)


def define_grad_weight_channels(module: ir.Module, name: str, dtype: DType, rows: int, nv: int) -> ir.Function:
    """`name(i8** [dw, src_padded, dy_channels_last, pixel_off, tap_off], i64* DirectPlan.kernel_meta)`
    ("dWC" plans). Task (group, channel block, tap block) owns a `rows` taps x NV*L channels tile
    of dw: the forward "C" micro-kernel with k over every output pixel of the batch in order,
    tile[t][o] = sum_k src[tap_t + pixel_off[k]] * dyT[k][o] (in chunks of GW_CHUNK pixels, each an
    FMA chain in k order, added in order), then the tile's valid elements stored to dw[o][tap]."""
    blk = blocking_for(dtype.name)
    T, V, L = blk.element, blk.vector, blk.lanes
    width = nv * L
    micro = _define_micro(module, dtype, rows, nv, "C")

    def body(b, pointers, meta, task):
        dw, src, dyt, pixel_off, tap_off = pointers
        pixel_off, tap_off = (b.bitcast(p, I64.as_pointer()) for p in (pixel_off, tap_off))
        G, OBLK, TBLK, NP, cout, CK, src_group, cpad = meta[2:]
        tb = b.srem(task, TBLK)
        rest = b.sdiv(task, TBLK)
        ob, g = b.srem(rest, OBLK), b.sdiv(rest, OBLK)
        k_first, o_first = b.mul(tb, I64(rows)), b.mul(ob, I64(width))
        a_rows = entry_alloca(b, ir.ArrayType(T.as_pointer(), rows), "a_rows")
        tile_array = entry_alloca(b, ir.ArrayType(T, rows * width), "tile")
        tile = b.gep(tile_array, [I32(0), I32(0)])
        for t in range(rows):  # taps past CK repeat the last one (computed, not stored)
            tap = imin(b, b.add(k_first, I64(t)), b.sub(CK, I64(1)))
            b.store(gep(b, src, b.mul(g, src_group), b.load(b.gep(tap_off, [tap]))),
                    b.gep(a_rows, [I32(0), I32(t)]))
        b_group = gep(b, dyt, b.mul(g, b.mul(NP, cpad)), o_first)
        sums = [entry_alloca(b, V, f"sum{i}") for i in range(rows * nv)]
        for slot in sums:
            b.store(ir.Constant(V, [0.0] * L), slot)
        # Pixels in chunks, each chunk's tile added to the sums: the error of a long reduction
        # grows with chunk + chunks, not with the whole batch's pixel count.
        with for_range(b, I64(0), NP, GW_CHUNK, name="chunk") as k0:
            b.call(micro, [b.bitcast(a_rows, T.as_pointer().as_pointer()), pixel_off, b_group,
                           ir.Constant(I64.as_pointer(), None), k0, imin(b, b.add(k0, I64(GW_CHUNK)), NP), tile, cpad])
            for i, slot in enumerate(sums):
                part = b.load(vector_pointer(b, gep(b, tile, i * L), V), align=blk.element_bytes)
                b.store(b.fadd(b.load(slot), part), slot)
        for i, slot in enumerate(sums):
            b.store(b.load(slot), vector_pointer(b, gep(b, tile, i * L), V), align=blk.element_bytes)
        taps = imin(b, I64(rows), b.sub(CK, k_first))
        channels = imin(b, I64(width), b.sub(cout, o_first))
        with for_range(b, I64(0), taps, name="t") as t:
            with for_range(b, I64(0), channels, name="o") as o:
                value = b.load(gep(b, tile, b.mul(t, I64(width)), o))
                row = b.add(b.mul(g, cout), b.add(o_first, o))
                b.store(value, gep(b, dw, b.mul(row, CK), k_first, t))

    return define_plane_kernel(module, name, dtype, 5, 10, body)
