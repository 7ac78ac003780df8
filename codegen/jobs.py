"""Compiling several LLVM IR texts (the parts of a split module) on several cores.

llvmlite holds one lock around every LLVM call, so threads cannot compile in
parallel; processes can. The parts that are not in the disk cache are
compiled one per forked child process (the child inherits the text and an
initialised LLVM, compiles, writes the object file to a pipe and exits
without running any Python clean-up) while this process compiles the first
one itself. A child that fails is not trusted: its part is compiled again
here, so a fork problem costs time, never correctness.

`JITGINE_COMPILE_JOBS` sets how many parts run at once (default: the cores
this process may use); 1, or a platform without fork, compiles everything in
this process.
"""

from __future__ import annotations

import os
import threading
from typing import Callable

from . import cache, target

_STATUS_OK = b"\x00"


def compile_jobs() -> int:
    """How many compilations may run at once."""
    configured = os.environ.get("JITGINE_COMPILE_JOBS")
    if configured:
        try:
            jobs = int(configured)
        except ValueError:
            raise ValueError(f"JITGINE_COMPILE_JOBS must be a positive integer, got {configured!r}") from None
        if jobs < 1:
            raise ValueError(f"JITGINE_COMPILE_JOBS must be a positive integer, got {configured!r}")
        return jobs
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _can_fork() -> bool:
    # Forking while another Python thread may hold llvmlite's lock could hang the child.
    return hasattr(os, "fork") and threading.active_count() == 1


def _start(llvm_ir: str, compile: Callable[[str], bytes]) -> tuple[int, int]:
    """Fork a child that compiles `llvm_ir`; (pid, the pipe's read end)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compile, report, exit without clean-up
        status = 1
        try:
            os.close(read_end)
            payload = _STATUS_OK + compile(llvm_ir)
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


def object_codes(texts: list[str], compile: Callable[[str], bytes] = target.object_code) -> list[bytes]:
    """The object file of each LLVM IR text: from the disk cache, else compiled (in parallel when
    there are several to compile and more than one job), then stored."""
    objects = [cache.load_object(text) for text in texts]
    missing = [i for i, obj in enumerate(objects) if obj is None]
    children: dict[int, tuple[int, int]] = {}
    if len(missing) > 1 and compile_jobs() > 1 and _can_fork():
        target.target_machine()  # initialise LLVM once, before forking, for every child
        for i in missing[1:compile_jobs()]:
            children[i] = _start(texts[i], compile)
    for i in missing:
        if i not in children:
            objects[i] = compile(texts[i])
    for i, (pid, read_end) in children.items():
        objects[i] = _finish(pid, read_end) or compile(texts[i])
    for i in missing:
        cache.store_object(texts[i], objects[i])
    return objects


__all__ = ["compile_jobs", "object_codes"]
