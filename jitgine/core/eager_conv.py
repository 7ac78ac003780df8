"""Eager executors of the window primitives: direct convolution (codegen.conv_direct) for conv2d and
stride-1 grad_input, im2col/col2im + compiled GEMM for the rest, and pooling kernels."""

from __future__ import annotations

import numpy as np

from codegen import conv_batch, conv_direct, conv_operands, conv_plan, kernels
from codegen.conv import define_col2im, define_im2col
from codegen.gemm import compile_gemm
from codegen.parallel import grain
from codegen.pool import define_pool
from ir.types import DType

from .eager import contiguous, dtype_of, empty, register, run_fused, single_op_region

# Scratch (im2col columns) per batch chunk, in elements: about the L3 size, at least one image.
SCRATCH_ELEMENTS = 1 << 21


def _kernel(kind: str, dtype: DType, build):
    return kernels.get_kernel((kind, dtype), lambda module, name: build(module, name, dtype))


def _attrs(attrs: dict) -> tuple:
    return (attrs.get("stride", (1, 1)), attrs.get("padding", (0, 0)), attrs.get("dilation", (1, 1)),
            attrs.get("groups", 1))


def _im2col(col: np.ndarray, x: np.ndarray, khw, ohw, stride, padding, dilation, img_stride: int,
            row_stride: int) -> None:
    n, c, h, w = x.shape
    dtype = dtype_of(x)
    tasks = n * c
    meta = [tasks, grain(tasks, tasks * khw[0] * khw[1] * ohw[0] * ohw[1]), c, h, w, *khw, *ohw, *stride,
            *padding, *dilation, img_stride, row_stride]
    _kernel("im2col", dtype, define_im2col)([col, x], meta)


def _padded(p: conv_plan.DirectPlan, src: np.ndarray) -> np.ndarray:
    """The zero-padded copy of src a direct plan reads (with slack past the end)."""
    padded = np.empty(p.padded_elements(), src.dtype)
    padded[-(p.width + 16):] = 0  # tiles read past the last row: keep those lanes finite
    kind, define = conv_operands.pad_kernel(p)
    _kernel(kind, dtype_of(src), define)([padded, src], p.pad_meta())
    return padded


def _direct(p: conv_plan.DirectPlan, dst: np.ndarray, src: np.ndarray, w: np.ndarray) -> None:
    """Run a direct-convolution plan: padded copy of src, prepared weights, the tap kernel."""
    dtype = dtype_of(src)
    padded = _padded(p, src)
    wmat = w
    if p.weight_elements():
        wmat = np.empty(p.weight_elements(), src.dtype)
        _kernel("weight_scatter", dtype, conv_operands.define_weight_scatter)([wmat, w], p.weight_meta())
    a_off, b_off = p.tables()
    kernel = kernels.get_kernel((p.key(), dtype), lambda module, name: conv_direct.define_direct_conv(
        module, name, dtype, p.orientation, p.nv, p.rows))
    kernel([dst, padded, wmat, a_off, b_off], p.kernel_meta())


def _chunk(n: int, per_image: int) -> int:
    return max(1, min(n, SCRATCH_ELEMENTS // max(per_image, 1)))


@register("conv2d")
def _conv2d(attrs, arrays, types):
    x, w = contiguous(arrays[0]), contiguous(arrays[1])
    stride, padding, dilation, groups = _attrs(attrs)
    y = empty(types[0])
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    if y.size == 0:
        return [y]
    _direct(conv_plan.plan(dtype_of(x), n, groups, cg, o // groups, tuple(x.shape[2:]), (kh, kw), tuple(y.shape[2:]),
                           stride, padding, dilation), y, x, w)
    return [y]


@register("conv2d_grad_input")
def _conv2d_grad_input(attrs, arrays, types):
    dy, w = contiguous(arrays[0]), contiguous(arrays[1])
    stride, padding, dilation, groups = _attrs(attrs)
    dx = empty(types[0])
    n, c, h, wd = dx.shape
    o, cg, kh, kw = w.shape
    oh, ow = dy.shape[2:]
    p, ck, og = oh * ow, cg * kh * kw, o // groups
    if dx.size == 0:
        return [dx]
    direct = conv_plan.grad_input_plan(dtype_of(dy), n, groups, c, o, (h, wd), (kh, kw), (oh, ow),
                                       stride, padding, dilation)
    batch = conv_batch.batch_plan(dtype_of(dy), n, groups, c, o, (h, wd), (kh, kw), (oh, ow), stride, padding,
                                  dilation, direct)
    if batch is not None:
        dy_t = np.empty(batch.batch_last_elements(), dy.dtype)
        _kernel("batch_last", dtype_of(dy), conv_batch.define_batch_last)([dy_t, dy], batch.transpose_meta())
        w_t = np.empty(batch.weight_elements(), w.dtype)
        _kernel("taps_major", dtype_of(w), conv_batch.define_taps_major)([w_t, w], batch.weight_meta())
        _kernel("grad_input_batch", dtype_of(dy), conv_batch.define_grad_input_batch)([dx, dy_t, w_t],
                                                                                      batch.kernel_meta())
        return [dx]
    if direct is not None:
        _direct(direct, dx, dy, w)
        return [dx]
    chunk = _chunk(n, c * kh * kw * p)
    col = np.empty((chunk, c * kh * kw, p), dy.dtype)
    gemm = compile_gemm(dy.dtype.name, True, False)
    w2 = w.reshape(o, ck)
    dtype = dtype_of(dy)
    for n0 in range(0, n, chunk):
        nc = min(chunk, n - n0)
        dy3 = dy[n0:n0 + nc].reshape(nc, o, p)
        for g in range(groups):
            gemm(w2[g * og:(g + 1) * og], dy3[:, g * og:(g + 1) * og], out=col[:nc, g * ck:(g + 1) * ck])
        tasks = nc * c
        meta = [tasks, grain(tasks, col[:nc].size), c, h, wd, kh, kw, oh, ow, *stride, *padding, *dilation,
                c * kh * kw * p, p]
        _kernel("col2im", dtype, define_col2im)([dx[n0:n0 + nc], col], meta)
    return [dx]


@register("conv2d_grad_weight")
def _conv2d_grad_weight(attrs, arrays, types):
    x, dy = contiguous(arrays[0]), contiguous(arrays[1])
    stride, padding, dilation, groups = _attrs(attrs)
    dw = empty(types[0])
    n, c = x.shape[:2]
    o, cg, kh, kw = dw.shape
    oh, ow = dy.shape[2:]
    p, ck, og = oh * ow, cg * kh * kw, o // groups
    if n == 0 or p == 0:
        dw.fill(0)
        return [dw]
    dtype = dtype_of(x)
    direct = conv_plan.grad_weight_plan(dtype, n, groups, c, o, tuple(x.shape[2:]), (kh, kw), (oh, ow), stride,
                                        padding, dilation)
    if direct is not None and direct.orientation == "dWC":
        padded = _padded(direct, x)
        dy_t = np.empty(groups * n * p * direct.cpad, x.dtype)
        pixels = np.empty(n * p, np.int64)
        _kernel("dwc_operands", dtype, conv_operands.define_dwc_operands)([dy_t, dy, pixels], direct.operands_meta())
        kernel = kernels.get_kernel((direct.key(), dtype), lambda module, name: conv_direct.define_grad_weight_channels(
            module, name, dtype, direct.rows, direct.nv))
        kernel([dw, padded, dy_t, pixels, direct.tables()[1]], direct.kernel_meta())
        return [dw]
    if direct is not None:
        padded = _padded(direct, x)
        kernel = kernels.get_kernel((direct.key(), dtype), lambda module, name: conv_direct.define_grad_weight(
            module, name, dtype, direct.rows, direct.nv))
        kernel([dw, padded, dy, direct.tables()[1]], direct.kernel_meta())
        return [dw]
    chunk = _chunk(n, c * kh * kw * p + o * p)
    col = np.empty(c * kh * kw * chunk * p, x.dtype)
    dy_t = np.empty(o * chunk * p, x.dtype)
    partial = np.empty((o, ck), x.dtype) if chunk < n else None
    gemm = compile_gemm(x.dtype.name, False, True)
    dw2 = dw.reshape(o, ck)
    add, add_text = single_op_region("add", (), (dtype_of(x),) * 2)
    for n0 in range(0, n, chunk):
        nc = min(chunk, n - n0)
        rows = nc * p  # the batch chunk folded into the GEMM's K
        _im2col(col, x[n0:n0 + nc], (kh, kw), (oh, ow), stride, padding, dilation, p, rows)
        _im2col(dy_t, dy[n0:n0 + nc], (1, 1), (oh, ow), (1, 1), (0, 0), (1, 1), p, rows)
        cols, dys = col[:c * kh * kw * rows].reshape(-1, rows), dy_t[:o * rows].reshape(o, rows)
        target = dw2 if n0 == 0 else partial
        for g in range(groups):
            gemm(dys[g * og:(g + 1) * og], cols[g * ck:(g + 1) * ck], out=target[g * og:(g + 1) * og])
        if n0:
            run_fused(add, add_text, [dw2], [dw2, partial])
    return [dw]


def _pool(primitive: str, outputs: np.ndarray, inputs: list[np.ndarray], attrs: dict) -> None:
    n, c, h, w = (outputs if primitive.endswith("_grad") else inputs[0]).shape
    oh, ow = (inputs[-1] if primitive.endswith("_grad") else outputs).shape[2:]
    if outputs.size == 0:
        return
    dtype = dtype_of(outputs)
    kh, kw = attrs["kernel"]
    window = (kh, kw, *attrs["stride"]) if tuple(attrs.get("padding", (0, 0))) == (0, 0) else None
    kernel = kernels.get_kernel((primitive, dtype, window),
                                lambda module, name: define_pool(module, name, dtype, primitive, window))
    tasks = n * c
    meta = [tasks, grain(tasks, tasks * oh * ow * kh * kw), h, w, oh, ow, kh, kw, *attrs["stride"],
            *attrs.get("padding", (0, 0))]
    kernel([outputs, *inputs], meta)


def _make_pool(primitive: str):
    def handler(attrs, arrays, types):
        out = empty(types[0])
        _pool(primitive, out, [contiguous(a) for a in arrays], attrs)
        return [out]

    return handler


for _name in ("max_pool2d", "avg_pool2d", "max_pool2d_grad", "avg_pool2d_grad"):
    register(_name)(_make_pool(_name))
