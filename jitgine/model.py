"""`Model`: the training loop as one object, after MindSpore's `Model`.

    model = jg.Model(net, F.loss.cross_entropy, optim.SGD(net.parameters(), lr=0.05),
                     metrics={"accuracy": Accuracy()})
    history = model.train(10, train_loader, valid_loader=test_loader)
    print(model.eval(test_loader))        # {'loss': 0.31, 'accuracy': 0.89}

The training step (forward, `loss_fn`, backward, optimizer update) is traced
into one compiled function; so is the evaluation forward pass. A loader's
last, shorter batch is padded to the traced batch size for evaluation (the
padding rows are dropped before the loss and metrics), so evaluation never
compiles a second graph. `traced=False` runs the same steps eagerly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from tqdm import tqdm

from . import metric as metrics_module
from .autodiff import GradManager
from .jit import trace
from .tensor import Tensor, tensor

__all__ = ["Model", "Throughput"]

_METRICS_BY_NAME = {
    "accuracy": metrics_module.Accuracy,
    "precision": metrics_module.Precision,
    "recall": metrics_module.Recall,
}


class Throughput:
    """Samples per second, not counting the first batch (its step includes tracing and compiling)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.samples = 0

    def update(self, batch_size: int) -> None:
        if self.start is None:
            self.start = time.perf_counter()  # the end of the first (compiling) step
        else:
            self.samples += batch_size

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start if self.start is not None else 0.0
        return self.samples / elapsed if elapsed > 0 else 0.0


def _as_metrics(metrics: Mapping[str, Any] | Iterable[str] | None) -> dict[str, metrics_module.Metric]:
    if metrics is None:
        return {}
    if isinstance(metrics, Mapping):
        out = dict(metrics)
    else:
        out = {}
        for name in metrics:
            if name not in _METRICS_BY_NAME:
                raise ValueError(f"Model: unknown metric name {name!r}; names are {sorted(_METRICS_BY_NAME)}, "
                                 "or pass a dict of name -> Metric instance")
            out[name] = _METRICS_BY_NAME[name]()
    for name, m in out.items():
        if not all(hasattr(m, a) for a in ("clear", "update", "eval")):
            raise TypeError(f"Model: metric {name!r} ({m!r}) needs clear(), update(pred, label) and eval()")
    return out


def _split(batch: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"Model.{where}: the loader must yield (data, label) pairs, got {type(batch).__name__}"
                         + (f" of {len(batch)} fields" if isinstance(batch, (tuple, list)) else ""))
    data, label = (np.asarray(b.numpy() if isinstance(b, Tensor) else b) for b in batch)
    if label.dtype.kind in "iu" and label.dtype != np.int32:
        label = label.astype(np.int32)  # the loss functions take int32 class ids
    return data, label


class Model:
    """Train and evaluate `net` with `loss_fn(pred, label)` and `optimizer`.

    `metrics` is a dict of name -> `jitgine.metric.Metric` (or a list of names
    among 'accuracy', 'precision', 'recall'). `progress=False` hides the bars.
    """

    def __init__(self, net, loss_fn: Callable[[Tensor, Tensor], Tensor], optimizer,
                 metrics: Mapping[str, Any] | Iterable[str] | None = None, *, traced: bool = True,
                 progress: bool = True) -> None:
        if not callable(loss_fn):
            raise TypeError(f"Model: loss_fn must be callable (e.g. F.loss.cross_entropy), got {loss_fn!r}")
        if not hasattr(optimizer, "step"):
            raise TypeError(f"Model: optimizer must be a jitgine optimizer, got {optimizer!r}")
        self.net, self.loss_fn, self.optimizer = net, loss_fn, optimizer
        self.metrics = _as_metrics(metrics)
        self.traced, self.progress = traced, progress
        self.grad_manager = GradManager().attach(net.parameters())

        def train_step(data, label):
            with self.grad_manager:
                loss = self.loss_fn(self.net(data), label)
                self.grad_manager.backward(loss)
            self.optimizer.step().clear_grad()
            return loss

        def eval_step(data):
            return self.net(data)

        if traced:
            self.train_step, self.eval_step = trace(train_step), trace(eval_step)
        else:
            self.train_step = lambda x, y: train_step(tensor(x), tensor(y))
            self.eval_step = lambda x: eval_step(tensor(x))

    def train(self, epochs: int, loader: Iterable, valid_loader: Iterable | None = None) -> dict[str, list]:
        """Run `epochs` passes over `loader`; after each, evaluate on `valid_loader` if given.

        Returns per-epoch lists: 'loss' (mean training loss), 'images_per_second'
        (excluding each epoch's first step) and, with `valid_loader`, the
        validation 'val_loss' and 'val_<metric>' values.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"Model.train: epochs must be an int >= 0, got {epochs!r}")
        history: dict[str, list] = {"loss": [], "images_per_second": []}
        for epoch in range(epochs):
            self.net.train()
            losses, speed = [], Throughput()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", disable=not self.progress,
                       leave=False)
            for batch in bar:
                data, label = _split(batch, "train")
                losses.append(float(self.train_step(data, label).item()))
                speed.update(len(data))
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", img_s=f"{speed.rate:.0f}")
            if not losses:
                raise ValueError("Model.train: the loader yielded no batches")
            history["loss"].append(float(np.mean(losses)))
            history["images_per_second"].append(speed.rate)
            line = f"epoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.4f}"
            if valid_loader is not None:
                for name, value in self.eval(valid_loader).items():
                    history.setdefault(f"val_{name}", []).append(value)
                    if isinstance(value, float):
                        line += f"  val_{name} {value:.4f}"
            if self.progress:
                tqdm.write(f"{line}  {history['images_per_second'][-1]:.0f} images/s")
        self.net.train()
        return history

    def eval(self, loader: Iterable) -> dict[str, Any]:
        """The mean loss and every metric over `loader`, with the network in eval mode."""
        was_training = self.net.training
        self.net.eval()
        for m in self.metrics.values():
            m.clear()
        loss_sum, count, traced_batch = 0.0, 0, None
        try:
            for batch in tqdm(loader, desc="eval", unit="batch", disable=not self.progress, leave=False):
                data, label = _split(batch, "eval")
                n = len(data)
                if self.traced and traced_batch is not None and n < traced_batch:
                    # Pad to the traced batch size: one compiled graph serves every batch.
                    data = np.concatenate([data, np.zeros((traced_batch - n,) + data.shape[1:], data.dtype)])
                traced_batch = traced_batch or n
                pred = self.eval_step(data).numpy()[:n]
                loss_sum += float(self.loss_fn(tensor(pred), tensor(label)).item()) * n
                count += n
                for m in self.metrics.values():
                    m.update(pred, label)
        finally:
            self.net.train(was_training)
        if count == 0:
            raise ValueError("Model.eval: the loader yielded no batches")
        return {"loss": loss_sum / count, **{name: m.eval() for name, m in self.metrics.items()}}
