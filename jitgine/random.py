"""Random numbers (as `megengine.random`): `seed`, `uniform`, `normal`, `RNG`.

Two sources, both reseeded by `seed(n)`:

- Tensor randomness (`uniform`, `normal`, `F.dropout`) comes from the
  counter-based `random_uniform` primitive (Philox-4x32-10, ir/ops_random.py).
  An `RNG` keeps its state as an int64 Tensor [key, counter]; every draw applies
  the primitive and writes the advanced state back with `Tensor._reset`. Under
  `@trace` the state is therefore captured as a graph input and updated by an
  `assign`, so each call of a traced step draws fresh numbers - the very ones
  the same calls would draw eagerly from the same state.
- Parameter initialisation draws from one host NumPy Generator (`generator()`).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .core import dispatch
from .core.dispatch import apply
from .tensor import Tensor


def _state_array(seed: int) -> np.ndarray:
    return np.array([int(seed) & (2**64 - 1), 0], np.uint64).view(np.int64)


class RNG:
    """An independent stream of Tensor random numbers; `RNG(seed)` is reproducible."""

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
        self.state = Tensor(_state_array(seed))

    def seed(self, value: int) -> None:
        """Restart the stream from `value` (in place: traced functions keep using this RNG's state)."""
        if dispatch.tracer is not None:
            raise RuntimeError("jitgine.random.seed inside a traced function is not supported; seed before calling it")
        self.state._array = _state_array(value)

    def _uniform01(self, shape: tuple[int, ...], dtype: str) -> Tensor:
        values, next_state = apply("random_uniform", self.state, shape=shape, dtype=dtype)
        self.state._reset(next_state)
        return values

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Iterable[int] | int | None = None,
                dtype: Any = "float32") -> Tensor:
        """Values uniform in [low, high) of shape `size` (a 0-d tensor when None)."""
        from . import functional as F

        u = self._uniform01(_shape(size, "uniform"), _float_dtype(dtype, "uniform"))
        if low == 0.0 and high == 1.0:
            return u
        return F.add(F.mul(u, float(high) - float(low)), float(low))

    def normal(self, mean: float = 0.0, std: float = 1.0, size: Iterable[int] | int | None = None,
               dtype: Any = "float32") -> Tensor:
        """Normal values of shape `size` by Box-Muller: sqrt(-2 log(1 - u1)) cos(2 pi u2)."""
        from . import functional as F

        shape = _shape(size, "normal")
        u = self._uniform01((2,) + shape, _float_dtype(dtype, "normal"))
        u1, u2 = u[0], u[1]
        radius = F.sqrt(F.mul(F.log(F.sub(1.0, u1)), -2.0))  # 1 - u1 is in (0, 1]: the log is finite
        z = F.mul(radius, F.cos(F.mul(u2, 2.0 * np.pi)))
        if mean == 0.0 and std == 1.0:
            return z
        return F.add(F.mul(z, float(std)), float(mean))


def _shape(size: Iterable[int] | int | None, what: str) -> tuple[int, ...]:
    if size is None:
        return ()
    shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
        raise ValueError(f"jitgine.random.{what}: size must be non-negative ints, got {size!r}")
    return tuple(int(d) for d in shape)


def _float_dtype(dtype: Any, what: str) -> str:
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise TypeError(f"jitgine.random.{what}: dtype must be float32 or float64, got {name}")
    return name


_generator = np.random.default_rng()
_default = RNG()


def seed(value: int) -> None:
    """Reseed the Tensor random stream and the generator that module initialisation draws from."""
    global _generator
    _default.seed(value)
    _generator = np.random.default_rng(int(value))


def generator() -> np.random.Generator:
    """The module-level NumPy Generator for parameter initialisation (reseeded by `seed`)."""
    return _generator


def default_rng() -> RNG:
    """The RNG that `uniform`, `normal` and `F.dropout` draw from."""
    return _default


def uniform(low: float = 0.0, high: float = 1.0, size: Iterable[int] | int | None = None) -> Tensor:
    return _default.uniform(low, high, size)


def normal(mean: float = 0.0, std: float = 1.0, size: Iterable[int] | int | None = None) -> Tensor:
    return _default.normal(mean, std, size)


__all__ = ["RNG", "seed", "generator", "default_rng", "uniform", "normal"]
