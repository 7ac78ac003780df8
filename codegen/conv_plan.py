"""Plans for the direct convolution kernels (codegen.conv_direct): the orientation and
register block a convolution runs with, its tasks, and the offset tables and meta arrays the
kernels take.

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

grad_weight: "dW" (stride 1 along W) accumulates vectors along the output rows; "dWC" (at least
a vector of output channels, dy channels-last within L2) runs the "C" micro-kernel over the
batch's pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ir.types import DType

from .gemm_kernel import blocking_for
from .parallel import grain
from .target import host

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
