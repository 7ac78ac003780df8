"""Build the small dataset embedded in the package (``jitgine/data/embedded/``).

It is the first 5,000 training and the first 1,000 test images and labels of
Fashion-MNIST, written as the standard four IDX gz files (reproducibly: no
timestamp in the gzip header) next to the dataset's MIT licence notice. The
slice's class balance is checked so that the default dataset stays usable for
training and evaluation. Run from the repository root::

    python -m jitgine.data.make_embedded [--source ../shared/data/fashion-mnist] [--out jitgine/data/embedded]

The source folder needs the full Fashion-MNIST IDX(.gz) files (e.g. from
Debian's ``dataset-fashion-mnist`` package or the Fashion-MNIST GitHub page).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .dataset import EMBEDDED_ROOT, FashionMNIST
from .idx import write_idx

TRAIN_COUNT = 5000
TEST_COUNT = 1000
# Every class must hold at least this fraction of an even share (1/10 of the slice).
MIN_CLASS_SHARE = 0.8

LICENSE = """\
The files in this folder are a subset of Fashion-MNIST
(https://github.com/zalandoresearch/fashion-mnist): the first 5,000 training
and the first 1,000 test images and labels, in the original IDX format.

The MIT License (MIT)

Copyright (c) 2017 Zalando SE

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def check_balance(labels: np.ndarray, split: str, num_classes: int = 10) -> np.ndarray:
    """Per-class counts; raise if a class is badly under-represented in the slice."""
    counts = np.bincount(labels, minlength=num_classes)
    floor = MIN_CLASS_SHARE * len(labels) / num_classes
    if counts.min() < floor:
        raise ValueError(f"{split} slice is unbalanced: class counts {counts.tolist()}, each needs >= {floor:.0f}")
    return counts


def build(source: Path, out: Path, train_count: int = TRAIN_COUNT, test_count: int = TEST_COUNT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for train, count, split in ((True, train_count, "train"), (False, test_count, "t10k")):
        full = FashionMNIST(source, train=train)
        if len(full) < count:
            raise ValueError(f"{source} holds only {len(full)} {split} images, {count} requested")
        images, labels = full.images[:count], full.labels[:count]
        counts = check_balance(labels, split)
        write_idx(out / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(out / f"{split}-labels-idx1-ubyte.gz", labels)
        print(f"{split}: {count} images {images.shape[1:]}, class counts {counts.tolist()}")
    (out / "LICENSE").write_text(LICENSE)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    default_source = Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion-mnist"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=default_source, help="folder with the full Fashion-MNIST files")
    parser.add_argument("--out", type=Path, default=EMBEDDED_ROOT, help="output folder")
    parser.add_argument("--train", type=int, default=TRAIN_COUNT, help="number of training images")
    parser.add_argument("--test", type=int, default=TEST_COUNT, help="number of test images")
    args = parser.parse_args(argv)
    build(args.source, args.out, args.train, args.test)


if __name__ == "__main__":
    main()
