"""Process-wide runtime settings: the thread count of generated kernels."""

from __future__ import annotations

from codegen import parallel


def set_num_threads(count: int) -> None:
    """Threads used by compiled kernels (JITGINE_NUM_THREADS sets the default: all cores)."""
    parallel.set_num_threads(count)


def get_num_threads() -> int:
    return parallel.get_num_threads()


parallel.set_num_threads(parallel.default_num_threads())
