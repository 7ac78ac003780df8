"""Compiling the parts of a split module (codegen.split) on several cores.

llvmlite holds one lock around every LLVM call, so threads cannot compile in
parallel; processes can. Each part but the first goes to a forked child
process, which inherits the module and an initialised LLVM, prints its part,
compiles it (or finds it in the disk cache), writes the object file to a pipe
and exits without running any Python clean-up, while this process does the
same for the first part. A child that fails is not trusted: its part is
compiled again here, so a fork problem costs time, never correctness.

`JITGINE_COMPILE_JOBS` sets how many parts run at once (default: the cores
this process may use); 1, or a platform without fork, compiles everything in
this process.
"""

from __future__ import annotations

import os
import threading
from typing import Callable

from . import cache, target
from .parallel import count_setting

_STATUS_OK = b"\x00"


def compile_jobs() -> int:
    """How many compilations may run at once: JITGINE_COMPILE_JOBS, else every usable core."""
    return count_setting("JITGINE_COMPILE_JOBS")


def _can_fork() -> bool:
    # Forking while another Python thread may hold llvmlite's lock could hang the child.
    return hasattr(os, "fork") and threading.active_count() == 1


def _start(work: Callable[[], bytes]) -> tuple[int, int]:
    """Fork a child that runs `work` (print a part, compile it); (pid, the pipe's read end)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compile, report, exit without clean-up
        status = 1
        try:
            os.close(read_end)
            payload = _STATUS_OK + work()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_end, view):]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def _finish(pid: int, read_end: int) -> bytes | None:
    """The child's object file, or None if it failed."""
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(1 << 20):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if status != 0 or not data.startswith(_STATUS_OK) or len(data) == 1:
        return None
    return data[1:]


def compile_parts(count: int, text_of: Callable[[int], str],
                  compile: Callable[[str], bytes] = target.object_code) -> list[bytes]:
    """The object file of each of `count` parts, part i's LLVM IR text being `text_of(i)`: each
    part is printed, looked up in the disk cache and compiled if missing in one process, part 0
    in this one, the others in forked children (up to `compile_jobs()` at once). A failed child's
    part is redone here; an exception there propagates. (Cache statistics count this process's
    parts only.)"""
    children: dict[int, tuple[int, int]] = {}
    if count > 1 and compile_jobs() > 1 and _can_fork():
        target.target_machine()  # initialise LLVM once, before forking, for every child
        for i in range(1, min(count, compile_jobs())):
            children[i] = _start(lambda i=i: cache.cached_object(text_of(i), compile))
    objects: list[bytes | None] = [None] * count
    for i in range(count):
        if i not in children:
            objects[i] = cache.cached_object(text_of(i), compile)
    for i, (pid, read_end) in children.items():
        objects[i] = _finish(pid, read_end) or cache.cached_object(text_of(i), compile)
    return objects


def object_codes(texts: list[str], compile: Callable[[str], bytes] = target.object_code) -> list[bytes]:
    """The object file of each LLVM IR text (see `compile_parts`)."""
    return compile_parts(len(texts), texts.__getitem__, compile)


__all__ = ["compile_jobs", "compile_parts", "object_codes"]
