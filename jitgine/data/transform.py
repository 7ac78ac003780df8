"""Image transforms with MegEngine's semantics (images are HW or HWC NumPy arrays).

A transform maps one image with ``apply``, a sequence of images with
``apply_batch``, and a stacked batch (NHW or NHWC array) with ``apply_array``.
The DataLoader applies the transform to the first field of each sample (the
image) and leaves the other fields (the label) untouched; for datasets that
hand out whole batches it calls ``apply_array``, which the built-in
transforms compute on the whole batch at once (a loop per image costs more
than a LeNet training step).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Transform", "Compose", "Normalize", "Pad", "ToMode"]


def _image(image, who: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"{who}: expected an HW or HWC image, got shape {image.shape}")
    return image


class Transform:
    """Base class: override ``apply``; ``apply_batch`` maps it over a sequence."""

    def apply(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def apply_batch(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        return tuple(self.apply(image) for image in images)

    def apply_array(self, images: np.ndarray) -> np.ndarray:
        """``apply`` on each image of a stacked batch (first axis = images), stacked again."""
        if len(images) == 0:
            raise ValueError(f"{type(self).__name__}.apply_array: the batch is empty")
        return np.stack(self.apply_batch(list(images)))


def _stack(images, who: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"{who}: expected a batch of HW or HWC images (NHW or NHWC), got shape {images.shape}")
    return images


class Compose(Transform):
    """Apply ``transforms`` one after the other."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not hasattr(t, "apply"):
                raise TypeError(f"Compose: {t!r} is not a Transform (it has no apply method)")

    def apply(self, image: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            image = t.apply(image)
        return image

    def apply_array(self, images: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            images = t.apply_array(images)
        return images


class Normalize(Transform):
    """``(image - mean) / std`` in float32; ``mean``/``std`` are scalars or per-channel sequences."""

    def __init__(self, mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 1.0) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.ndim > 1:
                raise ValueError(f"Normalize: {name} must be a number or a per-channel sequence, got shape {v.shape}")
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must be non-zero, got {std!r}")

    def apply(self, image: np.ndarray) -> np.ndarray:
        return self._normalize(_image(image, "Normalize"), channel_axis=2)

    def apply_array(self, images: np.ndarray) -> np.ndarray:
        return self._normalize(_stack(images, "Normalize.apply_array"), channel_axis=3)

    def _normalize(self, image: np.ndarray, channel_axis: int) -> np.ndarray:
        channels = image.shape[channel_axis] if image.ndim > channel_axis else 1
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.size not in (1, channels):
                raise ValueError(f"Normalize: {name} has {v.size} values but the image {image.shape} has {channels} channel(s)")
        # Per-channel values broadcast along the last (channel) axis of HWC.
        mean, std = (v.reshape(-1) if v.size > 1 else v.reshape(()) for v in (self.mean, self.std))
        return ((image.astype(np.float32) - mean) / std).astype(np.float32, copy=False)


class Pad(Transform):
    """Pad H and W with a constant.

    ``size`` is one int for all four sides or ``(top, bottom, left, right)``
    (OpenCV's order, as MegEngine); ``value`` is a number or one per channel.
    """

    def __init__(self, size: int | Sequence[int] = 0, value: float | Sequence[float] = 0) -> None:
        sides = (size,) * 4 if isinstance(size, (int, np.integer)) else tuple(size)
        if len(sides) != 4 or not all(isinstance(s, (int, np.integer)) and s >= 0 for s in sides):
            raise ValueError(f"Pad: size must be a non-negative int or (top, bottom, left, right), got {size!r}")
        self.size = tuple(int(s) for s in sides)
        self.value = value

    def apply(self, image: np.ndarray) -> np.ndarray:
        return self._pad(_image(image, "Pad"), batched=False)

    def apply_array(self, images: np.ndarray) -> np.ndarray:
        return self._pad(_stack(images, "Pad.apply_array"), batched=True)

    def _pad(self, image: np.ndarray, batched: bool) -> np.ndarray:
        lead = image.shape[:1] if batched else ()
        h, w, *channels = image.shape[len(lead):]
        top, bottom, left, right = self.size
        out = np.empty(lead + (h + top + bottom, w + left + right) + tuple(channels), dtype=image.dtype)
        value = np.asarray(self.value)
        if value.ndim == 1 and (len(channels) != 1 or value.size != channels[0]):
            shape = image.shape[1:] if batched else image.shape
            raise ValueError(f"Pad: {value.size} fill values do not match the channels of image {shape}")
        fill = value.astype(image.dtype)
        if not np.all(fill == value):
            raise ValueError(f"Pad: fill value {self.value!r} is not representable in the image dtype {image.dtype}")
        out[...] = fill
        out[(slice(None),) * len(lead) + (slice(top, top + h), slice(left, left + w))] = image
        return out


class ToMode(Transform):
    """Change the layout: ``'CHW'`` turns HW into 1HW and HWC into CHW; ``'HWC'`` turns HW into HW1."""

    def __init__(self, mode: str = "CHW") -> None:
        if mode not in ("CHW", "HWC"):
            raise ValueError(f"ToMode: mode must be 'CHW' or 'HWC', got {mode!r}")
        self.mode = mode

    def apply(self, image: np.ndarray) -> np.ndarray:
        image = _image(image, "ToMode")
        if image.ndim == 2:
            image = image[:, :, None]
        if self.mode == "CHW":
            image = np.moveaxis(image, 2, 0)
        return np.ascontiguousarray(image)

    def apply_array(self, images: np.ndarray) -> np.ndarray:
        images = _stack(images, "ToMode.apply_array")
        if images.ndim == 3:
            images = images[..., None]
        if self.mode == "CHW":
            images = np.moveaxis(images, 3, 1)
        return np.ascontiguousarray(images)
