"""The on-disk cache of compiled object code.

An entry's name is the SHA-256 of everything the machine code depends on:
the LLVM IR text, the host CPU name and features, the LLVM version and the
jitgine version. Each file holds a magic line, the SHA-256 of its payload and
the payload (the object file). A file that is truncated or altered fails that
check and is rebuilt, never loaded. Writes go to a temporary file in the same
folder that is renamed into place, so a reader sees a whole entry or none.

Whole compiled graphs have entries of their own (`graph_key`, suffix `.graph`):
named by the optimised graph's text plus the host, LLVM/llvmlite and jitgine
versions and a hash of the back end's sources, holding the object code and the
little the loaded graph needs besides; a hit skips building LLVM IR at all.

`JITGINE_CACHE_DIR` chooses the folder (default: `$XDG_CACHE_HOME/jitgine`
or `~/.cache/jitgine`); `JITGINE_CACHE_DIR=off` disables the disk cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import llvmlite

from .target import host

VERSION = "0.1.0"
_MAGIC = b"JITGINE-OBJ 1\n"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    rebuilt: int = 0  # damaged entries detected and replaced
    graph_hits: int = 0  # whole graphs loaded without building their LLVM IR
    graph_misses: int = 0


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


@functools.lru_cache(maxsize=None)
def sources_digest() -> str:
    """SHA-256 of the back end's and the IR's Python sources: a code change invalidates graph entries."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted([*root.joinpath("codegen").glob("*.py"), *root.joinpath("ir").glob("*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def graph_key(graph_text: str) -> str:
    digest = hashlib.sha256()
    for part in (graph_text, host().key, llvmlite.__version__, VERSION, sources_digest()):
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


def _store(path: Path, payload: bytes) -> None:
    try:
        write_atomic(path, _MAGIC + hashlib.sha256(payload).hexdigest().encode() + payload)
    except OSError:
        pass  # a read-only or full cache folder costs speed, not correctness


def load_graph(key: str) -> bytes | None:
    """The payload of graph entry `key`, or None (counted as a miss; a damaged entry as rebuilt)."""
    folder = cache_dir()
    payload = None if folder is None else _read(folder / (key + ".graph"))
    if payload is not None:
        stats.graph_hits += 1
        return payload
    stats.graph_misses += 1
    if folder is not None and (folder / (key + ".graph")).exists():
        stats.rebuilt += 1
    return None


def store_graph(key: str, payload: bytes) -> None:
    folder = cache_dir()
    if folder is not None:
        _store(folder / (key + ".graph"), payload)


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
    _store(path, obj)
    return obj
