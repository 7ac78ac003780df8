"""Classification metrics with MindSpore's interface: ``clear()``, ``update(pred, label)``, ``eval()``.

``pred`` is either scores of shape (N, C) (logits or probabilities; the class
is the arg-max, first index on ties) or class ids of shape (N,). ``label`` is
class ids (N,) or one-hot (N, C). Anything ``np.asarray`` accepts works,
including jitgine Tensors. Metrics accumulate over ``update`` calls until
``clear``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Metric", "Accuracy", "Precision", "Recall", "ConfusionMatrix"]


def _class_ids(x: Any, what: str, metric: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{metric}: {what} must be class ids of shape (N,) here, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise ValueError(
        f"{metric}: {what} of shape {arr.shape} must hold integer class ids, got dtype {arr.dtype}"
        + (" with non-integer values; pass scores as (N, C)" if arr.dtype.kind == "f" else "")
    )


def _scores_and_labels(pred: Any, label: Any, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(pred as (N, C) scores or (N,) ids, label as (N,) ids), shapes checked."""
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.ndim not in (1, 2):
        raise ValueError(f"{metric}: pred must be scores (N, C) or class ids (N,), got shape {pred.shape}")
    if label.ndim == 2:
        if label.shape != pred.shape:
            raise ValueError(
                f"{metric}: one-hot label of shape {label.shape} does not match pred of shape {pred.shape}"
            )
        label = label.argmax(axis=1)
    label = _class_ids(label, "label", metric)
    if len(pred) != len(label):
        raise ValueError(f"{metric}: pred has {len(pred)} samples (shape {pred.shape}) but label has {len(label)}")
    if pred.ndim == 1:
        pred = _class_ids(pred, "pred", metric)
    elif pred.shape[1] == 0:
        raise ValueError(f"{metric}: pred scores have shape {pred.shape}: no classes")
    if label.size and (label.min() < 0 or (pred.ndim == 2 and label.max() >= pred.shape[1])):
        upper = f"{pred.shape[1]} (the number of score columns)" if pred.ndim == 2 else "num_classes"
        raise ValueError(f"{metric}: label class ids must lie in [0, {upper}), got {label.min()}..{label.max()}")
    return pred, label


class Metric:
    """Base class: accumulate with ``update``, read with ``eval``, reset with ``clear``."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        raise NotImplementedError

    def update(self, pred: Any, label: Any) -> None:
        raise NotImplementedError

    def eval(self) -> Any:
        raise NotImplementedError


class Accuracy(Metric):
    """Fraction of samples whose label is among the ``topk`` highest scores.

    With scores (N, C) the label's rank is its position in a stable descending
    sort (ties go to the lower class index, as arg-max); with ids (N,) only
    ``topk=1`` makes sense.
    """

    def __init__(self, topk: int = 1) -> None:
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"Accuracy: topk must be a positive int, got {topk!r}")
        self.topk = topk
        super().__init__()

    def clear(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, pred: Any, label: Any) -> None:
        pred, label = _scores_and_labels(pred, label, "Accuracy")
        if pred.ndim == 1:
            if self.topk != 1:
                raise ValueError(f"Accuracy(topk={self.topk}) needs scores of shape (N, C), got class ids {pred.shape}")
            hits = pred == label
        else:
            target = pred[np.arange(len(label)), label][:, None]
            classes = np.arange(pred.shape[1])
            rank = np.sum((pred > target) | ((pred == target) & (classes < label[:, None])), axis=1)
            hits = rank < self.topk
        self.correct += int(np.count_nonzero(hits))
        self.total += len(label)

    def eval(self) -> float:
        if self.total == 0:
            raise RuntimeError("Accuracy.eval(): no samples yet; call update(pred, label) first")
        return self.correct / self.total


class ConfusionMatrix(Metric):
    """Counts ``m[true, predicted]`` (rows are labels, columns predictions), an int64 (C, C) array."""

    def __init__(self, num_classes: int) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"ConfusionMatrix: num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        super().__init__()

    def clear(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: Any, label: Any) -> None:
        name = type(self).__name__
        pred, label = _scores_and_labels(pred, label, name)
        if pred.ndim == 2:
            if pred.shape[1] != self.num_classes:
                raise ValueError(f"{name}: pred has {pred.shape[1]} class scores but num_classes={self.num_classes}")
            pred = pred.argmax(axis=1)
        for what, ids in (("label", label), ("pred", pred)):
            if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
                raise ValueError(
                    f"{name}: {what} class ids must lie in [0, {self.num_classes}), got {ids.min()}..{ids.max()}"
                )
        self.matrix += np.bincount(label * self.num_classes + pred, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def eval(self) -> np.ndarray:
        return self.matrix.copy()


class _PerClass(ConfusionMatrix):
    """Precision/Recall from a confusion matrix that grows when ``num_classes`` is None."""

    _axis: int  # axis of the matrix summed for the denominator: 0 = predicted (precision), 1 = true (recall)

    def __init__(self, num_classes: int | None = None, average: str | None = "macro") -> None:
        if average not in ("macro", "micro", "weighted", None):
            raise ValueError(f"{type(self).__name__}: average must be 'macro', 'micro', 'weighted' or None, got {average!r}")
        self.average = average
        self.fixed = num_classes is not None
        super().__init__(num_classes if self.fixed else 1)

    def update(self, pred: Any, label: Any) -> None:
        if not self.fixed:
            p, lab = _scores_and_labels(pred, label, type(self).__name__)
            needed = max(
                p.shape[1] if p.ndim == 2 else int(p.max(initial=-1)) + 1,
                int(lab.max(initial=-1)) + 1,
                self.num_classes,
            )
            if needed > self.num_classes:
                grown = np.zeros((needed, needed), np.int64)
                grown[: self.num_classes, : self.num_classes] = self.matrix
                self.matrix, self.num_classes = grown, needed
        super().update(pred, label)

    def clear(self) -> None:
        if not self.fixed:
            self.num_classes = 1
        super().clear()

    def eval(self) -> float | np.ndarray:
        """Per-class values (an array) for ``average=None``, else one float.

        A class with a zero denominator scores 0. 'macro' averages over the
        classes that occur in labels or predictions; 'weighted' weights by
        each class's number of labels; 'micro' pools all samples (for
        single-label data it equals accuracy).
        """
        m = self.matrix
        if m.sum() == 0:
            raise RuntimeError(f"{type(self).__name__}.eval(): no samples yet; call update(pred, label) first")
        tp = np.diag(m).astype(np.float64)
        denom = m.sum(axis=self._axis).astype(np.float64)
        per_class = np.divide(tp, denom, out=np.zeros_like(tp), where=denom > 0)
        if self.average is None:
            return per_class
        if self.average == "micro":
            return float(tp.sum() / m.sum())
        if self.average == "weighted":
            support = m.sum(axis=1)
            return float(np.sum(per_class * support) / support.sum())
        present = (m.sum(axis=0) + m.sum(axis=1)) > 0
        return float(per_class[present].mean())


class Precision(_PerClass):
    """Of the samples predicted as class c, the fraction that are c."""

    _axis = 0


class Recall(_PerClass):
    """Of the samples of class c, the fraction predicted as c."""

    _axis = 1
