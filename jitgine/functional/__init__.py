"""jitgine.functional: every op users call, as in MegEngine's `megengine.functional`."""

from .elementwise import (
    abs, add, astype, broadcast_to, ceil, clip, cos, div, equal, erf, exp, expm1, floor, floor_div,
    greater, greater_equal, isinf, isnan, less, less_equal, log, log1p, logical_and, logical_not,
    logical_or, logical_xor, maximum, minimum, mod, mul, neg, not_equal, pow, relu, round, rsqrt,
    sigmoid, sign, sin, sqrt, square, sub, tanh, true_div, where,
)
from .reduction import argmax, argmin, max, mean, min, norm, std, sum, var
from .shape import (
    arange, concat, detach, expand_dims, eye, flatten, full, full_like, linspace, ones, ones_like, pad, repeat,
    reshape, split, squeeze, stack, tile, transpose, zeros, zeros_like,
)
from .indexing import gather, indexing_one_hot, topk
from . import nn  # noqa: E402  (F.nn: MegEngine's alias module)
from .nn import (  # noqa: E402
    batch_norm, dropout, embedding, gelu, hsigmoid, hswish, layer_norm, leaky_relu, linear, log_softmax, logsigmoid,
    logsumexp, matmul, normalize, one_hot, prelu, relu6, silu, softmax, softplus,
)
from . import loss  # noqa: E402  (F.loss)
from .conv import (  # noqa: E402
    adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, conv1d, conv2d, conv_transpose2d, max_pool2d,
)
