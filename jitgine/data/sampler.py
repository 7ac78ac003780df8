"""Batch samplers: which dataset indices make up each batch, as in MegEngine.

Iterating a sampler yields one list of indices per batch; ``len(sampler)`` is
the number of batches per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np

__all__ = ["Sampler", "SequentialSampler", "RandomSampler"]


class Sampler:
    """Base class: a sized iterable of index batches over ``dataset``."""

    def __init__(self, dataset: Sized, batch_size: int = 1, drop_last: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be a positive int, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.num_samples = len(dataset)

    def order(self) -> np.ndarray:
        """The indices of one epoch, in the order they are batched."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        indices = self.order().tolist()
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, len(indices)), self.batch_size):
            yield indices[start : start + self.batch_size]

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1


class SequentialSampler(Sampler):
    """Batches ``0, 1, ..., len(dataset) - 1`` in order."""

    def order(self) -> np.ndarray:
        return np.arange(self.num_samples)


class RandomSampler(Sampler):
    """A fresh random permutation every epoch.

    The generator is seeded once, so two samplers built with the same ``seed``
    produce the same sequence of epochs, and successive epochs differ.
    """

    def __init__(self, dataset: Sized, batch_size: int = 1, drop_last: bool = False, seed: int | None = None) -> None:
        super().__init__(dataset, batch_size, drop_last)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def order(self) -> np.ndarray:
        return self.rng.permutation(self.num_samples)
