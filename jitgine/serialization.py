"""``save`` / ``load`` for state dicts, in a file format that loading never executes.

MegEngine and PyTorch pickle: loading a file can run any code its author chose.
jitgine files hold only data, described by JSON. ``.mge`` is the conventional
extension; any name works.

Format (version 1; all integers little-endian)::

    offset 0   8 bytes  magic b"\\x89JGT\\r\\n\\x1a\\n"
           8   4 bytes  format version, uint32 (= 1)
          12   8 bytes  header length H in bytes, uint64
          20   4 bytes  CRC-32 of the header bytes, uint32
          24   H bytes  header: UTF-8 JSON (described below)
               zero padding up to the data start D = 24 + H rounded up to a multiple of 64
           D            the arrays' raw bytes, C order, little-endian; array i starts at
                        D + arrays[i].offset, each offset the previous array's end
                        rounded up to a multiple of 64 (zero padding); the file ends
                        exactly at D + data_size

The header is ``{"root": node, "arrays": [...], "data_size": int}``. Each array
entry is ``{"dtype", "shape", "offset", "nbytes", "crc32"}`` with dtype one of
bool, int8..int64, uint8..uint64, float16, float32, float64, complex64,
complex128 and crc32 the CRC-32 of its bytes. A node is an object with a
"type": ``none``; ``bool``/``int``/``str`` with "value"; ``float`` with "value"
a JSON number or "nan"/"-nan"/"inf"/"-inf"; ``list``/``tuple`` with "items";
``dict``/``ordereddict`` with "keys" (JSON strings or integers) and "values";
``ndarray``, ``scalar`` (a NumPy scalar), ``tensor`` or ``parameter`` with
"array", an index into "arrays". A file object may be passed instead of a path.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import secrets
import struct
import zlib
from typing import Any, BinaryIO

import numpy as np

__all__ = ["save", "load", "MAGIC", "VERSION"]

MAGIC = b"\x89JGT\r\n\x1a\n"
VERSION = 1
_PREFIX = struct.Struct("<8sIQI")  # magic, version, header length, header CRC-32
_ALIGN = 64
_DTYPES = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    )
}  # fmt: skip
_ARRAY_NODES = ("ndarray", "scalar", "tensor", "parameter")
_CHUNK = 1 << 24


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _tensor_classes():
    """(Parameter, Tensor) if jitgine.tensor is importable, else None (imported lazily: saving plain arrays needs no compiler)."""
    try:
        from jitgine.tensor import Parameter, Tensor
    except ImportError:
        return None
    return Parameter, Tensor


# ------------------------------------------------------------------ save


class _Plan:
    """The header tree and the arrays to write, built before any file is touched."""

    def __init__(self, obj: Any) -> None:
        self.arrays: list[np.ndarray] = []
        self.active: set[int] = set()
        self.root = self.node(obj, "obj")

    def array(self, kind: str, arr: np.ndarray, where: str) -> dict:
        if arr.dtype.name not in _DTYPES or arr.dtype.fields is not None:
            raise TypeError(
                f"jitgine.save: {where} has dtype {arr.dtype}, which cannot be saved; "
                f"supported: {', '.join(_DTYPES)}"
            )
        self.arrays.append(arr)
        return {"type": kind, "array": len(self.arrays) - 1}

    def node(self, obj: Any, where: str) -> dict:
        if obj is None:
            return {"type": "none"}
        if isinstance(obj, np.ndarray):
            return self.array("ndarray", obj, where)
        if isinstance(obj, bool):
            return {"type": "bool", "value": obj}
        if isinstance(obj, str):  # before np.generic: np.str_ is both
            return {"type": "str", "value": str(obj)}
        if isinstance(obj, np.generic):  # before float/int: np.float64 is a float subclass
            return self.array("scalar", np.asarray(obj), where)
        if isinstance(obj, int):
            return {"type": "int", "value": int(obj)}
        if isinstance(obj, float):
            value = float(obj) if math.isfinite(obj) else str(float(obj))
            if math.isnan(obj) and math.copysign(1.0, obj) < 0:
                value = "-nan"  # str() drops a NaN's sign
            return {"type": "float", "value": value}
        if isinstance(obj, (list, tuple, dict)):
            if id(obj) in self.active:
                raise ValueError(f"jitgine.save: {where} contains itself (a reference cycle); cycles cannot be saved")
            self.active.add(id(obj))
            try:
                return self.container(obj, where)
            finally:
                self.active.discard(id(obj))
        classes = _tensor_classes()
        if classes is not None and isinstance(obj, classes):
            kind = "parameter" if isinstance(obj, classes[0]) else "tensor"
            return self.array(kind, np.asarray(obj.numpy()), where)
        raise TypeError(
            f"jitgine.save: {where} is a {type(obj).__module__}.{type(obj).__qualname__}, which cannot be saved; "
            "use dicts, lists, tuples, NumPy arrays, Tensors, None, bool, int, float or str"
        )

    def container(self, obj, where: str) -> dict:
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            return {"type": kind, "items": [self.node(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        keys = []
        for key in obj:
            if isinstance(key, bool) or not isinstance(key, (str, int, np.integer)):
                raise TypeError(f"jitgine.save: {where} has key {key!r} of type {type(key).__name__}; keys must be str or int")
            keys.append(str(key) if isinstance(key, str) else int(key))
        kind = "ordereddict" if isinstance(obj, collections.OrderedDict) else "dict"
        return {"type": kind, "keys": keys, "values": [self.node(obj[k], f"{where}[{k!r}]") for k in obj]}

    def encode(self) -> tuple[bytes, list[np.ndarray], list[int]]:
        entries, buffers, end = [], [], 0
        for arr in self.arrays:
            data = np.ascontiguousarray(arr, dtype=_DTYPES[arr.dtype.name]).reshape(-1).view(np.uint8)
            offset = _align(end)
            entries.append(
                {
                    "dtype": arr.dtype.name,
                    "shape": list(arr.shape),
                    "offset": offset,
                    "nbytes": data.size,
                    "crc32": zlib.crc32(data),
                }
            )
            buffers.append(data)
            end = offset + data.size
        header = {"root": self.root, "arrays": entries, "data_size": end}
        header_bytes = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("ascii")
        return header_bytes, buffers, [e["offset"] for e in entries]


def _write(f: BinaryIO, header: bytes, buffers: list[np.ndarray], offsets: list[int]) -> None:
    f.write(_PREFIX.pack(MAGIC, VERSION, len(header), zlib.crc32(header)))
    f.write(header)
    pos = _PREFIX.size + len(header)
    data_start = _align(pos)
    f.write(bytes(data_start - pos))
    pos = 0
    for data, offset in zip(buffers, offsets):
        f.write(bytes(offset - pos))
        f.write(data)
        pos = offset + data.size


def save(obj: Any, path: str | os.PathLike | BinaryIO) -> None:
    """Write ``obj`` (nested dicts/lists/tuples of arrays, Tensors and plain values) to ``path``.

    A path is written atomically: a temporary file in the same folder is
    fsynced and renamed over the target, so a crash never leaves half a file.
    A writable binary file object is written to at its current position.
    """
    header, buffers, offsets = _Plan(obj).encode()
    if hasattr(path, "write"):
        if isinstance(path, io.TextIOBase):
            raise TypeError("jitgine.save: the file object is open in text mode; open it with 'wb'")
        _write(path, header, buffers, offsets)
        return
    target = os.path.realpath(os.fspath(path))
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"jitgine.save: folder {folder} does not exist (saving {os.fspath(path)})")
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the final permissions, as for a plain open().
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(f, header, buffers, offsets)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ------------------------------------------------------------------ load


class _Reader:
    def __init__(self, f: BinaryIO, name: str, size: int | None, exact: bool) -> None:
        self.f, self.name, self.size, self.exact = f, name, size, exact

    def fail(self, problem: str) -> ValueError:
        return ValueError(f"jitgine.load: {self.name}: {problem}")

    def read(self, n: int, what: str) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self.f.read(min(_CHUNK, n - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        if got < n:
            raise self.fail(f"file is truncated: {what} needs {n} bytes, only {got} left")
        return b"".join(parts)

    def read_into(self, arr: np.ndarray, what: str) -> None:
        view = memoryview(arr.reshape(-1).view(np.uint8))
        got = 0
        while got < len(view):
            if hasattr(self.f, "readinto"):
                n = self.f.readinto(view[got:])
            else:
                chunk = self.f.read(len(view) - got)
                n = len(chunk)
                view[got : got + n] = chunk
            if not n:
                raise self.fail(f"file is truncated: {what} needs {len(view)} bytes, only {got} left")
            got += n


def _describe_foreign(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return (
            f"this is a pickle file (protocol {head[1]}), e.g. from megengine.save or torch.save; "
            "jitgine.load never unpickles, because unpickling can run arbitrary code. "
            "Load it with the framework that wrote it and save the arrays with jitgine.save"
        )
    if head.startswith(b"PK\x03\x04"):
        return "this is a zip archive (e.g. torch.save or numpy.savez), not a jitgine file"
    if head.startswith(b"\x93NUMPY"):
        return "this is a .npy file; read it with numpy.load"
    return f"not a jitgine file: it starts with {head[:8]!r}, expected the magic bytes {MAGIC!r}"


def _check_int(value: Any, what: str, reader: _Reader) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise reader.fail(f"bad header: {what} must be a non-negative integer, got {value!r}")
    return value


def _check_entries(header: Any, reader: _Reader, data_start: int) -> list[dict]:
    if not isinstance(header, dict) or not {"root", "arrays", "data_size"} <= header.keys():
        raise reader.fail("bad header: expected an object with 'root', 'arrays' and 'data_size'")
    entries, data_size = header["arrays"], _check_int(header["data_size"], "data_size", reader)
    if not isinstance(entries, list):
        raise reader.fail("bad header: 'arrays' must be a list")
    end = 0
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not {"dtype", "shape", "offset", "nbytes", "crc32"} <= e.keys():
            raise reader.fail(f"bad header: array {i} needs dtype, shape, offset, nbytes and crc32")
        if e["dtype"] not in _DTYPES:
            raise reader.fail(f"array {i} has unsupported dtype {e['dtype']!r}; supported: {', '.join(_DTYPES)}")
        if not isinstance(e["shape"], list):
            raise reader.fail(f"bad header: array {i} shape must be a list, got {e['shape']!r}")
        shape = [_check_int(d, f"array {i} shape", reader) for d in e["shape"]]
        offset = _check_int(e["offset"], f"array {i} offset", reader)
        nbytes = _check_int(e["nbytes"], f"array {i} nbytes", reader)
        _check_int(e["crc32"], f"array {i} crc32", reader)
        if nbytes != math.prod(shape) * _DTYPES[e["dtype"]].itemsize:
            raise reader.fail(f"bad header: array {i} nbytes={nbytes} does not match {e['dtype']} shape {shape}")
        if offset != _align(end):
            raise reader.fail(f"bad offsets: array {i} starts at {offset}, expected {_align(end)} (overlap or gap)")
        end = offset + nbytes
    if end != data_size:
        raise reader.fail(f"bad offsets: arrays end at {end} but data_size is {data_size}")
    if reader.size is not None:
        expected = data_start + data_size
        if reader.size < expected:
            raise reader.fail(f"file is truncated: the header describes {expected} bytes, the file has {reader.size}")
        if reader.exact and reader.size > expected:
            raise reader.fail(f"bad offsets: the header describes {expected} bytes but the file has {reader.size}")
    return entries


def _walk(node: Any, where: str, reader: _Reader, n_arrays: int, paths: dict[int, str], kinds: set[str]) -> None:
    """Validate the node tree; record where each array is used (for error messages) and the node types seen."""
    if not isinstance(node, dict) or "type" not in node:
        raise reader.fail(f"bad header: node at {where} is not an object with a 'type'")
    kind = node["type"]
    kinds.add(kind)
    if kind in _ARRAY_NODES:
        index = node.get("array")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_arrays:
            raise reader.fail(f"bad header: {where} refers to array {index!r}, but the file has {n_arrays}")
        paths.setdefault(index, where)
    elif kind in ("list", "tuple"):
        if not isinstance(node.get("items"), list):
            raise reader.fail(f"bad header: {kind} at {where} needs an 'items' list")
        for i, item in enumerate(node["items"]):
            _walk(item, f"{where}[{i}]", reader, n_arrays, paths, kinds)
    elif kind in ("dict", "ordereddict"):
        keys, values = node.get("keys"), node.get("values")
        if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
            raise reader.fail(f"bad header: {kind} at {where} needs 'keys' and 'values' lists of equal length")
        for k, v in zip(keys, values):
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise reader.fail(f"bad header: {kind} at {where} has key {k!r}; keys are strings or integers")
            _walk(v, f"{where}[{k!r}]", reader, n_arrays, paths, kinds)
    elif kind == "none":
        pass
    elif kind in ("bool", "int", "str", "float"):
        value = node.get("value")
        ok = {
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "str": isinstance(value, str),
            "float": (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("nan", "-nan", "inf", "-inf"),
        }[kind]
        if ok and kind == "float" and isinstance(value, int) and abs(value) > 2**1024:
            ok = False  # beyond float range
        if not ok:
            raise reader.fail(f"bad header: {kind} at {where} has value {value!r}")
    else:
        raise reader.fail(f"bad header: unknown node type {kind!r} at {where}")


def _build(node: dict, arrays: list[np.ndarray], classes) -> Any:
    kind = node["type"]
    if kind == "none":
        return None
    if kind in ("bool", "int", "str"):
        return node["value"]
    if kind == "float":
        return float(node["value"])
    if kind in ("list", "tuple"):
        items = [_build(n, arrays, classes) for n in node["items"]]
        return items if kind == "list" else tuple(items)
    if kind in ("dict", "ordereddict"):
        cls = dict if kind == "dict" else collections.OrderedDict
        return cls((k, _build(v, arrays, classes)) for k, v in zip(node["keys"], node["values"]))
    arr = arrays[node["array"]]
    if kind == "ndarray":
        return arr
    if kind == "scalar":
        return arr[()]
    return classes[0](arr) if kind == "parameter" else classes[1](arr)


def _load(f: BinaryIO, reader: _Reader) -> Any:
    head = f.read(_PREFIX.size)
    if len(head) < _PREFIX.size or head[: len(MAGIC)] != MAGIC:
        if head[: len(MAGIC)] == MAGIC[: len(head)] and head:
            raise reader.fail(f"file is truncated: {len(head)} bytes, shorter than the {_PREFIX.size}-byte prefix")
        raise reader.fail(_describe_foreign(head))
    _, version, header_len, header_crc = _PREFIX.unpack(head)
    if version != VERSION:
        raise reader.fail(f"format version {version} is not supported (this jitgine reads version {VERSION}); upgrade jitgine")
    if reader.size is not None and _PREFIX.size + header_len > reader.size:
        raise reader.fail(f"file is truncated: header of {header_len} bytes announced, file has {reader.size}")
    raw = reader.read(header_len, "the header")
    if zlib.crc32(raw) != header_crc:
        raise reader.fail("header checksum mismatch: the file is corrupted")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # includes UnicodeDecodeError and JSONDecodeError
        raise reader.fail(f"bad JSON header: {e}") from None
    data_start = _align(_PREFIX.size + header_len)
    entries = _check_entries(header, reader, data_start)
    paths: dict[int, str] = {}
    kinds: set[str] = set()
    try:
        _walk(header["root"], "obj", reader, len(entries), paths, kinds)
    except RecursionError:
        raise reader.fail("bad header: structure nested too deeply") from None
    reader.read(data_start - _PREFIX.size - header_len, "padding")
    arrays, pos = [], 0
    for i, e in enumerate(entries):
        where = paths.get(i, f"array {i}")
        reader.read(e["offset"] - pos, "padding")
        arr = np.empty(e["shape"], dtype=_DTYPES[e["dtype"]])
        reader.read_into(arr, f"{where} ({e['dtype']} {tuple(e['shape'])})")
        if zlib.crc32(arr.reshape(-1).view(np.uint8)) != e["crc32"]:
            raise reader.fail(f"checksum mismatch in {where} ({e['dtype']} {tuple(e['shape'])}): the file is corrupted")
        arrays.append(arr.astype(arr.dtype.newbyteorder("="), copy=False))
        pos = e["offset"] + e["nbytes"]
    classes = None
    if kinds & {"tensor", "parameter"}:
        classes = _tensor_classes()
        if classes is None:
            raise reader.fail("the file holds Tensors but jitgine.tensor cannot be imported")
    try:
        return _build(header["root"], arrays, classes)
    except RecursionError:
        raise reader.fail("bad header: structure nested too deeply") from None


def load(path: str | os.PathLike | BinaryIO, map_location: Any = None) -> Any:
    """Read what ``save`` wrote. Problems with the file raise ``ValueError`` naming it.

    ``map_location`` is accepted for MegEngine compatibility and ignored: the CPU is the only device.
    """
    if hasattr(path, "read"):
        if isinstance(path, io.TextIOBase):
            raise ValueError("jitgine.load: the file object is open in text mode; open it with 'rb'")
        name = repr(getattr(path, "name", path))
        size = None
        if getattr(path, "seekable", lambda: False)():
            here = path.tell()
            size = path.seek(0, io.SEEK_END) - here
            path.seek(here)
        return _load(path, _Reader(path, name, size, exact=False))
    with open(path, "rb") as f:
        return _load(f, _Reader(f, os.fspath(path), os.fstat(f.fileno()).st_size, exact=True))
