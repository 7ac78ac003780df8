"""grad_input of a stride-1 convolution with the batch in the vector lanes ("N" plans).

The direct kernel (codegen.conv_direct) computes grad_input as the forward
convolution of dy zero-padded by KH-1-PH: where dy is small next to the kernel
(LeNet's conv2: 10x10 against 5x5) most taps of the border pixels land in that
padding. It skips padded kernel rows but not columns, inside a vector along
the row: on LeNet's conv2 it issues 1.4 products per useful one. Here a vector
holds one pixel of L images instead, so every pixel visits exactly its valid
taps:

    dx[n, c, h, w] = sum over valid (kh, kw), then o, of
                     dy[n, o, h + PH - kh, w + PW - kw] * w[o, c, kh, kw]

dy is first copied batch-last ((OH, OW, O, N) with N padded to the tile's NV*L
images with zeros; `define_batch_last`) and the weight taps-major ((KH, KW, O,
C); `define_taps_major`), so the tap loop over o reads both sequentially. A
task is one pixel of dx for a block of R channels and NV*L images: R x NV
accumulators, each tap o loading NV vectors of dy and broadcasting R weights
(AVX2: R = 6, NV = 2, 12 accumulators + 2 + 1 of the 16 ymm). The tile's lanes
go to dx with one scalar store each (NCHW: images are C*H*W apart), a few per
hundred multiply-adds. Each element is computed by one task in a fixed tap
order, so results are identical for any thread count. When it pays is
`batch_plan`'s call.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from ir.types import DType

from . import emit
from .conv import define_plane_kernel
from .conv_plan import DirectPlan
from .emit import I64
from .gemm_kernel import blocking_for, entry_alloca, fma, gep, imin, splat, vector_pointer
from .loops import for_range
from .parallel import grain

ROWS, VECTORS = 6, 2  # channels x vectors of images per tile: 12 accumulators (AVX2's 16 ymm)
MIN_TAP_LOOP = 8  # output channels (the innermost loop's length) below which "N" is not planned


@dataclass(frozen=True)
class BatchPlan:
    """grad_input of a stride-1, undilated, ungrouped convolution: dx (n, c, h, w) from dy
    (n, o, oh, ow) and the weight (o, c, kh, kw), padding (ph, pw)."""
    n: int
    c: int
    h: int
    w: int
    o: int
    oh: int
    ow: int
    kh: int
    kw: int
    ph: int
    pw: int
    lanes: int

    @property
    def images_per_tile(self) -> int:
        return VECTORS * self.lanes

    @property
    def padded_batch(self) -> int:
        return -(-self.n // self.images_per_tile) * self.images_per_tile

    def batch_last_elements(self) -> int:
        return self.o * self.oh * self.ow * self.padded_batch

    def transpose_meta(self) -> list[int]:
        tasks = self.o * self.oh * self.ow
        return [tasks, grain(tasks, tasks * self.padded_batch), self.n, self.o, self.oh * self.ow, self.padded_batch]

    def weight_elements(self) -> int:
        return self.o * self.c * self.kh * self.kw

    def weight_meta(self) -> list[int]:
        pairs = self.o * self.c
        return [pairs, grain(pairs, pairs * self.kh * self.kw), self.o, self.c, self.kh * self.kw]

    def kernel_meta(self) -> list[int]:
        tasks = (self.padded_batch // self.images_per_tile) * -(-self.c // ROWS) * self.h * self.w
        work = self.n * self.c * self.h * self.w * self.o * self.kh * self.kw
        return [tasks, grain(tasks, work), self.n, self.c, self.h, self.w, self.o, self.oh, self.ow, self.kh,
                self.kw, self.ph, self.pw, self.padded_batch]



def _valid_fraction(size: int, out_size: int, k: int, pad: int) -> float:
    """Of one axis's size x k (pixel, kernel offset) pairs of grad_input, the fraction that meets dy."""
    valid = sum(max(0, min(k - 1, i + pad) - max(0, i + pad - out_size + 1) + 1) for i in range(size))
    return valid / (size * k)


def _used(count: int, block: int) -> float:
    return count / (-(-count // block) * block)


def batch_plan(dtype: DType, n: int, groups: int, c: int, o: int, hw: tuple[int, int], khw: tuple[int, int],
               ohw: tuple[int, int], stride, padding, dilation,
               direct: DirectPlan | None) -> BatchPlan | None:
    """The "N" plan for this grad_input, or None where `direct` (conv_plan.grad_input_plan; None:
    im2col + GEMM) should run.

    Each plan's useful fraction of the multiply-adds it issues: "W" multiplies the zeros of the
    padded columns and rounds rows up to its tiles (padded rows are skipped), "C" multiplies every
    padded tap and rounds the channels up to vectors, "N" rounds the batch up to tiles and the
    channels to blocks of rows. The "N" tap loop runs over o, so a few output channels leave
    it mostly overhead. Measured at 1 thread, thread CPU time, direct / "N": LeNet conv2 (N=64,
    6->16, k5, 14x14) 1.44x, (N=64, 16->32, k3, 7x7) 1.85x (both picked); where "N" loses
    nothing to padding it matches the direct kernels (16->32 k3 pad 1 10x10 1.04x, 64->64 k3
    pad 1 14x14 0.99x, 6->4 k5 28x28 1.02x: not picked), with one output channel 0.92x."""
    lanes = blocking_for(dtype.name).lanes
    if groups != 1 or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1) or n < lanes or o < MIN_TAP_LOOP:
        return None
    plan = BatchPlan(n, c, *hw, o, *ohw, *khw, *padding, lanes)
    rows = _valid_fraction(hw[0], ohw[0], khw[0], padding[0])
    columns = _valid_fraction(hw[1], ohw[1], khw[1], padding[1])
    useful = _used(n, plan.images_per_tile) * _used(c, ROWS)
    if direct is None:
        return plan
    if direct.orientation == "W":
        direct_useful = columns * _used(direct.ow, direct.nv * direct.lanes) * _used(direct.cout, direct.rows)
    else:
        direct_useful = rows * columns * _used(direct.cout, direct.nv * direct.lanes)
    return plan if useful > 1.15 * direct_useful else None


def define_batch_last(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """pointers [dst, src]; meta [tasks, grain, N, O, P, NPAD]: src (N, O, P) to dst (P, O, NPAD),
    zeros for images N..NPAD-1 (a task is one (p, o)): a pixel's dy, channel after channel, is one
    contiguous run for the tap loop."""
    zero = emit.constant(dtype, 0.0)

    def body(b: ir.IRBuilder, pointers, meta, task):
        dst, src = pointers
        n_real, channels, pixels, padded = meta[2:]
        p, o = b.sdiv(task, channels), b.srem(task, channels)
        row = gep(b, dst, b.mul(task, padded))
        column = gep(b, src, b.add(b.mul(o, pixels), p))
        image_stride = b.mul(channels, pixels)
        with for_range(b, I64(0), n_real, name="n") as n:
            b.store(b.load(gep(b, column, b.mul(n, image_stride))), gep(b, row, n))
        with for_range(b, n_real, padded, name="pad") as n:
            b.store(zero, gep(b, row, n))

    return define_plane_kernel(module, name, dtype, 2, 6, body)


def define_taps_major(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """pointers [dst, w]; meta [tasks, grain, O, C, KK]: w (O, C, KK) to dst (KK, O, C) (a task is one
    (o, c)): per tap and o, the weights of consecutive channels are adjacent."""

    def body(b: ir.IRBuilder, pointers, meta, task):
        dst, w = pointers
        channels_out, channels, taps = meta[2:]
        with for_range(b, I64(0), taps, name="tap") as tap:
            b.store(b.load(gep(b, w, b.mul(task, taps), tap)),
                    gep(b, dst, b.mul(tap, b.mul(channels_out, channels)), task))

    return define_plane_kernel(module, name, dtype, 2, 5, body)


def define_grad_input_batch(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """pointers [dx, dy batch-last (define_batch_last), w taps-major (define_taps_major)]; meta [tasks, grain, N, C, H, W, O, OH, OW, KH, KW, PH, PW, NPAD]
    (BatchPlan.kernel_meta). Task = (image block, channel block, h, w), w fastest, so a thread's
    consecutive pixels share most of their dy vectors in cache."""
    lanes = blocking_for(dtype.name).lanes
    element = emit.memory_type(dtype)
    vector = ir.VectorType(element, lanes)

    def body(b: ir.IRBuilder, pointers, meta, task):
        dx, dy, weight = pointers
        N, C, H, W, O, OH, OW, KH, KW, PH, PW, NPAD = meta[2:]
        w = b.srem(task, W)
        rest = b.sdiv(task, W)
        h = b.srem(rest, H)
        rest = b.sdiv(rest, H)
        channel_blocks = b.sdiv(b.add(C, I64(ROWS - 1)), I64(ROWS))
        c0 = b.mul(b.srem(rest, channel_blocks), I64(ROWS))
        n0 = b.mul(b.sdiv(rest, channel_blocks), I64(VECTORS * lanes))
        # Rows past C repeat the last channel's weights (finite, never stored).
        weight_rows = [imin(b, b.add(c0, I64(r)), b.sub(C, I64(1))) for r in range(ROWS)]
        acc = [[entry_alloca(b, vector, f"acc{r}_{v}") for v in range(VECTORS)] for r in range(ROWS)]
        zeros = ir.Constant(vector, [0.0] * lanes)
        for row in acc:
            for slot in row:
                b.store(zeros, slot)
        # Valid kh: 0 <= h + PH - kh < OH; likewise kw.
        kh_lo = b.select(b.icmp_signed(">", b.sub(b.add(h, PH), OH), I64(-1)), b.add(b.sub(b.add(h, PH), OH), I64(1)),
                         I64(0))
        kh_hi = b.add(imin(b, b.sub(KH, I64(1)), b.add(h, PH)), I64(1))
        kw_lo = b.select(b.icmp_signed(">", b.sub(b.add(w, PW), OW), I64(-1)), b.add(b.sub(b.add(w, PW), OW), I64(1)),
                         I64(0))
        kw_hi = b.add(imin(b, b.sub(KW, I64(1)), b.add(w, PW)), I64(1))
        per_tap = b.mul(O, C)
        with for_range(b, kh_lo, kh_hi, name="kh") as kh:
            dy_row = b.mul(b.sub(b.add(h, PH), kh), OW)
            with for_range(b, kw_lo, kw_hi, name="kw") as kw:
                dy_tap = gep(b, dy, b.mul(b.mul(b.add(dy_row, b.sub(b.add(w, PW), kw)), O), NPAD), n0)
                w_tap = gep(b, weight, b.mul(b.add(b.mul(kh, KW), kw), per_tap))
                with for_range(b, I64(0), O, name="o") as o:
                    source = gep(b, dy_tap, b.mul(o, NPAD))
                    images = [b.load(vector_pointer(b, gep(b, source, v * lanes), vector), align=dtype.itemsize)
                              for v in range(VECTORS)]
                    w_o = gep(b, w_tap, b.mul(o, C))
                    for r in range(ROWS):
                        broadcast = splat(b, b.load(gep(b, w_o, weight_rows[r])), lanes)
                        for v in range(VECTORS):
                            b.store(fma(b, broadcast, images[v], b.load(acc[r][v])), acc[r][v])
        # The tile goes through a stack buffer and a loop of scalar stores (unrolled, its 96 guarded
        # stores were a third of a LeNet step's compile time in one kernel).
        images = VECTORS * lanes
        tile = entry_alloca(b, ir.ArrayType(element, ROWS * images), "tile")
        tile.align = 32
        base = b.gep(tile, [ir.IntType(32)(0), ir.IntType(32)(0)])
        for r in range(ROWS):
            for v in range(VECTORS):
                b.store(b.load(acc[r][v]), vector_pointer(b, gep(b, base, (r * VECTORS + v) * lanes), vector),
                        align=dtype.itemsize)
        image_stride = b.mul(b.mul(C, H), W)
        first = gep(b, dx, b.mul(c0, b.mul(H, W)), b.add(b.mul(h, W), w), b.mul(n0, image_stride))
        with for_range(b, I64(0), imin(b, I64(ROWS), b.sub(C, c0)), name="r") as r:
            row = gep(b, first, b.mul(r, b.mul(H, W)))
            with for_range(b, I64(0), imin(b, I64(images), b.sub(N, n0)), name="i") as i:
                b.store(b.load(gep(b, base, b.mul(r, I64(images)), i)), gep(b, row, b.mul(i, image_stride)))

    return define_plane_kernel(module, name, dtype, 3, 14, body)
