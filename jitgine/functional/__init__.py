"""jitgine.functional: every op users call, as in MegEngine's `megengine.functional`."""

from .elementwise import (
    abs, add, astype, broadcast_to, ceil, clip, cos, div, equal, erf, exp, expm1, floor, floor_div,
    greater, greater_equal, isinf, isnan, less, less_equal, log, log1p, logical_and, logical_not,
    logical_or, logical_xor, maximum, minimum, mod, mul, neg, not_equal, pow, relu, round, rsqrt,
    sigmoid, sign, sin, sqrt, square, sub, tanh, true_div, where,
)
from .reduction import argmax, argmin, max, mean, min, norm, std, sum, var
from .shape import (
    arange, concat, detach, expand_dims, flatten, full, full_like, ones, ones_like, pad, reshape,
    split, squeeze, stack, transpose, zeros, zeros_like,
)
from . import nn  # noqa: E402  (F.nn: MegEngine's alias module)
from .nn import (  # noqa: E402
    batch_norm, dropout, gelu, hsigmoid, leaky_relu, linear, log_softmax, logsumexp, matmul, one_hot, relu6, silu, softmax, softplus,
)
from . import loss  # noqa: E402  (F.loss)
from .conv import avg_pool2d, conv2d, max_pool2d  # noqa: E402
