"""Operand preparation for the direct convolution (codegen.conv_direct): the zero-padded copy of
the source a plan reads (planes, or channels last for the "C" orientation), the weights scattered
into the order of the plan's tap tables, and a "dWC" plan's channels-last dy with its pixel offsets.
"""

from __future__ import annotations

from typing import Callable

from llvmlite import ir

from ir.types import DType

from . import emit
from .conv import define_plane_kernel
from .conv_plan import DirectPlan, lanes_of
from .emit import I64
from .gemm_kernel import entry_alloca, gep, vector_pointer
from .loops import for_range


def _copy(b: ir.IRBuilder, dst: ir.Value, src: ir.Value | None, count: ir.Value, lanes: int) -> None:
    """dst[:count] = src[:count] (zeros when src is None): whole vectors, then scalars."""
    T = dst.type.pointee
    V = ir.VectorType(T, lanes)
    whole = b.mul(b.sdiv(count, I64(lanes)), I64(lanes))
    with for_range(b, I64(0), whole, lanes, name="vcopy") as j:
        value = ir.Constant(V, [0.0] * lanes) if src is None else \
            b.load(vector_pointer(b, gep(b, src, j), V), align=4)
        b.store(value, vector_pointer(b, gep(b, dst, j), V), align=4)
    with for_range(b, whole, count, name="scopy") as j:
        b.store(ir.Constant(T, 0.0) if src is None else b.load(gep(b, src, j)), gep(b, dst, j))


def define_pad(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """pointers [dst, src]; meta [planes, grain, H, W, PH, PW]: dst plane t (H+2PH rows of W+2PW) is
    src plane t (H x W) surrounded by zeros."""
    lanes = lanes_of(dtype)

    def body(b, pointers, meta, task):
        dst, src = pointers
        H, W, PH, PW = meta[2:]
        wp = b.add(W, b.mul(PW, I64(2)))
        out = gep(b, dst, b.mul(task, b.mul(wp, b.add(H, b.mul(PH, I64(2))))))
        plane = gep(b, src, b.mul(task, b.mul(H, W)))
        band = b.mul(PH, wp)
        _copy(b, out, None, band, lanes)
        with for_range(b, I64(0), H, name="row") as row:
            start = gep(b, out, band, b.mul(row, wp))
            _copy(b, start, None, PW, lanes)
            _copy(b, gep(b, start, PW), gep(b, plane, b.mul(row, W)), W, lanes)
            _copy(b, gep(b, start, PW, W), None, PW, lanes)
        _copy(b, gep(b, out, band, b.mul(H, wp)), None, band, lanes)

    return define_plane_kernel(module, name, dtype, 2, 6, body)


def define_pad_channels_last(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """pointers [dst, src]; meta [N*(H+2PH), grain, C, H, W, PH, PW]: task t is row t of dst, the
    zero-padded src (N, C, H, W) stored as (N, H+2PH, W+2PW, C)."""
    lanes = lanes_of(dtype)

    def body(b, pointers, meta, task):
        dst, src = pointers
        C, H, W, PH, PW = meta[2:]
        hp = b.add(H, b.mul(PH, I64(2)))
        wp = b.add(W, b.mul(PW, I64(2)))
        n, row = b.sdiv(task, hp), b.srem(task, hp)
        out = gep(b, dst, b.mul(task, b.mul(wp, C)))
        h = b.sub(row, PH)
        inside = b.and_(b.icmp_signed(">=", h, I64(0)), b.icmp_signed("<", h, H))
        with b.if_else(inside) as (copy, zero):
            with copy:
                border = b.mul(PW, C)
                _copy(b, out, None, border, lanes)
                _copy(b, gep(b, out, b.sub(b.mul(wp, C), border)), None, border, lanes)
                image = gep(b, src, b.mul(n, b.mul(C, b.mul(H, W))), b.mul(h, W))
                # Channel by channel: read a source row in order, write every C-th element of the
                # output row (which stays in L1 while the channels fill it in).
                with for_range(b, I64(0), C, name="c") as c:
                    source = gep(b, image, b.mul(c, b.mul(H, W)))
                    target = gep(b, out, border, c)
                    with for_range(b, I64(0), W, name="w") as w:
                        b.store(b.load(gep(b, source, w)), gep(b, target, b.mul(w, C)))
            with zero:
                _copy(b, out, None, b.mul(wp, C), lanes)

    return define_plane_kernel(module, name, dtype, 2, 7, body)


def pad_kernel(plan: DirectPlan) -> tuple[str, Callable[[ir.Module, str, DType], ir.Function]]:
    """(kind, definer) of the kernel making `plan`'s padded source from pad_meta."""
    return ("pad_channels_last", define_pad_channels_last) if plan.channels_last else ("pad", define_pad)


def define_weight_scatter(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """pointers [dst, w]; meta [1, 1, G, OG, CG, KH, KW, total, base, sg, so, sc, skh, skw] (DirectPlan.weight_meta):
    zero dst[:total], then dst[base + g*sg + o*so + c*sc + kh*skh + kw*skw] = w[g, o, c, kh, kw]."""

    def body(b, pointers, meta, task):
        dst, w = pointers
        G, OG, CG, KH, KW, total, base, sg, so, sc, skh, skw = meta[2:]
        with for_range(b, I64(0), total, name="z") as i:
            b.store(emit.constant(dtype, 0.0), b.gep(dst, [i]))
        src = entry_alloca(b, I64, "src")
        b.store(I64(0), src)
        with for_range(b, I64(0), G, name="g") as g:
            with for_range(b, I64(0), OG, name="o") as o:
                with for_range(b, I64(0), CG, name="c") as c:
                    corner = b.add(base, b.add(b.mul(g, sg), b.add(b.mul(o, so), b.mul(c, sc))))
                    with for_range(b, I64(0), KH, name="kh") as kh:
                        with for_range(b, I64(0), KW, name="kw") as kw:
                            at = b.add(corner, b.add(b.mul(kh, skh), b.mul(kw, skw)))
                            index = b.load(src)
                            b.store(b.load(b.gep(w, [index])), b.gep(dst, [at]))
                            b.store(b.add(index, I64(1)), src)

    return define_plane_kernel(module, name, dtype, 2, 14, body)


def define_dwc_operands(module: ir.Module, name: str, dtype: DType) -> ir.Function:
    """A "dWC" plan's operands. pointers [dst, dy, pixel_off]; meta (DirectPlan.operands_meta)
    [tasks = G*N, grain, N, C, P, cpad, G, OW, row_step, SW, image]: dst[g][n*P + p][o] =
    dy[n, g*C + o, p] for o < C, zero for C <= o < cpad (dy channels-last), and, by group 0's
    tasks, pixel_off[n*P + p] = n*image + oh*row_step + ow*SW, where pixel p = (oh, ow) reads the
    padded source (computed here rather than stored in the module: the table grows with the batch)."""
    zero = emit.constant(dtype, 0.0)

    def body(b, pointers, meta, task):
        dst, dy, pixel_off = pointers
        pixel_off = b.bitcast(pixel_off, I64.as_pointer())
        N, C, P, cpad, G, OW, row_step, SW, image = meta[2:]
        g, n = b.sdiv(task, N), b.srem(task, N)
        source = gep(b, dy, b.mul(b.add(b.mul(n, b.mul(G, C)), b.mul(g, C)), P))
        out = gep(b, dst, b.mul(task, b.mul(P, cpad)))
        with for_range(b, I64(0), P, name="p") as p:
            row = gep(b, out, b.mul(p, cpad))
            with for_range(b, I64(0), C, name="o") as o:
                b.store(b.load(gep(b, source, b.mul(o, P), p)), gep(b, row, o))
            with for_range(b, C, cpad, name="z") as o:
                b.store(zero, gep(b, row, o))
        with b.if_then(b.icmp_signed("==", g, I64(0))):
            with for_range(b, I64(0), b.sdiv(P, OW), name="oh") as oh:
                first = b.add(b.mul(n, image), b.mul(oh, row_step))
                offsets = b.gep(pixel_off, [b.add(b.mul(n, P), b.mul(oh, OW))])
                with for_range(b, I64(0), OW, name="ow") as ow:
                    b.store(b.add(first, b.mul(ow, SW)), b.gep(offsets, [ow]))

    return define_plane_kernel(module, name, dtype, 3, 11, body)
