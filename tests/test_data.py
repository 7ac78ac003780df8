"""jitgine.data: IDX files, datasets, samplers, transforms and the DataLoader."""

import gzip
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jitgine.data import DataLoader, RandomSampler, SequentialSampler
from jitgine.data.dataloader import Collator
from jitgine.data.dataset import EMBEDDED_ROOT, MNIST, ArrayDataset, Dataset, FashionMNIST
from jitgine.data.idx import read_idx, read_images, read_labels, read_pair, write_idx
from jitgine.data.transform import Compose, Normalize, Pad, ToMode, Transform

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _fake_mnist(folder: Path, gz: bool, n_train: int = 12, n_test: int = 5) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        STEMS[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        STEMS[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        STEMS[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        STEMS[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arr)
    return arrays


# ---------------------------------------------------------------- IDX files


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_idx_round_trip(tmp_path, suffix, dtype):
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    write_idx(tmp_path / ("x" + suffix), arr)
    got = read_idx(tmp_path / ("x" + suffix))
    assert got.dtype == arr.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)
    got[0, 0, 0] = 1  # items must be writable (in-place transforms)


def test_idx_gz_is_really_gzip_and_reproducible(tmp_path):
    arr = np.zeros((3, 28, 28), np.uint8)
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "b.gz", arr)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x03" and len(raw) == 16 + 3 * 784


def _images_bytes(n=3):
    return b"\x00\x00\x08\x03" + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(n * 784)


DAMAGED = {
    "empty": (b"", "truncated"),
    "short magic": (b"\x00\x00", "truncated"),
    "not idx": (b"PK\x03\x04" + bytes(100), "not an IDX header"),
    "unknown type": (b"\x00\x00\x07\x03" + bytes(100), "not an IDX header"),
    "labels as images": (b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes(3), "0x00000801"),
    "too few dimensions": (b"\x00\x00\x08\x02" + bytes(8), "0x00000802"),
    "cut header": (b"\x00\x00\x08\x03" + (3).to_bytes(4, "big") + b"\x00\x00", "truncated inside its header"),
    "cut payload": (_images_bytes()[:-1], "is truncated: header says 3x28x28"),
    "trailing bytes": (_images_bytes() + b"\x00", "longer than its header says"),
}


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_idx_damaged_files_raise_valueerror_naming_file(tmp_path, suffix, case):
    content, message = DAMAGED[case]
    path = tmp_path / ("damaged-images" + suffix)
    path.write_bytes(gzip.compress(content) if suffix else content)
    with pytest.raises(ValueError, match=message) as info:
        read_images(path)
    assert str(path) in str(info.value)


def test_idx_good_header_bytes_parse(tmp_path):
    (tmp_path / "ok").write_bytes(_images_bytes(2))
    assert read_images(tmp_path / "ok").shape == (2, 28, 28)


@pytest.mark.parametrize("damage", ["cut", "not gzip"])
def test_idx_damaged_gzip_stream(tmp_path, damage):
    path = tmp_path / "x-labels.gz"
    write_idx(path, np.arange(1000, dtype=np.uint8) % 10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "cut" else _images_bytes())
    with pytest.raises(ValueError, match="cannot be decompressed") as info:
        read_labels(path)
    assert str(path) in str(info.value)


def test_idx_pair_counts_must_agree(tmp_path):
    write_idx(tmp_path / "i", np.zeros((4, 28, 28), np.uint8))
    write_idx(tmp_path / "l", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="4 images but .* 5 labels"):
        read_pair(tmp_path / "i", tmp_path / "l")


# ---------------------------------------------------------------- datasets


def test_dataset_is_abstract():
    with pytest.raises(TypeError):
        Dataset()


def test_array_dataset():
    x, y = np.arange(12).reshape(6, 2), np.arange(6) * 10
    ds = ArrayDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[4]
    np.testing.assert_array_equal(xi, [8, 9])
    assert yi == 40
    with pytest.raises(ValueError, match="array 1 has 5 samples but array 0 has 6"):
        ArrayDataset(x, y[:5])
    with pytest.raises(ValueError, match="at least one array"):
        ArrayDataset()
    with pytest.raises(ValueError, match="scalar"):
        ArrayDataset(np.float32(1.0))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
def test_mnist_from_folder(tmp_path, gz, cls):
    arrays = _fake_mnist(tmp_path, gz)
    train, test = cls(tmp_path), cls(tmp_path, train=False)
    assert (len(train), len(test)) == (12, 5)
    image, label = train[3]
    assert image.dtype == np.uint8 and image.shape == (28, 28) and type(label) is int
    np.testing.assert_array_equal(image, arrays[STEMS[0]][3])
    assert label == arrays[STEMS[1]][3]
    assert test[-1][1] == arrays[STEMS[3]][-1]


def test_mnist_missing_files_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        FashionMNIST(tmp_path / "nowhere")
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path / "nowhere") in msg and "dataset-fashion-mnist" in msg
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        MNIST(tmp_path, train=False)


def test_mnist_damaged_file_in_folder(tmp_path):
    _fake_mnist(tmp_path, gz=True)
    path = tmp_path / (STEMS[0] + ".gz")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=STEMS[0]):
        MNIST(tmp_path)


def test_download_from_mirror(tmp_path, monkeypatch):
    arrays = _fake_mnist(tmp_path / "mirror", gz=True)
    monkeypatch.setattr(MNIST, "mirrors", ("http://127.0.0.1:9/", (tmp_path / "mirror").as_uri() + "/"))
    ds = MNIST(tmp_path / "data", train=False, download=True)
    np.testing.assert_array_equal(ds.images, arrays[STEMS[2]])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [STEMS[2] + ".gz", STEMS[3] + ".gz"]


def test_download_rejects_damaged_file(tmp_path, monkeypatch):
    _fake_mnist(tmp_path / "mirror", gz=True)
    bad = tmp_path / "mirror" / (STEMS[3] + ".gz")
    bad.write_bytes(bad.read_bytes()[:-10])
    monkeypatch.setattr(MNIST, "mirrors", ((tmp_path / "mirror").as_uri() + "/",))
    with pytest.raises(FileNotFoundError, match="download failed") as info:
        MNIST(tmp_path / "data", train=False, download=True)
    assert "cannot be decompressed" in str(info.value)
    assert not (tmp_path / "data" / bad.name).exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == [STEMS[2] + ".gz"]


def test_download_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(FashionMNIST, "mirrors", ("http://127.0.0.1:9/",))
    monkeypatch.setattr(FashionMNIST, "download_timeout", 2.0)
    with pytest.raises(FileNotFoundError) as info:
        FashionMNIST(tmp_path, download=True)
    msg = str(info.value)
    assert "download failed" in msg and "dataset-fashion-mnist" in msg and str(tmp_path) in msg
    assert "train-images-idx3-ubyte.gz" in msg and "127.0.0.1:9" in msg


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
def test_embedded_dataset(cls):
    train, test = cls(), cls(train=False)
    assert (len(train), len(test)) == (5000, 1000)
    assert train.images.shape == (5000, 28, 28) and train.images.dtype == np.uint8
    image, label = test[0]
    assert image.shape == (28, 28) and isinstance(label, int)
    assert set(np.unique(train.labels)) == set(range(10)) == set(np.unique(test.labels))
    assert len(cls.classes) == 10
    assert cls(download=True).images.shape == (5000, 28, 28)  # nothing to download for the embedded set


def test_embedded_files_and_licence():
    root = EMBEDDED_ROOT
    assert sorted(p.name for p in root.iterdir()) == sorted([s + ".gz" for s in STEMS] + ["LICENSE"])
    text = (root / "LICENSE").read_text()
    assert "Copyright (c) 2017 Zalando SE" in text and "MIT" in text


@pytest.mark.skipif(
    not (SHARED_DATA / "fashion-mnist").is_dir(), reason=f"full Fashion-MNIST not found at {SHARED_DATA / 'fashion-mnist'}"
)
def test_shared_fashion_mnist_matches_embedded_slice():
    full_train, full_test = FashionMNIST(SHARED_DATA / "fashion-mnist"), FashionMNIST(SHARED_DATA / "fashion-mnist", False)
    assert (len(full_train), len(full_test)) == (60000, 10000)
    small_train, small_test = FashionMNIST(), FashionMNIST(train=False)
    np.testing.assert_array_equal(full_train.images[:5000], small_train.images)
    np.testing.assert_array_equal(full_train.labels[:5000], small_train.labels)
    np.testing.assert_array_equal(full_test.images[:1000], small_test.images)
    np.testing.assert_array_equal(full_test.labels[:1000], small_test.labels)


# ---------------------------------------------------------------- samplers


@given(n=st.integers(0, 40), batch_size=st.integers(1, 9), drop_last=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_samplers_cover_without_repeats(n, batch_size, drop_last, seed):
    data = list(range(n))
    for sampler in (SequentialSampler(data, batch_size, drop_last), RandomSampler(data, batch_size, drop_last, seed)):
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert len(flat) == len(set(flat)) and set(flat) <= set(data)
        assert all(len(b) == batch_size for b in batches[:-1])
        assert all(type(i) is int for i in flat)
        if drop_last:
            assert len(batches) == n // batch_size and all(len(b) == batch_size for b in batches)
        else:
            assert sorted(flat) == data
        if isinstance(sampler, SequentialSampler):
            assert flat == data[: len(flat)]


def test_random_sampler_seeded_and_new_order_each_epoch():
    data = range(100)
    a, b = RandomSampler(data, 10, seed=7), RandomSampler(data, 10, seed=7)
    epochs_a = [list(a) for _ in range(3)]
    assert epochs_a == [list(b) for _ in range(3)]
    assert epochs_a[0] != epochs_a[1] != epochs_a[2]
    assert list(RandomSampler(data, 10, seed=8)) != epochs_a[0]


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_sampler_rejects_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        SequentialSampler(range(3), bad)


# ---------------------------------------------------------------- transforms


def test_normalize():
    rng = np.random.default_rng(1)
    hw = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    out = Normalize(mean=33.0, std=70.0).apply(hw)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (hw.astype(np.float64) - 33) / 70, rtol=1e-6)
    hwc = rng.normal(size=(4, 5, 3))
    out = Normalize(mean=[1, 2, 3], std=[2, 4, 8]).apply(hwc)
    np.testing.assert_allclose(out, (hwc - [1, 2, 3]) / [2, 4, 8], rtol=1e-5, atol=1e-6)
    assert Normalize().apply(hw).dtype == np.float32
    with pytest.raises(ValueError, match="3 values but the image"):
        Normalize([1, 2, 3], 1).apply(hw)
    with pytest.raises(ValueError, match="non-zero"):
        Normalize(0, 0)


def test_pad():
    hw = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(Pad(2).apply(hw), np.pad(hw, 2))
    np.testing.assert_array_equal(Pad((1, 0, 3, 2), value=9).apply(hw), np.pad(hw, ((1, 0), (3, 2)), constant_values=9))
    hwc = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    got = Pad(1, value=[7, 8, 9]).apply(hwc)
    want = np.stack([np.pad(hwc[..., c], 1, constant_values=v) for c, v in enumerate([7, 8, 9])], axis=-1)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32 and Pad(0).apply(hw).shape == (2, 3)
    with pytest.raises(ValueError, match="size"):
        Pad((1, 2))
    with pytest.raises(ValueError, match="not representable"):
        Pad(1, value=-1).apply(hw)
    with pytest.raises(ValueError, match="HW or HWC"):
        Pad(1).apply(np.zeros(3))


def test_to_mode_and_compose():
    hw, hwc = np.arange(6).reshape(2, 3), np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(ToMode("CHW").apply(hw), hw[None])
    np.testing.assert_array_equal(ToMode().apply(hwc), hwc.transpose(2, 0, 1))
    assert ToMode("CHW").apply(hwc).flags.c_contiguous
    np.testing.assert_array_equal(ToMode("HWC").apply(hw), hw[:, :, None])
    with pytest.raises(ValueError, match="mode"):
        ToMode("NCHW")
    pipeline = Compose([Normalize(1.0, 2.0), Pad(1), ToMode("CHW")])
    out = pipeline.apply(hw)
    np.testing.assert_allclose(out, np.pad((hw - 1.0) / 2.0, 1)[None])
    batch = pipeline.apply_batch([hw, hw + 1])
    assert isinstance(batch, tuple) and len(batch) == 2 and batch[1].shape == (1, 4, 5)
    with pytest.raises(TypeError, match="not a Transform"):
        Compose([lambda x: x])


# ---------------------------------------------------------------- DataLoader


class Boom(Exception):
    pass


class FailingDataset(Dataset):
    """Item 7 raises; ``exit_at`` kills the worker; ``sleep_at`` is slow."""

    def __init__(self, n=20, fail_at=7, exc=Boom, exit_at=None, sleep_at=None):
        self.n, self.fail_at, self.exc, self.exit_at, self.sleep_at = n, fail_at, exc, exit_at, sleep_at

    def __getitem__(self, i):
        if i == self.exit_at:
            os._exit(3)
        if i == self.sleep_at:
            time.sleep(0.6)
        if i == self.fail_at:
            raise self.exc(f"bad item {i}")
        return np.full((2, 2), i, np.float32), i

    def __len__(self):
        return self.n


def _image_dataset(n=23):
    rng = np.random.default_rng(2)
    return ArrayDataset(rng.integers(0, 256, (n, 6, 5), dtype=np.uint8), rng.integers(0, 10, n))


def _batches(loader):
    return [tuple(np.array(f) for f in b) for b in loader]


def _assert_no_workers():
    deadline = time.monotonic() + 2.0
    while mp.active_children() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mp.active_children() == []


def test_dataloader_serial_batches():
    ds = _image_dataset()
    loader = DataLoader(ds, SequentialSampler(ds, batch_size=4), transform=Compose([Normalize(10, 5), ToMode("CHW")]))
    batches = list(loader)
    assert len(loader) == len(batches) == 6
    data, label = batches[0]
    assert data.shape == (4, 1, 6, 5) and data.dtype == np.float32
    assert label.dtype == np.int32 and label.tolist() == ds.arrays[1][:4].tolist()
    np.testing.assert_allclose(data[2, 0], (ds.arrays[0][2] - 10.0) / 5)
    assert batches[-1][0].shape == (3, 1, 6, 5)
    assert [b[1].shape for b in DataLoader(ds)][:2] == [(1,), (1,)]  # default: batches of one


def test_collator_field_kinds():
    c = Collator()
    out = c.apply([(np.zeros(2), 1, 0.5, True, np.float64(1)), (np.ones(2), np.uint8(2), 1.5, False, np.float64(2))])
    assert [o.dtype for o in out] == [np.float64, np.int32, np.float32, np.bool_, np.float64]
    assert c.apply([np.zeros(3), np.ones(3)]).shape == (2, 3)
    assert c.apply([{"x": 1}, {"x": 2}])["x"].dtype == np.int32
    with pytest.raises(ValueError, match="int32 range"):
        c.apply([(0, 2**40)])
    with pytest.raises(ValueError, match="different shapes"):
        c.apply([(np.zeros(2), 0), (np.zeros(3), 1)])
    loader = DataLoader(ArrayDataset(np.arange(4)), SequentialSampler(range(4), 2), collator=lambda s: len(s))
    assert list(loader) == [2, 2]


class ItemsOnly(Dataset):
    """The same items as ``inner`` without its ``batch`` method: forces the per-item path."""

    def __init__(self, inner):
        self.inner = inner

    def __getitem__(self, i):
        return self.inner[i]

    def __len__(self):
        return len(self.inner)


@pytest.mark.parametrize("channels", [None, 3])
def test_apply_array_equals_apply_per_image(channels):
    rng = np.random.default_rng(4)
    shape = (5, 6, 7) if channels is None else (5, 6, 7, channels)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    per_channel = [1.0, 2.0, 3.0] if channels else 3.0
    pipelines = [Normalize(per_channel, 7.0), Pad((1, 0, 2, 3)), ToMode("CHW"), ToMode("HWC"),
                 Compose([Normalize(per_channel, 7.0), Pad(2, value=per_channel), ToMode("CHW")])]
    for t in pipelines:
        want = np.stack(t.apply_batch(list(images)))
        got = t.apply_array(images)
        assert got.dtype == want.dtype and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="NHW or NHWC"):
        Pad(1).apply_array(images[0, 0])
    with pytest.raises(ValueError, match="channel"):
        Normalize([1, 2], 1).apply_array(images)


def test_dataloader_batch_path_equals_item_path(tmp_path):
    rng = np.random.default_rng(3)
    n = 19
    fields = (rng.integers(0, 256, (n, 6, 5), dtype=np.uint8), rng.integers(0, 10, n), rng.normal(size=n),
              rng.normal(size=(n, 2)).astype(np.float32), rng.integers(0, 2, n).astype(bool),
              rng.integers(0, 9, (n, 3)))
    _fake_mnist(tmp_path, gz=False)
    transform = Compose([Normalize(3.0, 2.0), Pad(1), ToMode("CHW")])
    for ds in (ArrayDataset(*fields), MNIST(tmp_path)):
        sampler = RandomSampler(ds, batch_size=4, seed=1)
        fast = _batches(DataLoader(ds, sampler, transform))
        sampler = RandomSampler(ds, batch_size=4, seed=1)
        slow = _batches(DataLoader(ItemsOnly(ds), sampler, transform))
        assert len(fast) == len(slow) > 0
        for bf, bs in zip(fast, slow):
            assert [f.dtype for f in bf] == [f.dtype for f in bs]
            for ff, fs in zip(bf, bs):
                np.testing.assert_array_equal(ff, fs)
    with pytest.raises(ValueError, match="int32 range"):
        list(DataLoader(ArrayDataset(np.zeros((2, 2)), np.array([0, 2**40])), SequentialSampler(range(2), 2)))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_match_serial(context):
    ds = _image_dataset()
    transform = Compose([Normalize(3.0, 2.0), Pad(1), ToMode("CHW")])

    epochs = 2 if context == "fork" else 1  # spawn start-up is slow; one epoch shows it works

    def run(workers):
        sampler = RandomSampler(ds, batch_size=4, seed=5)
        loader = DataLoader(ds, sampler, transform, num_workers=workers, multiprocessing_context=context)
        return [_batches(loader) for _ in range(epochs)]  # each epoch: new processes, new permutation

    serial, parallel = run(0), run(2)
    assert len(serial[0]) == 6
    if epochs == 2:
        assert [b[1].tolist() for b in serial[0]] != [b[1].tolist() for b in serial[1]]
    for epoch_s, epoch_p in zip(serial, parallel):
        assert len(epoch_s) == len(epoch_p)
        for bs, bp in zip(epoch_s, epoch_p):
            for fs, fp in zip(bs, bp):
                assert fs.dtype == fp.dtype
                np.testing.assert_array_equal(fs, fp)
    _assert_no_workers()


def test_dataloader_worker_exception_propagates():
    loader = DataLoader(FailingDataset(), SequentialSampler(range(20), 3), num_workers=2)
    seen = []
    with pytest.raises(Boom) as info:
        for batch in loader:
            seen.append(batch[1].tolist())
    assert seen == [[0, 1, 2], [3, 4, 5]]
    msg = str(info.value)
    assert "Caught Boom in DataLoader worker 0 while loading batch 2" in msg
    assert "Traceback" in msg and "__getitem__" in msg and "bad item 7" in msg
    _assert_no_workers()


def test_dataloader_worker_keyerror_is_readable():
    loader = DataLoader(FailingDataset(exc=KeyError), num_workers=2)
    with pytest.raises(KeyError) as info:
        list(loader)
    assert "\n" in str(info.value) and "bad item 7" in str(info.value)
    _assert_no_workers()


def test_dataloader_unpicklable_batch_is_an_error_not_a_hang():
    loader = DataLoader(ArrayDataset(np.arange(4)), num_workers=1, collator=lambda s: (lambda: s))
    with pytest.raises(Exception, match="Caught .* in DataLoader worker 0"):
        list(loader)
    _assert_no_workers()


def test_dataloader_early_break_stops_workers():
    ds = _image_dataset(200)
    loader = DataLoader(ds, SequentialSampler(ds, 2), num_workers=2)
    for i, _ in enumerate(loader):
        if i == 3:
            break
    _assert_no_workers()
    it = iter(loader)
    next(it)
    it.close()
    _assert_no_workers()


def test_dataloader_dead_worker_and_timeout():
    with pytest.raises(RuntimeError, match="exited unexpectedly with code 3"):
        list(DataLoader(FailingDataset(fail_at=None, exit_at=4), num_workers=2))
    _assert_no_workers()
    with pytest.raises(RuntimeError, match="timed out after 0.2 s waiting for batch 0"):
        list(DataLoader(FailingDataset(fail_at=None, sleep_at=0), num_workers=1, timeout=0.2))
    _assert_no_workers()


def test_dataloader_keyboard_interrupt_stops_workers():
    loader = DataLoader(FailingDataset(fail_at=None, sleep_at=2), num_workers=1)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            list(loader)
    finally:
        timer.cancel()
    _assert_no_workers()


def test_dataloader_argument_errors():
    ds = _image_dataset(4)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(TypeError, match="apply_batch"):
        DataLoader(ds, transform=lambda x: x)
    with pytest.raises(ValueError, match="timeout"):
        DataLoader(ds, timeout=-1)


def test_transform_base_is_abstract():
    with pytest.raises(NotImplementedError):
        Transform().apply(np.zeros((2, 2)))
