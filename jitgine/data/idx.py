"""Strict reader and writer for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then
the values in C order (big-endian when wider than a byte). The magic is two zero
bytes, a type code and the number of dimensions, so image files start with
0x00000803 and label files with 0x00000801. Files may be gzip-compressed (name
ending in ``.gz``).

The reader checks everything it can: magic, dimension count, that the payload
holds exactly ``prod(dims)`` values (a truncated download or trailing garbage is
an error, not a silently shorter dataset) and, for an image/label pair, that the
counts agree. Every problem is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "read_idx", "read_images", "read_labels", "read_pair", "write_idx"]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# IDX type code -> element type (values are stored big-endian).
_TYPE_CODES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dt.newbyteorder("="): code for code, dt in _TYPE_CODES.items()}

# Read in bounded chunks so that a corrupt header claiming terabytes fails on
# the size check instead of on a giant up-front allocation.
_CHUNK = 1 << 24


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_exact(f, n: int) -> bytearray:
    """Read up to ``n`` bytes; fewer means the stream ended early."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX(.gz) file into a writable native-endian array.

    ``expected_magic`` (e.g. ``IMAGES_MAGIC``) pins type code and dimension count.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            head = _read_exact(f, 4)
            if len(head) < 4:
                raise ValueError(f"IDX file {path} is truncated: {len(head)} bytes, the 4-byte magic number is missing")
            magic = int.from_bytes(head, "big")
            zero, code, ndim = head[0] << 8 | head[1], head[2], head[3]
            if zero != 0 or code not in _TYPE_CODES:
                raise ValueError(
                    f"IDX file {path} has magic number 0x{magic:08X}, which is not an IDX header "
                    "(expected 0x0000TTNN: two zero bytes, a type code, a dimension count); "
                    "the file is damaged or is not an IDX file"
                )
            if expected_magic is not None and magic != expected_magic:
                raise ValueError(
                    f"IDX file {path} has magic number 0x{magic:08X} ({ndim} dimensions, type 0x{code:02X}) "
                    f"but 0x{expected_magic:08X} ({expected_magic & 0xFF} dimensions, uint8) was expected; "
                    "images and labels swapped, or a damaged file"
                )
            dims_raw = _read_exact(f, 4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise ValueError(
                    f"IDX file {path} is truncated inside its header: {ndim} dimension sizes announced, "
                    f"only {len(dims_raw)} of {4 * ndim} bytes present"
                )
            dims = struct.unpack(f">{ndim}I", bytes(dims_raw))
            dtype = _TYPE_CODES[code]
            expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
            payload = _read_exact(f, expected + 1)
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        # gzip reports a cut-off or non-gzip stream as EOFError / BadGzipFile (an OSError) / zlib.error.
        raise ValueError(f"IDX file {path} cannot be decompressed or read: {e} (damaged or truncated download?)") from e
    if len(payload) != expected:
        what = "truncated" if len(payload) < expected else "longer than its header says"
        got = f"{len(payload)} bytes" if len(payload) <= expected else "more"
        raise ValueError(
            f"IDX file {path} is {what}: header says {'x'.join(map(str, dims)) or 'scalar'} "
            f"{dtype.name} values = {expected} bytes after the header, found {got}"
        )
    arr = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def read_images(path: str | os.PathLike) -> np.ndarray:
    """Images file -> uint8 array (N, rows, cols)."""
    return read_idx(path, IMAGES_MAGIC)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Labels file -> uint8 array (N,)."""
    return read_idx(path, LABELS_MAGIC)


def read_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image and label files and check that their counts agree."""
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise ValueError(
            f"IDX files disagree: {images_path} holds {len(images)} images but {labels_path} "
            f"holds {len(labels)} labels; one of them is damaged or they belong to different splits"
        )
    return images, labels


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when the name ends in ``.gz``.

    The gzip header carries no timestamp, so equal arrays give byte-identical files.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODE_OF.get(array.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"write_idx: dtype {array.dtype} has no IDX type code; use one of {sorted(str(d) for d in _CODE_OF)}")
    if array.ndim > 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: shape {array.shape} does not fit an IDX header")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=_TYPE_CODES[code]).tobytes()
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
            f.write(header + body)
    else:
        with open(path, "wb") as f:
            f.write(header + body)
