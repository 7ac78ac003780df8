"""Train LeNet on (Fashion-)MNIST, as in the MegEngine tutorial.

    python -m jitgine.examples.lenet                      # embedded 5k/1k Fashion-MNIST slice
    python -m jitgine.examples.lenet --data ../shared/data/fashion-mnist --epochs 10
    python -m jitgine.examples.lenet --eager --threads 1 --save lenet.mge

The whole training step - forward, loss, backward and the SGD update - is
traced on its first call and compiled into one native function; every later
step is one call into that code. `make_train_step` builds the model and the
step (`jitgine-ir` uses it to show the compiled LeNet step).
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
from jitgine.data import transform as T
from jitgine.data.dataset import MNIST, ArrayDataset, FashionMNIST
from jitgine.jit import trace
from jitgine.model import Throughput

# Mean and standard deviation of the training pixels (0-255 scale), for Normalize.
PIXEL_STATS = {"FashionMNIST": (72.94, 90.02), "MNIST": (33.32, 78.57)}


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


def build_dataloaders(data: str | None = None, batch_size: int = 64, seed: int = 0, limit: int | None = None):
    """Training and test loaders; `data` is a folder of MNIST/Fashion-MNIST IDX files (None: embedded slice)."""
    dataset_class = FashionMNIST if data is None or "fashion" in str(data).lower() else MNIST
    train_dataset = dataset_class(root=data, train=True)
    test_dataset = dataset_class(root=data, train=False)
    if limit is not None:  # the first `limit` training and limit/4 test images
        train_dataset = ArrayDataset(*train_dataset.batch(list(range(min(limit, len(train_dataset))))))
        test_dataset = ArrayDataset(*test_dataset.batch(list(range(min(max(limit // 4, 1), len(test_dataset))))))

    mean, std = PIXEL_STATS[dataset_class.name]
    transform = T.Compose([T.Normalize(mean=mean, std=std), T.Pad(2), T.ToMode("CHW")])
    train_sampler = RandomSampler(train_dataset, batch_size=batch_size, drop_last=True, seed=seed)
    train_dataloader = DataLoader(train_dataset, sampler=train_sampler, transform=transform)
    test_sampler = SequentialSampler(test_dataset, batch_size=200)
    test_dataloader = DataLoader(test_dataset, sampler=test_sampler, transform=transform)
    return train_dataloader, test_dataloader


def make_train_step(net: LeNet | None = None, lr: float = 0.05, traced: bool = True):
    """(net, train_step): `train_step(images, labels)` runs one SGD step and returns the loss.

    `images` are float32 (N, 1, 32, 32), `labels` int32 (N,) NumPy arrays.
    """
    net = LeNet() if net is None else net
    gm = GradManager().attach(net.parameters())
    optimizer = optim.SGD(net.parameters(), lr=lr)

    def train_step(images, labels):
        with gm:
            logits = net(images)
            loss = F.loss.cross_entropy(logits, labels)
            gm.backward(loss)
        optimizer.step().clear_grad()
        return loss

    if traced:
        return net, trace(train_step, symbolic=True)
    return net, lambda images, labels: train_step(jitgine.tensor(images), jitgine.tensor(labels))


def make_eval_step(net: LeNet, traced: bool = True):
    """`eval_step(images)` returns the logits (run it with the network in eval mode)."""

    def eval_step(images):
        return net(images)

    return trace(eval_step, symbolic=True) if traced else (lambda images: eval_step(jitgine.tensor(images)))


def evaluate(net: LeNet, eval_step, test_dataloader) -> float:
    """Test accuracy."""
    net.eval()
    correct = total = 0
    for images, labels in test_dataloader:
        predicted = eval_step(images).numpy().argmax(axis=1)
        correct += int((predicted == labels).sum())
        total += len(labels)
    net.train()
    return correct / max(total, 1)


def train(data: str | None = None, epochs: int = 15, traced: bool = True, threads: int | None = None,
          save: str | None = None, batch_size: int = 64, lr: float = 0.05, seed: int = 0,
          limit: int | None = None, quiet: bool = False) -> tuple[LeNet, dict]:
    """Train and evaluate LeNet: (the network, per-epoch 'loss', 'accuracy', 'images_per_second', 'seconds')."""
    start = time.perf_counter()
    if threads is not None:
        jitgine.set_num_threads(threads)
    jitgine.random.seed(seed)
    train_dataloader, test_dataloader = build_dataloaders(data, batch_size, seed, limit)
    net, train_step = make_train_step(lr=lr, traced=traced)
    eval_step = make_eval_step(net, traced=traced)
    say = (lambda text: None) if quiet else tqdm.write
    say(f"LeNet on {len(train_dataloader.dataset)} {'embedded ' if data is None else ''}"
        f"{type(train_dataloader.dataset).__name__ if limit is None else 'images'}, "
        f"{'traced' if traced else 'eager'}, {jitgine.get_num_threads()} thread(s)")

    history = {"loss": [], "accuracy": [], "images_per_second": [], "seconds": []}
    for epoch in range(epochs):
        losses, speed = [], Throughput()
        bar = tqdm(train_dataloader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", disable=quiet, leave=False)
        for images, labels in bar:
            loss = train_step(images, labels)
            losses.append(float(loss.item()))
            speed.update(len(labels))
            if traced and epoch == 0 and len(losses) == 1:
                say(f"traced and compiled the training step in {train_step.compile_seconds:.1f} s")
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", img_s=f"{speed.rate:.0f}")
        images_per_second = speed.rate  # training only: the evaluation's first call compiles too
        accuracy = evaluate(net, eval_step, test_dataloader)
        history["loss"].append(float(np.mean(losses)))
        history["accuracy"].append(accuracy)
        history["images_per_second"].append(images_per_second)
        history["seconds"].append(time.perf_counter() - start)
        say(f"epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f}  test accuracy {100 * accuracy:.2f}%  "
            f"{images_per_second:.0f} images/s  ({time.perf_counter() - start:.0f} s elapsed)")
    if save:
        jitgine.save(net.state_dict(), save)
        say(f"saved {save}; restore with net.load_state_dict(jitgine.load({save!r}))")
    return net, history


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="jitgine-train lenet",
                                     description="Train LeNet on (Fashion-)MNIST with jitgine.")
    parser.add_argument("--data", default=None,
                        help="folder with the four (Fashion-)MNIST IDX files (default: the embedded 5k/1k slice)")
    parser.add_argument("--epochs", type=int, default=15)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--traced", dest="traced", action="store_true", default=True,
                      help="compile the whole training step (default)")
    mode.add_argument("--eager", dest="traced", action="store_false", help="run op by op")
    parser.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
    parser.add_argument("--save", default="lenet.mge", help="checkpoint path (default: lenet.mge; '' skips)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    args = parser.parse_args(argv)
    train(args.data, args.epochs, args.traced, args.threads, args.save, args.batch_size, args.lr,
          args.seed, args.limit)


if __name__ == "__main__":
    main()
