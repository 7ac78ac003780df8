"""The on-disk cache of compiled object code.

An entry's name is the SHA-256 of everything the machine code depends on:
the LLVM IR text, the host CPU name and features, the LLVM version and the
jitgine version. Each file holds a magic line, the SHA-256 of its payload and
the payload (the object file). A file that is truncated or altered fails that
check and is rebuilt, never loaded. Writes go to a temporary file in the same
folder that is renamed into place, so a reader sees a whole entry or none.

`JITGINE_CACHE_DIR` chooses the folder (default: `$XDG_CACHE_HOME/jitgine`
or `~/.cache/jitgine`); `JITGINE_CACHE_DIR=off` disables the disk cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .target import host

VERSION = "0.1.0"
_MAGIC = b"JITGINE-OBJ 1\n"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    rebuilt: int = 0  # damaged entries detected and replaced


stats = CacheStats()


def cache_dir() -> Path | None:
    configured = os.environ.get("JITGINE_CACHE_DIR")
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jitgine"


def key_of(llvm_ir: str) -> str:
    digest = hashlib.sha256()
    for part in (llvm_ir, host().key, VERSION):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _read(path: Path) -> bytes | None:
    """The payload of a valid entry; None if missing or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    header_end = len(_MAGIC) + 64
    if len(data) < header_end or not data.startswith(_MAGIC):
        return None
    payload = data[header_end:]
    if hashlib.sha256(payload).hexdigest().encode() != data[len(_MAGIC):header_end]:
        return None
    return payload


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def cached_object(llvm_ir: str, compile: Callable[[str], bytes]) -> bytes:
    """The object code for `llvm_ir`, from the disk cache or compiled (and then stored)."""
    folder = cache_dir()
    if folder is None:
        stats.misses += 1
        return compile(llvm_ir)
    path = folder / (key_of(llvm_ir) + ".o")
    payload = _read(path)
    if payload is not None:
        stats.hits += 1
        return payload
    if path.exists():
        stats.rebuilt += 1
    stats.misses += 1
    obj = compile(llvm_ir)
    try:
        write_atomic(path, _MAGIC + hashlib.sha256(obj).hexdigest().encode() + obj)
    except OSError:
        pass  # a read-only or full cache folder costs speed, not correctness
    return obj
