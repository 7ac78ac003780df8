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

The orientations ("W", "C") and the grad_weight plans ("dW", "dWC"), and
which one a shape gets, are codegen.conv_plan's.

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

from llvmlite import ir

from ir.types import DType

from .conv import define_plane_kernel
from .conv_plan import GW_CHUNK
from .emit import I64
from .gemm_kernel import (
    Epilogue, EpilogueIndex, blocking_for, define_once, entry_alloca, fma, gep, imin, new_function, splat,
    vector_pointer,
)
from .lanes import masked_load, masked_store, scatter
from .loops import for_range

I32 = ir.IntType(32)
UNROLL = 4


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
