"""The PyTorch twin of `python -m jitgine.examples.lenet`: same LeNet, same data, same numbers.

Same data pipeline (jitgine.data: the same IDX reader, Normalize/Pad/ToMode
constants, RandomSampler with the same seed, batch 64, drop_last), the same
LeNet with PyTorch's default initialisation (which jitgine's layers copy),
cross-entropy and SGD lr 0.05; evaluation per epoch in batches of 200 under
`torch.no_grad()`. Training images/s exclude each epoch's first step, as the
jitgine example does.

    python benchmarks/lenet_torch.py                     # embedded slice, 1 and 2 threads
    python benchmarks/lenet_torch.py --data ../shared/data/fashion-mnist --epochs 10 --threads 2
"""

from __future__ import annotations

import _common  # noqa: F401  (unsets OPENBLAS_CORETYPE before NumPy loads)

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as TF

from jitgine.examples.lenet import build_dataloaders
from jitgine.model import Throughput


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.classifier = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(TF.relu(self.conv1(x)))
        x = self.pool2(TF.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = TF.relu(self.fc1(x))
        x = TF.relu(self.fc2(x))
        return self.classifier(x)


def evaluate(net: nn.Module, test_dataloader) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in test_dataloader:
            predicted = net(torch.from_numpy(images)).argmax(dim=1).numpy()
            correct += int((predicted == labels).sum())
            total += len(labels)
    net.train()
    return correct / max(total, 1)


def train(data: str | None, epochs: int, threads: int, seed: int = 0, lr: float = 0.05,
          batch_size: int = 64, limit: int | None = None) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    train_dataloader, test_dataloader = build_dataloaders(data, batch_size, seed, limit)
    net = LeNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    start = time.perf_counter()
    history = {"loss": [], "accuracy": [], "images_per_second": [], "seconds": []}
    for epoch in range(epochs):
        losses, speed = [], Throughput()
        for images, labels in train_dataloader:
            logits = net(torch.from_numpy(images))
            loss = TF.cross_entropy(logits, torch.from_numpy(labels).long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            speed.update(len(labels))
        images_per_second = speed.rate
        accuracy = evaluate(net, test_dataloader)
        for key, value in (("loss", float(np.mean(losses))), ("accuracy", accuracy),
                           ("images_per_second", images_per_second), ("seconds", time.perf_counter() - start)):
            history[key].append(value)
        print(f"  torch, {threads} thread(s), epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f}  "
              f"test accuracy {100 * accuracy:.2f}%  {images_per_second:.0f} images/s  "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
    return history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="IDX folder (default: the embedded slice)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="*", default=_common.thread_counts())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (speed runs)")
    args = parser.parse_args(argv)
    print(f"PyTorch {torch.__version__} LeNet twin, data={args.data or 'embedded'}, threads {args.threads}")
    for threads in args.threads:
        history = train(args.data, args.epochs, threads, args.seed, limit=args.limit)
        print(f"torch {threads} thread(s): final test accuracy {100 * history['accuracy'][-1]:.2f}% "
              f"(best {100 * max(history['accuracy']):.2f}%), median training speed "
              f"{np.median(history['images_per_second']):.0f} images/s")


if __name__ == "__main__":
    sys.exit(main())
