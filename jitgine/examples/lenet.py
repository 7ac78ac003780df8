"""Train LeNet on (Fashion-)MNIST, as in the MegEngine tutorial.

    python -m jitgine.examples.lenet                      # embedded 5k/1k Fashion-MNIST slice
    python -m jitgine.examples.lenet --data ../shared/data/fashion-mnist --epochs 10
    python -m jitgine.examples.lenet --eager --threads 1 --save lenet.mge
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

import jitgine
import jitgine.functional as F
import jitgine.module as M
import jitgine.optimizer as optim
from jitgine.autodiff import GradManager
from jitgine.data import DataLoader, RandomSampler, SequentialSampler
from jitgine.data.dataset import MNIST, FashionMNIST
from jitgine.data.transform import Compose, Normalize, Pad, ToMode
from jitgine.jit import trace


class LeNet(M.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = M.Conv2d(1, 6, 5)
        self.relu1 = M.ReLU()
        self.pool1 = M.MaxPool2d(2)
        self.conv2 = M.Conv2d(6, 16, 5)
        self.relu2 = M.ReLU()
        self.pool2 = M.MaxPool2d(2)
        self.fc1 = M.Linear(16 * 5 * 5, 120)
        self.relu3 = M.ReLU()
        self.fc2 = M.Linear(120, 84)
        self.relu4 = M.ReLU()
        self.classifier = M.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = F.flatten(x, 1)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.classifier(x)


def loaders(data: str | None, batch_size: int, seed: int, limit: int | None = None):
    """Training and test loaders; `data` is a folder of MNIST/Fashion-MNIST IDX files (None: embedded)."""
    dataset_class = FashionMNIST if data is None or "fashion" in str(data).lower() else MNIST
    train_set = dataset_class(root=data, train=True)
    test_set = dataset_class(root=data, train=False)
    if limit is not None:
        from jitgine.data.dataset import ArrayDataset

        def head(dataset, n):
            items = [dataset[i] for i in range(min(n, len(dataset)))]
            return ArrayDataset(np.stack([i[0] for i in items]), np.array([i[1] for i in items]))

        train_set, test_set = head(train_set, limit), head(test_set, max(limit // 5, 64))
    transform = Compose([Normalize(mean=33.318, std=78.567), Pad(2), ToMode("CHW")])
    train = DataLoader(train_set, sampler=RandomSampler(train_set, batch_size, drop_last=True, seed=seed),
                       transform=transform)
    test = DataLoader(test_set, sampler=SequentialSampler(test_set, batch_size=256), transform=transform)
    return train, test


def evaluate(net: M.Module, test_loader) -> float:
    net.eval()
    correct = total = 0
    for data, label in test_loader:
        predicted = net(jitgine.tensor(data)).argmax(axis=1).numpy()
        correct += int((predicted == label).sum())
        total += len(label)
    net.train()
    return correct / max(total, 1)


def train(data: str | None = None, epochs: int = 1, traced: bool = True, threads: int | None = None,
          save: str | None = None, batch_size: int = 64, lr: float = 0.05, seed: int = 0,
          limit: int | None = None, quiet: bool = False) -> dict:
    """Train and evaluate LeNet; returns the per-epoch losses and accuracies."""
    if threads is not None:
        jitgine.set_num_threads(threads)
    jitgine.random.seed(seed)
    train_loader, test_loader = loaders(data, batch_size, seed, limit)
    net = LeNet()
    gm = GradManager().attach(net.parameters())
    opt = optim.SGD(net.parameters(), lr=lr)

    def train_step(images, labels):
        with gm:
            loss = F.loss.cross_entropy(net(images), labels)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    step = trace(train_step, symbolic=True) if traced else (
        lambda x, y: train_step(jitgine.tensor(x), jitgine.tensor(y)))
    history = {"loss": [], "accuracy": [], "images_per_second": []}
    for epoch in range(epochs):
        losses, seen, start = [], 0, time.perf_counter()
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", disable=quiet, unit="batch")
        for images, labels in bar:
            loss = step(images, labels.astype(np.int32))
            losses.append(float(loss.item()))
            seen += len(labels)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}",
                            img_s=f"{seen / (time.perf_counter() - start):.0f}")
        elapsed = time.perf_counter() - start
        accuracy = evaluate(net, test_loader)
        history["loss"].append(float(np.mean(losses)))
        history["accuracy"].append(accuracy)
        history["images_per_second"].append(seen / elapsed)
        if not quiet:
            print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}  test accuracy {100 * accuracy:.2f}%  "
                  f"({seen / elapsed:.0f} images/s)")
    if save:
        jitgine.save(net.state_dict(), save)
        if not quiet:
            print(f"saved {save}")
    return history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train LeNet on (Fashion-)MNIST with jitgine.")
    parser.add_argument("--data", default=None, help="folder with the four IDX files (default: embedded slice)")
    parser.add_argument("--epochs", type=int, default=1)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--traced", dest="traced", action="store_true", default=True,
                      help="compile the whole training step (default)")
    mode.add_argument("--eager", dest="traced", action="store_false", help="run op by op")
    parser.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    parser.add_argument("--save", default=None, help="write the trained state dict here (jitgine.save)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    args = parser.parse_args(argv)
    train(args.data, args.epochs, args.traced, args.threads, args.save, args.batch_size, args.lr,
          args.seed, args.limit)


if __name__ == "__main__":
    main()
