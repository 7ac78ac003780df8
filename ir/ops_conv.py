"""Window primitives: 2-D convolution and pooling over NCHW tensors, and their gradients.

    conv2d(x, w)                      x (N, C, H, W), w (O, C/groups, KH, KW) -> y (N, O, OH, OW)
    conv2d_grad_input(dy, w)          -> dx (N, C, H, W)          attrs + input_hw=(H, W)
    conv2d_grad_weight(x, dy)         -> dw (O, C/groups, KH, KW) attrs + kernel_hw=(KH, KW)
    max_pool2d(x) / avg_pool2d(x)     -> y (N, C, OH, OW)
    max_pool2d_grad(x, dy)            -> dx: dy goes to the first maximum of each window (row-major)
    avg_pool2d_grad(dy)               -> dx                        attrs + input_hw=(H, W)

conv2d is a cross-correlation (as PyTorch/MegEngine) with zero padding:
OH = (H + 2 ph - dh (KH - 1) - 1) // sh + 1. Pooling windows use
OH = (H + 2 ph - kh) // sh + 1 (floor mode), padding at most half the window.
max pooling pads with -inf; avg pooling divides by kh * kw, the padded
zeros included (PyTorch's default count_include_pad=True; MegEngine's default
mode excludes padding, which only differs for windows overlapping the border).
Declared here so the window family grows in one file; ir/ops.py imports it.
The NumPy meaning lives in `ir.interpret.EXTRA` (reference loops, float64 accumulation).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .ops import check, register
from .types import TensorType

CONV_ATTRS = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}
POOL_ATTRS = {"padding": (0, 0)}


def _pair(op: str, types: Sequence[TensorType], name: str, value: Any, low: int) -> tuple[int, int]:
    check(isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) and v >= low for v in value),
          op, types, f"{name} must be a pair of ints >= {low}, got {value!r}")
    return value


def _float_nchw(op: str, types: Sequence[TensorType], *roles: str) -> None:
    for t, role in zip(types, roles):
        check(t.rank == 4, op, types, f"{role} must be 4-D NCHW, got shape {t.shape}; reshape it first")
        check(t.dtype.is_float, op, types, f"needs float operands, {role} is {t.dtype}; cast with astype('float32')")
    check(all(t.dtype == types[0].dtype for t in types), op, types,
          "operands must have one dtype; cast them first (astype)")


def conv_out_hw(op: str, types: Sequence[TensorType], hw: tuple[int, int], khw: tuple[int, int],
                stride, padding, dilation) -> tuple[int, int]:
    stride = _pair(op, types, "stride", stride, 1)
    padding = _pair(op, types, "padding", padding, 0)
    dilation = _pair(op, types, "dilation", dilation, 1)
    out = []
    for size, k, s, p, d in zip(hw, khw, stride, padding, dilation):
        span = d * (k - 1) + 1
        check(size + 2 * p >= span, op, types,
              f"the dilated kernel ({span}) is larger than the padded input ({size} + 2*{p}); "
              "use a smaller kernel/dilation or more padding")
        out.append((size + 2 * p - span) // s + 1)
    return out[0], out[1]


def _groups(op: str, types, groups: Any, c: int, o: int) -> int:
    check(isinstance(groups, int) and groups >= 1, op, types, f"groups must be an int >= 1, got {groups!r}")
    check(c % groups == 0 and o % groups == 0, op, types,
          f"in channels {c} and out channels {o} must both be divisible by groups={groups}")
    return groups


@register("conv2d", "window", 2, optional=CONV_ATTRS)
def _conv2d(types, stride, padding, dilation, groups):
    _float_nchw("conv2d", types, "x", "w")
    x, w = types
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    check(kh >= 1 and kw >= 1 and o >= 1, "conv2d", types, f"the weight {w.shape} needs O, KH, KW >= 1")
    _groups("conv2d", types, groups, c, o)
    check(cg * groups == c and c >= 1, "conv2d", types,
          f"the weight has {cg} input channels per group but x has {c} channels in {groups} group(s); "
          f"the weight must be (O, C/groups, KH, KW) = ({o}, {c // groups if c % groups == 0 else '?'}, KH, KW)")
    oh, ow = conv_out_hw("conv2d", types, (h, wd), (kh, kw), stride, padding, dilation)
    return [TensorType((n, o, oh, ow), x.dtype)]


@register("conv2d_grad_input", "window", 2, required=("input_hw",), optional=CONV_ATTRS)
def _conv2d_grad_input(types, input_hw, stride, padding, dilation, groups):
    _float_nchw("conv2d_grad_input", types, "dy", "w")
    dy, w = types
    o, cg, kh, kw = w.shape
    hw = _pair("conv2d_grad_input", types, "input_hw", input_hw, 1)
    _groups("conv2d_grad_input", types, groups, cg * groups, o)
    check(dy.shape[1] == o, "conv2d_grad_input", types, f"dy has {dy.shape[1]} channels but the weight has O={o}")
    ohw = conv_out_hw("conv2d_grad_input", types, hw, (kh, kw), stride, padding, dilation)
    check(ohw == dy.shape[2:], "conv2d_grad_input", types,
          f"dy's spatial size {dy.shape[2:]} is not conv2d's output size {ohw} for input_hw={hw}")
    return [TensorType((dy.shape[0], cg * groups) + hw, dy.dtype)]


@register("conv2d_grad_weight", "window", 2, required=("kernel_hw",), optional=CONV_ATTRS)
def _conv2d_grad_weight(types, kernel_hw, stride, padding, dilation, groups):
    _float_nchw("conv2d_grad_weight", types, "x", "dy")
    x, dy = types
    khw = _pair("conv2d_grad_weight", types, "kernel_hw", kernel_hw, 1)
    n, c, h, wd = x.shape
    o = dy.shape[1]
    _groups("conv2d_grad_weight", types, groups, c, o)
    check(dy.shape[0] == n and c >= 1, "conv2d_grad_weight", types,
          f"x and dy must have one batch size ({n} vs {dy.shape[0]}) and x at least one channel")
    ohw = conv_out_hw("conv2d_grad_weight", types, (h, wd), khw, stride, padding, dilation)
    check(ohw == dy.shape[2:], "conv2d_grad_weight", types,
          f"dy's spatial size {dy.shape[2:]} is not conv2d's output size {ohw} for kernel_hw={khw}")
    return [TensorType((o, c // groups) + khw, x.dtype)]


def pool_out_hw(op: str, types, hw: tuple[int, int], kernel, stride, padding) -> tuple[int, int]:
    kernel = _pair(op, types, "kernel", kernel, 1)
    stride = _pair(op, types, "stride", stride, 1)
    padding = _pair(op, types, "padding", padding, 0)
    out = []
    for size, k, s, p in zip(hw, kernel, stride, padding):
        check(2 * p <= k, op, types, f"padding {p} must be at most half the window {k} (every window needs an input)")
        check(size + 2 * p >= k, op, types, f"the window {k} is larger than the padded input ({size} + 2*{p})")
        out.append((size + 2 * p - k) // s + 1)
    return out[0], out[1]


def _pool(op: str) -> None:
    @register(op, "window", 1, required=("kernel", "stride"), optional=POOL_ATTRS)
    def rule(types, kernel, stride, padding):
        _float_nchw(op, types, "x")
        (x,) = types
        return [x.with_shape(x.shape[:2] + pool_out_hw(op, types, x.shape[2:], kernel, stride, padding))]


_pool("max_pool2d")
_pool("avg_pool2d")


@register("max_pool2d_grad", "window", 2, required=("kernel", "stride"), optional=POOL_ATTRS)
def _max_pool_grad(types, kernel, stride, padding):
    _float_nchw("max_pool2d_grad", types, "x", "dy")
    x, dy = types
    ohw = pool_out_hw("max_pool2d_grad", types, x.shape[2:], kernel, stride, padding)
    check(dy.shape == x.shape[:2] + ohw, "max_pool2d_grad", types,
          f"dy must have max_pool2d's output shape {x.shape[:2] + ohw}")
    return [x]


@register("avg_pool2d_grad", "window", 1, required=("kernel", "stride", "input_hw"), optional=POOL_ATTRS)
def _avg_pool_grad(types, kernel, input_hw, stride, padding):
    _float_nchw("avg_pool2d_grad", types, "dy")
    (dy,) = types
    hw = _pair("avg_pool2d_grad", types, "input_hw", input_hw, 1)
    ohw = pool_out_hw("avg_pool2d_grad", types, hw, kernel, stride, padding)
    check(dy.shape[2:] == ohw, "avg_pool2d_grad", types,
          f"dy's spatial size {dy.shape[2:]} is not avg_pool2d's output size {ohw} for input_hw={hw}")
    return [dy.with_shape(dy.shape[:2] + hw)]


# ----------------------------------------------------------------------------- NumPy meaning

def _windows(xp: np.ndarray, khw, stride, dilation, ohw):
    """Yield (kh, kw, index) where xp[index] is the (.., OH, OW) slice tap (kh, kw) reads."""
    for i in range(khw[0]):
        for j in range(khw[1]):
            rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (ohw[0] - 1) + 1, stride[0])
            cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (ohw[1] - 1) + 1, stride[1])
            yield i, j, (Ellipsis, rows, cols)


def _pad(x: np.ndarray, padding, value: float = 0.0) -> np.ndarray:
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, *a.shape[2:])


def _conv_attrs(attrs: dict) -> tuple:
    full = {**CONV_ATTRS, **attrs}
    return full["stride"], full["padding"], full["dilation"], full["groups"]


def _interpret_conv2d(node, args):
    x, w = (a.astype(np.float64) for a in args)
    stride, padding, dilation, groups = _conv_attrs(node.attr_dict)
    n, o, oh, ow = node.result.shape
    xg = _grouped(_pad(x, padding), groups)  # (N, G, Cg, Hp, Wp)
    wg = w.reshape(groups, o // groups, *w.shape[1:])  # (G, Og, Cg, KH, KW)
    y = np.zeros((n, groups, o // groups, oh, ow))
    for i, j, index in _windows(xg, w.shape[2:], stride, dilation, (oh, ow)):
        y += np.einsum("ngcij,goc->ngoij", xg[index], wg[:, :, :, i, j])
    return [y.reshape(n, o, oh, ow).astype(args[0].dtype)]


def _interpret_conv2d_grad_input(node, args):
    dy, w = (a.astype(np.float64) for a in args)
    stride, padding, dilation, groups = _conv_attrs(node.attr_dict)
    n, c, h, wd = node.result.shape
    o = w.shape[0]
    dxp = np.zeros((n, groups, c // groups, h + 2 * padding[0], wd + 2 * padding[1]))
    dyg = _grouped(dy, groups)
    wg = w.reshape(groups, o // groups, *w.shape[1:])
    for i, j, index in _windows(dxp, w.shape[2:], stride, dilation, dy.shape[2:]):
        dxp[index] += np.einsum("ngoij,goc->ngcij", dyg, wg[:, :, :, i, j])
    dx = dxp.reshape(n, c, *dxp.shape[3:])[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + wd]
    return [np.ascontiguousarray(dx).astype(args[0].dtype)]


def _interpret_conv2d_grad_weight(node, args):
    x, dy = (a.astype(np.float64) for a in args)
    stride, padding, dilation, groups = _conv_attrs(node.attr_dict)
    o, cg, kh, kw = node.result.shape
    xg = _grouped(_pad(x, padding), groups)
    dyg = _grouped(dy, groups)
    dw = np.zeros((groups, o // groups, cg, kh, kw))
    for i, j, index in _windows(xg, (kh, kw), stride, dilation, dy.shape[2:]):
        dw[:, :, :, i, j] = np.einsum("ngoij,ngcij->goc", dyg, xg[index])
    return [dw.reshape(o, cg, kh, kw).astype(args[0].dtype)]


def _pool_attrs(attrs: dict) -> tuple:
    return attrs["kernel"], attrs["stride"], attrs.get("padding", (0, 0))


def _interpret_pool(node, args):
    x = args[0].astype(np.float64)
    kernel, stride, padding = _pool_attrs(node.attr_dict)
    ohw = node.result.shape[2:]
    is_max = node.op == "max_pool2d"
    xp = _pad(x, padding, -np.inf if is_max else 0.0)
    taps = np.stack([xp[index] for _, _, index in _windows(xp, kernel, stride, (1, 1), ohw)])
    y = taps.max(axis=0) if is_max else taps.sum(axis=0) / (kernel[0] * kernel[1])
    return [y.astype(args[0].dtype)]


def _scatter_back(shape, dy: np.ndarray, kernel, stride, padding, weight) -> np.ndarray:
    """dx of a window op whose tap k contributes weight(k) * dy to the input it reads."""
    n, c, h, w = shape
    dxp = np.zeros((n, c, h + 2 * padding[0], w + 2 * padding[1]))
    for k, (_, _, index) in enumerate(_windows(dxp, kernel, stride, (1, 1), dy.shape[2:])):
        dxp[index] += weight(k) * dy
    return np.ascontiguousarray(dxp[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w])


def _interpret_max_pool_grad(node, args):
    x, dy = (a.astype(np.float64) for a in args)
    kernel, stride, padding = _pool_attrs(node.attr_dict)
    xp = _pad(x, padding, -np.inf)
    first = np.stack([xp[index] for _, _, index in _windows(xp, kernel, stride, (1, 1), dy.shape[2:])]).argmax(axis=0)
    return [_scatter_back(x.shape, dy, kernel, stride, padding, lambda k: first == k).astype(args[0].dtype)]


def _interpret_avg_pool_grad(node, args):
    dy = args[0].astype(np.float64)
    kernel, stride, padding = _pool_attrs(node.attr_dict)
    scale = 1.0 / (kernel[0] * kernel[1])
    dx = _scatter_back(node.result.shape, dy, kernel, stride, padding, lambda k: scale)
    return [dx.astype(args[0].dtype)]


def _register_interpretation() -> None:
    from .interpret import EXTRA

    EXTRA.update({
        "conv2d": _interpret_conv2d, "conv2d_grad_input": _interpret_conv2d_grad_input,
        "conv2d_grad_weight": _interpret_conv2d_grad_weight, "max_pool2d": _interpret_pool,
        "avg_pool2d": _interpret_pool, "max_pool2d_grad": _interpret_max_pool_grad,
        "avg_pool2d_grad": _interpret_avg_pool_grad,
    })


_register_interpretation()
