"""Data loading as in ``megengine.data``: datasets, samplers, transforms and the DataLoader.

All of it is NumPy-only; batches come out as NumPy arrays.
"""

from . import dataset, sampler, transform
from .dataloader import Collator, DataLoader
from .sampler import RandomSampler, Sampler, SequentialSampler

__all__ = ["Collator", "DataLoader", "RandomSampler", "Sampler", "SequentialSampler", "dataset", "sampler", "transform"]
