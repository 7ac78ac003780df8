"""Datasets: the abstract ``Dataset``, ``ArrayDataset`` and the MNIST-format readers.

``MNIST(root)`` and ``FashionMNIST(root)`` read the four standard IDX files
(optionally ``.gz``) from the folder ``root``::

    train-images-idx3-ubyte  train-labels-idx1-ubyte
    t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte

Each item is ``(image, label)``: a uint8 array of shape (28, 28) and an int.
``root=None`` selects the small dataset embedded in the package: the first
5,000 training and 1,000 test images of Fashion-MNIST (MIT licence, see
``embedded/LICENSE``). MNIST digits are not shipped, so ``MNIST(root=None)``
serves the same Fashion-MNIST slice; pass a folder with the real MNIST files
(or ``download=True``) to get digits.
"""

from __future__ import annotations

import abc
import os
import urllib.request
from pathlib import Path

import numpy as np

from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, read_pair

__all__ = ["Dataset", "ArrayDataset", "MNIST", "FashionMNIST", "EMBEDDED_ROOT"]

EMBEDDED_ROOT = Path(__file__).resolve().parent / "embedded"


class Dataset(abc.ABC):
    """A map-style dataset: ``len(ds)`` items, ``ds[i]`` returns item ``i``.

    A dataset whose items are tuples of array fields may also define
    ``batch(indices)`` returning one array per field with the items stacked;
    the DataLoader then fetches a batch with one fancy index per field instead
    of a Python loop over items.
    """

    @abc.abstractmethod
    def __getitem__(self, index: int):
        ...

    @abc.abstractmethod
    def __len__(self) -> int:
        ...


class ArrayDataset(Dataset):
    """Item ``i`` is ``(arrays[0][i], arrays[1][i], ...)``; all arrays share their first dimension."""

    def __init__(self, *arrays) -> None:
        if not arrays:
            raise ValueError("ArrayDataset needs at least one array")
        self.arrays = tuple(np.asarray(a) for a in arrays)
        for k, a in enumerate(self.arrays):
            if a.ndim == 0:
                raise ValueError(f"ArrayDataset: array {k} is a scalar; every array needs a first (sample) dimension")
        n = len(self.arrays[0])
        for k, a in enumerate(self.arrays[1:], start=1):
            if len(a) != n:
                shapes = ", ".join(str(x.shape) for x in self.arrays)
                raise ValueError(
                    f"ArrayDataset: array {k} has {len(a)} samples but array 0 has {n} "
                    f"(shapes {shapes}); all arrays must have the same length along the first axis"
                )

    def __getitem__(self, index: int) -> tuple:
        return tuple(a[index] for a in self.arrays)

    def batch(self, indices: list[int]) -> tuple[np.ndarray, ...]:
        return tuple(a[indices] for a in self.arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])


_SPLITS = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MNIST(Dataset):
    """MNIST handwritten digits from IDX(.gz) files in ``root`` (see the module docstring).

    ``download=True`` fetches missing files from ``mirrors`` (gzip versions);
    when that fails the error lists the files to place in ``root`` by hand.
    """

    name = "MNIST"
    classes = tuple(str(d) for d in range(10))
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    download_timeout = 10.0  # seconds per request; offline machines should fail fast
    manual_hint = ""

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True, download: bool = False) -> None:
        self.root = EMBEDDED_ROOT if root is None else Path(root)
        self.train = bool(train)
        stems = _SPLITS[self.train]
        if download and root is not None:
            self._download(stems)
        paths = [self._find(stem) for stem in stems]
        if None in paths:
            raise FileNotFoundError(self._missing_message(stems, "not found"))
        self.images, self.labels = read_pair(*paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])

    def batch(self, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return self.images[indices], self.labels[indices]

    def __len__(self) -> int:
        return len(self.labels)

    def _find(self, stem: str) -> Path | None:
        for name in (stem, stem + ".gz"):
            if (self.root / name).is_file():
                return self.root / name
        return None

    def _missing_message(self, stems, problem: str) -> str:
        need = [s for s in stems if self._find(s) is None]
        listing = "\n".join(f"  {self.root / s}.gz  (or uncompressed: {s})" for s in need)
        return (
            f"{self.name}: {problem}. Put these files into the folder {self.root}:\n{listing}\n"
            f"They are the standard IDX files published at {self.mirrors[0]}.{self.manual_hint}"
        )

    def _download(self, stems) -> None:
        missing = [s for s in stems if self._find(s) is None]
        if not missing:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        failures = []
        for stem in missing:
            magic = IMAGES_MAGIC if "images" in stem else LABELS_MAGIC
            for mirror in self.mirrors:
                url = mirror + stem + ".gz"
                try:
                    self._fetch(url, self.root / (stem + ".gz"), magic)
                    break
                except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
                    failures.append(f"  {url}: {e}")
            else:
                raise FileNotFoundError(
                    self._missing_message(stems, "download failed (offline?)") + "\nAttempts:\n" + "\n".join(failures)
                )

    def _fetch(self, url: str, target: Path, magic: int) -> None:
        # Download beside the target and validate before renaming, so an
        # interrupted or corrupt download never looks like a finished file.
        tmp = target.with_name(f".part{os.getpid()}.{target.name}")  # keeps the .gz suffix
        try:
            with urllib.request.urlopen(url, timeout=self.download_timeout) as r, open(tmp, "wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
            read_idx(tmp, magic)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando, MIT licence): the same format and sizes as MNIST, 10 clothing classes."""

    name = "FashionMNIST"
    classes = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
    mirrors = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    )
    manual_hint = (
        " Debian/Ubuntu's package dataset-fashion-mnist ships them (`dpkg -L dataset-fashion-mnist` shows where);"
        " FashionMNIST(root=None) uses the embedded 5,000/1,000-image subset instead."
    )
