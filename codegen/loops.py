"""Loop-building helpers shared by every kernel generator."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from llvmlite import ir

I64 = ir.IntType(64)


@contextmanager
def for_range(builder: ir.IRBuilder, start: ir.Value, stop: ir.Value, step: int | ir.Value = 1,
              name: str = "i") -> Iterator[ir.Value]:
    """`for i in range(start, stop, step)` (step > 0): the body is emitted inside the `with`.

    The loop is guarded (a zero-trip loop never runs its body) and leaves the
    builder after the loop when the `with` block ends.
    """
    if isinstance(start, int):
        start = I64(start)
    if isinstance(stop, int):
        stop = I64(stop)
    if isinstance(step, int):
        step = I64(step)
    function = builder.function
    header = builder.block
    body = function.append_basic_block(f"{name}.body")
    latch_exit = function.append_basic_block(f"{name}.exit")
    builder.cbranch(builder.icmp_signed("<", start, stop), body, latch_exit)
    builder.position_at_end(body)
    index = builder.phi(I64, name=name)
    index.add_incoming(start, header)
    yield index
    following = builder.add(index, step, name=f"{name}.next")
    index.add_incoming(following, builder.block)
    builder.cbranch(builder.icmp_signed("<", following, stop), body, latch_exit)
    builder.position_at_end(latch_exit)
