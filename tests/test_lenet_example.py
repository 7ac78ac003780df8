"""The main job: `python -m jitgine.examples.lenet` / `jitgine-train lenet` on a tiny slice (eager: cheap to compile)."""

import re

import numpy as np
import pytest

import jitgine
from jitgine.examples import lenet, train as train_cli


def test_cli_trains_saves_and_the_checkpoint_reloads(tmp_path, capsys):
    path = tmp_path / "lenet.mge"
    train_cli.main(["lenet", "--eager", "--limit", "128", "--epochs", "4", "--lr", "0.1", "--save", str(path)])
    out = capsys.readouterr().out
    losses = [float(x) for x in re.findall(r"epoch \d/4: loss ([0-9.]+)\s+test accuracy [0-9.]+%", out)]
    assert len(losses) == 4 and losses[-1] < losses[0], out
    assert path.is_file() and "restore with net.load_state_dict" in out

    # The checkpoint reproduces the network the same command trains (same seed, same steps).
    net, history = lenet.train(traced=False, limit=128, epochs=4, lr=0.1, quiet=True)
    assert history["loss"] == pytest.approx(losses, abs=1e-4)
    fresh = lenet.LeNet()
    fresh.load_state_dict(jitgine.load(str(path)))
    _, test_loader = lenet.build_dataloaders(limit=128)
    images, _ = next(iter(test_loader))
    net.eval(), fresh.eval()
    np.testing.assert_array_equal(fresh(jitgine.tensor(images)).numpy(), net(jitgine.tensor(images)).numpy())


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit, match="examples: lenet"):
        train_cli.main([])
    with pytest.raises(SystemExit, match="unknown example 'resnet'"):
        train_cli.main(["resnet"])
    with pytest.raises(SystemExit):
        train_cli.main(["lenet", "--epochs", "many"])
    assert "invalid int value" in capsys.readouterr().err


def test_loaders_feed_lenet_shapes():
    train_loader, test_loader = lenet.build_dataloaders(batch_size=32, limit=100)
    images, labels = next(iter(train_loader))
    assert images.shape == (32, 1, 32, 32) and images.dtype == np.float32 and labels.dtype == np.int32
    assert len(train_loader) == 3  # drop_last: 100 // 32
    assert sum(len(b[1]) for b in test_loader) == 25
    assert abs(float(images.mean())) < 1.0  # normalised with the dataset's pixel statistics
