"""Randomness: `random_uniform`, a counter-based generator (Philox-4x32-10).

    values, next_state = random_uniform(state) {shape=[...], dtype="f32"}

`state` is an i64[2] tensor [key, counter]. The key's low and high 32-bit
halves are Philox's key words; Philox block b of a draw is the cipher of the
128-bit counter (counter + b mod 2^64 as its low two words, 0, 0). Each block
yields four 32-bit words. Element i of the output (row-major) takes, with
V = 4 values per block for f32 and 2 for f64 and chunks of 8 blocks:

    chunk c = i // (8 V), r = i % (8 V), block 8 c + r % 8, value r // 8
    f32: word[value] >> 8, times 2^-24                 (24 random bits)
    f64: (word[2 value + 1] << 21 | word[2 value] >> 11), times 2^-53

so every value is exactly representable and lies in [0, 1). (Eight
consecutive elements come from eight consecutive blocks: one vector register
of counters computes them, and stores need no shuffles.) `next_state` is
[key, counter + 8 * number of chunks]: the next draw starts on fresh blocks.

The op is a pure function of its operand, so a traced step that threads the
state through `assign` draws fresh numbers every call and reproduces eager
execution exactly. It has no gradient.
"""

from __future__ import annotations

import numpy as np

from .ops import _shape_attr, check, register
from .types import DType, TensorType

STATE_TYPE = TensorType((2,), DType.int64)
LANES = 8  # blocks per chunk (one vector of counters)
PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10


def values_per_block(dtype: DType) -> int:
    return 4 if dtype is DType.float32 else 2


def chunks(size: int, dtype: DType) -> int:
    """Number of 8-block chunks a draw of `size` values uses (the counter advances by 8 per chunk)."""
    per_chunk = LANES * values_per_block(dtype)
    return -(-size // per_chunk)


@register("random_uniform", "random", 1, required=("shape", "dtype"))
def _random_uniform(types, shape, dtype):
    (state,) = types
    shape = _shape_attr(shape, "random_uniform", types)
    try:
        dtype = DType.parse(str(dtype))
    except ValueError:
        dtype = None
    check(dtype is not None and dtype.is_float, "random_uniform", types,
          "dtype must be 'float32' or 'float64' (uniform floats in [0, 1))")
    check(state == STATE_TYPE, "random_uniform", types,
          "the state must be an int64 tensor of shape (2,) holding [key, counter] "
          "(jitgine.random keeps one; make one with np.array([seed, 0], np.int64))")
    return [TensorType(shape, dtype), STATE_TYPE]


# ---------------------------------------------------------------- NumPy meaning

def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = ROUNDS) -> np.ndarray:
    """Philox-4x32 (Salmon et al. 2011): counter (..., 4) and key (2,) uint32 -> (..., 4) uint32 words."""
    c = [counter[..., i].astype(np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    mask = np.uint64(0xFFFFFFFF)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + np.uint64(PHILOX_W[0])) & mask, (k1 + np.uint64(PHILOX_W[1])) & mask
        p0 = c[0] * np.uint64(PHILOX_M[0])
        p1 = c[2] * np.uint64(PHILOX_M[1])
        hi0, lo0 = p0 >> np.uint64(32), p0 & mask
        hi1, lo1 = p1 >> np.uint64(32), p1 & mask
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return np.stack(c, axis=-1).astype(np.uint32)


def uniform_reference(state: np.ndarray, shape: tuple[int, ...], dtype: DType) -> tuple[np.ndarray, np.ndarray]:
    """The values and next state `random_uniform` defines (see the module doc)."""
    key_word, counter = (int(v) & (2**64 - 1) for v in np.asarray(state, np.int64))
    key = np.array([key_word & 0xFFFFFFFF, key_word >> 32], np.uint32)
    size = int(np.prod(shape, dtype=np.int64))
    n_chunks = chunks(size, dtype)
    blocks = (np.uint64(counter) + np.arange(n_chunks * LANES, dtype=np.uint64))  # wraps mod 2^64
    counters = np.zeros((blocks.size, 4), np.uint32)
    counters[:, 0] = (blocks & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    counters[:, 1] = (blocks >> np.uint64(32)).astype(np.uint32)
    words = philox4x32(counters, key).reshape(n_chunks, LANES, 4).astype(np.uint64)
    if dtype is DType.float32:
        values = (words >> np.uint64(8)).astype(np.float32) * np.float32(2.0**-24)
    else:
        bits = (words[..., 1::2] << np.uint64(21)) | (words[..., 0::2] >> np.uint64(11))
        values = bits.astype(np.float64) * 2.0**-53
    # (chunk, lane, value) -> element order (chunk, value, lane)
    flat = values.transpose(0, 2, 1).reshape(-1)[:size]
    next_counter = (counter + LANES * n_chunks) & (2**64 - 1)
    next_state = np.array([key_word, next_counter], np.uint64).view(np.int64)
    return flat.reshape(shape), next_state


def _interpret_random_uniform(node, args: list[np.ndarray]) -> list[np.ndarray]:
    values, next_state = uniform_reference(args[0], node.attr("shape"), DType.parse(str(node.attr("dtype"))))
    return [values, next_state]


def _register_interpretation() -> None:
    from .interpret import EXTRA

    EXTRA["random_uniform"] = _interpret_random_uniform


_register_interpretation()
