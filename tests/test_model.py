"""jitgine.Model: the high-level train/eval loop, traced and eager."""

import numpy as np
import pytest

import jitgine as jg
import jitgine.functional as F
import jitgine.module as M
import jitgine.optimizer as optim
from jitgine.data import DataLoader, RandomSampler, SequentialSampler
from jitgine.data.dataset import ArrayDataset
from jitgine.metric import Accuracy


def _blobs(n, seed):
    """Three well separated Gaussian blobs in 4-d: a net that learns anything gets them right."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.array([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0]], np.float32)
    return ArrayDataset((centres[labels] + rng.normal(0, 0.5, (n, 4))).astype(np.float32), labels)


def _model(traced, metrics=None):
    jg.random.seed(0)
    net = M.Sequential(M.Linear(4, 8), M.ReLU(), M.Linear(8, 3))
    return jg.Model(net, F.loss.cross_entropy, optim.SGD(net.parameters(), lr=0.1),
                       metrics={"accuracy": Accuracy()} if metrics is None else metrics,
                       traced=traced, progress=False)


def _loaders():
    train, test = _blobs(96, 1), _blobs(50, 2)  # 50 = 3 batches of 16 + a short one of 2
    return (DataLoader(train, RandomSampler(train, 16, drop_last=True, seed=3)),
            DataLoader(test, SequentialSampler(test, 16)))


def test_train_and_eval_traced_equal_eager():
    results = {}
    for traced in (True, False):
        model = _model(traced)
        train_loader, test_loader = _loaders()
        history = model.train(3, train_loader, valid_loader=test_loader)
        results[traced] = history, model.eval(test_loader), model
    (h_t, e_t, model_t), (h_e, e_e, _) = results[True], results[False]
    assert h_t["loss"] == pytest.approx(h_e["loss"], rel=1e-4)
    assert h_t["val_accuracy"] == pytest.approx(h_e["val_accuracy"])
    assert e_t["loss"] == pytest.approx(e_e["loss"], rel=1e-4) and e_t["accuracy"] == e_e["accuracy"]
    assert h_t["loss"][-1] < h_t["loss"][0]
    assert e_t["accuracy"] > 0.9
    assert len(h_t["images_per_second"]) == 3 and all(r > 0 for r in h_t["images_per_second"])
    # One compiled graph each: the short last test batch is padded, eval/train switches do not retrace.
    assert len(model_t.train_step.executables) == 1 and len(model_t.eval_step.executables) == 1
    assert model_t.net.training


def test_eval_keeps_the_mode_and_metric_names():
    model = _model(traced=False, metrics=["accuracy", "precision", "recall"])
    _, test_loader = _loaders()
    model.net.eval()
    result = model.eval(test_loader)
    assert set(result) == {"loss", "accuracy", "precision", "recall"} and not model.net.training
    assert all(0 <= result[k] <= 1 for k in ("accuracy", "precision", "recall"))


def test_errors():
    with pytest.raises(ValueError, match="unknown metric name 'f1'"):
        _model(traced=False, metrics=["f1"])
    with pytest.raises(TypeError, match="needs clear"):
        _model(traced=False, metrics={"bad": object()})
    model = _model(traced=False)
    with pytest.raises(ValueError, match=r"\(data, label\) pairs"):
        model.train(1, [np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match="no batches"):
        model.eval([])
    with pytest.raises(ValueError, match="epochs"):
        model.train(-1, [])
    with pytest.raises(TypeError, match="loss_fn"):
        jg.Model(M.Linear(2, 2), None, optim.SGD(M.Linear(2, 2).parameters(), lr=0.1))


def test_progress_prints_one_line_per_epoch(capsys):
    model = _model(traced=False)
    model.progress = True
    train_loader, test_loader = _loaders()
    model.train(2, train_loader, valid_loader=test_loader)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("val_accuracy" in line and "images/s" in line for line in lines)
