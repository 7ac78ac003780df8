"""jitgine.serialization: round trips, atomic writes and every kind of bad file."""

import collections
import io
import json
import math
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jitgine.serialization import MAGIC, load, save

DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
]  # fmt: skip
PREFIX = struct.Struct("<8sIQI")


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if draw(st.booleans()):
        dtype = dtype.newbyteorder(">")  # foreign byte order is converted, values kept
    arr = draw(hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
    view = draw(st.sampled_from(["plain", "step", "transpose"]))
    if view == "step" and arr.ndim:
        arr = arr[::2]
    elif view == "transpose":
        arr = arr.T
    return arr


scalars = st.builds(lambda a: a.reshape(-1)[0], hnp.arrays(st.sampled_from(DTYPES).map(np.dtype), 1))
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | arrays()
    | scalars
)
keys = st.text(max_size=6) | st.integers(-1000, 1000)
structures = st.recursive(
    leaves,
    lambda kids: st.lists(kids, max_size=4)
    | st.lists(kids, max_size=4).map(tuple)
    | st.dictionaries(keys, kids, max_size=4)
    | st.dictionaries(keys, kids, max_size=3).map(collections.OrderedDict),
    max_leaves=12,
)


def assert_same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype.newbyteorder("=") == b.dtype and b.dtype.isnative and a.shape == b.shape
        assert b.flags.c_contiguous and b.flags.writeable
        np.testing.assert_array_equal(a, b)  # NaN == NaN here
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and (a == b or (a != a and b != b))
    elif isinstance(a, float):
        assert a == b or (math.isnan(a) and math.isnan(b))
        assert math.copysign(1, a) == math.copysign(1, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b) and [type(k) for k in a] == [type(k) for k in b]
        for k in a:
            assert_same(a[k], b[k])
    else:
        assert a == b


@given(obj=structures)
def test_round_trip_through_file_objects(obj):
    buf = io.BytesIO()
    save(obj, buf)
    data = buf.getvalue()
    assert data.startswith(MAGIC)
    assert_same(obj, load(io.BytesIO(data)))


@settings(max_examples=10)  # each example fsyncs a file; the file-object test covers the breadth
@given(obj=st.dictionaries(st.text(max_size=4), arrays(), max_size=4))
def test_round_trip_through_paths_with_aligned_buffers(tmp_path_factory, obj):
    path = tmp_path_factory.mktemp("rt") / "model.mge"
    save(obj, path)
    assert_same(obj, load(path))
    assert_same(obj, load(str(path)))
    with open(path, "rb") as f:
        assert_same(obj, load(f))
    raw = path.read_bytes()
    _, _, header_len, _ = PREFIX.unpack_from(raw)
    header = json.loads(raw[PREFIX.size : PREFIX.size + header_len])
    start = -(-(PREFIX.size + header_len) // 64) * 64
    for e in header["arrays"]:
        assert (start + e["offset"]) % 64 == 0
        assert zlib.crc32(raw[start + e["offset"] : start + e["offset"] + e["nbytes"]]) == e["crc32"]
    assert len(raw) == start + header["data_size"]


def test_special_floats_keep_sign():
    values = [float("-nan"), float("nan"), -0.0, float("inf"), float("-inf"), 5e-324, 1.7976931348623157e308]
    buf = io.BytesIO()
    save(values, buf)
    assert_same(values, load(io.BytesIO(buf.getvalue())))


def test_state_dict_example_and_format(tmp_path):
    state = collections.OrderedDict(
        [("conv.weight", np.ones((2, 1, 3, 3), np.float32)), ("fc.bias", np.arange(3, dtype=np.float32))]
    )
    obj = {"state": state, "epoch": 3, "lr": 0.1, "name": "net", "best": None, "betas": (0.9, 0.999), 7: [True]}
    save(obj, tmp_path / "ckpt.mge")
    back = load(tmp_path / "ckpt.mge")
    assert_same(obj, back)
    assert isinstance(back["state"], collections.OrderedDict)
    assert load(tmp_path / "ckpt.mge", map_location="cpux")["epoch"] == 3


def test_tensors_round_trip(tmp_path):
    tensor_mod = pytest.importorskip("jitgine.tensor")
    obj = {
        "w": tensor_mod.Parameter(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "t": [tensor_mod.Tensor(np.array([1.5, -2.0], np.float32))],
    }
    save(obj, tmp_path / "t.mge")
    back = load(tmp_path / "t.mge")
    assert type(back["w"]) is tensor_mod.Parameter and type(back["t"][0]) is tensor_mod.Tensor
    np.testing.assert_array_equal(back["w"].numpy(), obj["w"].numpy())
    np.testing.assert_array_equal(back["t"][0].numpy(), [1.5, -2.0])
    header = json.loads(split((tmp_path / "t.mge").read_bytes())[1])
    assert header["root"]["values"][0]["type"] == "parameter"


# ------------------------------------------------------------------ saving errors and atomicity


class Thing:
    pass


@pytest.mark.parametrize(
    "obj, exc, message",
    [
        ({"a": [1, Thing()]}, TypeError, r"obj\['a'\]\[1\] is a .*Thing"),
        ({"a": {1, 2}}, TypeError, r"obj\['a'\] is a builtins.set"),
        ({"a": np.array([object()])}, TypeError, r"obj\['a'\] has dtype object"),
        ({"s": np.array(["x"])}, TypeError, "dtype <U1"),
        ({True: 1}, TypeError, "keys must be str or int"),
        ({(1, 2): 1}, TypeError, "keys must be str or int"),
    ],
)
def test_save_rejects_unsupported_objects(tmp_path, obj, exc, message):
    with pytest.raises(exc, match=message):
        save(obj, tmp_path / "x.mge")
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_cycles(tmp_path):
    cyc = {"a": []}
    cyc["a"].append(cyc)
    with pytest.raises(ValueError, match="reference cycle"):
        save(cyc, tmp_path / "x.mge")
    shared = [1]
    save({"a": shared, "b": shared}, tmp_path / "ok.mge")  # sharing is not a cycle


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.mge"
    save({"v": 1}, path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save({"v": np.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.mge"]


def test_save_permissions_follow_umask_and_missing_folder(tmp_path):
    save({}, tmp_path / "m.mge")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.mge").stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save({}, tmp_path / "no" / "m.mge")


def test_save_through_symlink_keeps_link(tmp_path):
    (tmp_path / "real.mge").write_bytes(b"")
    (tmp_path / "link.mge").symlink_to(tmp_path / "real.mge")
    save({"x": 1}, tmp_path / "link.mge")
    assert (tmp_path / "link.mge").is_symlink() and load(tmp_path / "real.mge") == {"x": 1}


# ------------------------------------------------------------------ loading bad files


GOOD = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": [np.ones(5, np.int64), "x"]}


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.mge"
    save(GOOD, path)
    return path


def split(raw: bytes):
    _, version, header_len, _ = PREFIX.unpack_from(raw)
    header = raw[PREFIX.size : PREFIX.size + header_len]
    start = -(-(PREFIX.size + header_len) // 64) * 64
    return version, header, raw[start:]


def assemble(header: bytes, data: bytes, version: int = 1, crc: int | None = None) -> bytes:
    crc = zlib.crc32(header) if crc is None else crc
    head = PREFIX.pack(MAGIC, version, len(header), crc) + header
    return head + bytes(-len(head) % 64) + data


def rewrite(path, edit):
    """Re-write ``path`` with ``edit(header_dict)`` applied and a valid header checksum."""
    _, header, data = split(path.read_bytes())
    h = json.loads(header)
    edit(h)
    path.write_bytes(assemble(json.dumps(h).encode(), data))


def expect_error(path, message):
    with pytest.raises(ValueError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("cut", [1, 7, 20, 30, -200, -1])
def test_truncated_file(good, cut):
    raw = good.read_bytes()
    good.write_bytes(raw[:cut])
    expect_error(good, "truncated")


def test_empty_file(good):
    good.write_bytes(b"")
    expect_error(good, "empty")


def test_random_bytes(good):
    good.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    expect_error(good, "not a jitgine file")


def test_random_bytes_after_magic(good):
    rest = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    good.write_bytes(MAGIC + struct.pack("<I", 1) + rest)
    expect_error(good, "truncated|checksum")


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_file_is_never_unpickled(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.mge"
    path.write_bytes(pickle.dumps({"w": Evil(marker)}, protocol=protocol))
    # The payload is real: unpickling it does create the marker.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Evil(control), protocol=protocol))
    assert control.exists()
    msg = expect_error(path, "pickle" if protocol >= 2 else "not a jitgine file")
    with open(path, "rb") as f, pytest.raises(ValueError):
        load(f)
    assert not marker.exists(), msg


def test_wrong_magic_and_other_formats(good, tmp_path):
    raw = bytearray(good.read_bytes())
    raw[1] ^= 0xFF
    good.write_bytes(bytes(raw))
    expect_error(good, "not a jitgine file")
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    expect_error(npy, "npy")
    npz = tmp_path / "a.npz"
    np.savez(npz, a=np.zeros(3))
    expect_error(npz, "zip")


def test_newer_version(good):
    version, header, data = split(good.read_bytes())
    good.write_bytes(assemble(header, data, version=2))
    expect_error(good, "version 2 is not supported")


def test_header_checksum_mismatch(good):
    raw = bytearray(good.read_bytes())
    raw[PREFIX.size + 10] ^= 0x01
    good.write_bytes(bytes(raw))
    expect_error(good, "header checksum mismatch")


@pytest.mark.parametrize("header", [b"{not json", b"\xff\xfe{}", b"", b'{"root": 1e999999999999999999999}'])
def test_bad_json(good, header):
    _, _, data = split(good.read_bytes())
    good.write_bytes(assemble(header, data))
    expect_error(good, "bad JSON header" if header != b'{"root": 1e999999999999999999999}' else "bad header")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: h.clear(), "bad header: expected an object"),
        (lambda h: h["arrays"][1].update(offset=h["arrays"][1]["offset"] + 8), "bad offsets"),
        (lambda h: h["arrays"][1].update(offset=0), "bad offsets: array 1 starts at 0"),
        (lambda h: h.update(data_size=h["data_size"] + 64), "bad offsets"),
        (lambda h: h["arrays"][0].update(shape=[4, 4]), "does not match float32 shape"),
        (lambda h: h["arrays"][0].update(shape=[-3, -4]), "non-negative integer"),
        (lambda h: h["arrays"][0].update(dtype="object"), "unsupported dtype 'object'"),
        (lambda h: h["arrays"][0].update(dtype="float128"), "unsupported dtype 'float128'"),
        (lambda h: h["arrays"][0].pop("crc32"), "needs dtype, shape, offset, nbytes and crc32"),
        (lambda h: h["root"]["values"][0].update(array=5), "refers to array 5"),
        (lambda h: h["root"]["values"][0].update(type="pickle"), "unknown node type 'pickle'"),
        (lambda h: h["root"].update(keys=[True, "b"]), "keys are strings or integers"),
        (lambda h: h["root"].update(values=[]), "equal length"),
        (lambda h: h["root"]["values"][1]["items"][1].update(value=3), "str at .* has value 3"),
        (lambda h: h.update(root=[]), "not an object with a 'type'"),
    ],
)
def test_bad_header_contents(good, edit, message):
    rewrite(good, edit)
    expect_error(good, message)


def test_trailing_bytes(good):
    good.write_bytes(good.read_bytes() + b"\0" * 64)
    expect_error(good, "bad offsets: the header describes")


def test_data_checksum_mismatch_names_the_entry(good):
    raw = bytearray(good.read_bytes())
    raw[-3] ^= 0x10  # inside the last array: b[0]
    good.write_bytes(bytes(raw))
    expect_error(good, r"checksum mismatch in obj\['b'\]\[0\] \(int64 \(5,\)\)")


def test_text_mode_file_object(good):
    with open(good, "r", encoding="latin-1") as f, pytest.raises(ValueError, match="text mode"):
        load(f)
    with open(good.with_suffix(".txt"), "w") as f, pytest.raises(TypeError, match="text mode"):
        save({}, f)


def test_truncated_stream_without_size(good):
    class Pipe(io.RawIOBase):  # non-seekable: sizes are not known up front
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self.data.readinto(b)

    raw = good.read_bytes()
    assert_same(GOOD, load(io.BufferedReader(Pipe(raw))))
    with pytest.raises(ValueError, match="truncated"):
        load(io.BufferedReader(Pipe(raw[:-10])))
