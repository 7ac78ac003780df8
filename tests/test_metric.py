"""jitgine.metric against hand computations and NumPy references."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jitgine.metric import Accuracy, ConfusionMatrix, Metric, Precision, Recall

# 6 samples, 3 classes; arg-max predictions: 0, 1, 2, 1, 0, 2
SCORES = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.2, 0.7],
        [0.3, 0.6, 0.1],
        [0.5, 0.4, 0.1],
        [0.1, 0.45, 0.45001],
    ]
)
LABELS = np.array([0, 1, 1, 1, 2, 2])
PREDS = np.array([0, 1, 2, 1, 0, 2])
# confusion (rows true, cols predicted)
CM = np.array([[1, 0, 0], [0, 2, 1], [1, 0, 1]])


def test_accuracy_hand_computed():
    acc = Accuracy()
    acc.update(SCORES, LABELS)
    assert acc.eval() == pytest.approx(4 / 6)
    top2 = Accuracy(topk=2)
    top2.update(SCORES, LABELS)
    # top-2 misses only sample 4 (label 2 has the lowest score)
    assert top2.eval() == pytest.approx(5 / 6)
    ids = Accuracy()
    ids.update(PREDS, LABELS)
    assert ids.eval() == pytest.approx(4 / 6)


def test_accuracy_accumulates_clears_and_one_hot():
    acc = Accuracy()
    acc.update(SCORES[:3], LABELS[:3])
    acc.update(SCORES[3:], np.eye(3)[LABELS[3:]])  # one-hot labels
    assert acc.eval() == pytest.approx(4 / 6)
    acc.clear()
    with pytest.raises(RuntimeError, match="no samples"):
        acc.eval()
    acc.update(np.zeros((0, 3)), np.zeros(0, np.int64))
    acc.update([[0.0, 1.0]], [1])  # lists work too
    assert acc.eval() == 1.0


def test_accuracy_ties_go_to_lower_index_like_argmax():
    scores = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    acc = Accuracy()
    acc.update(scores, [0, 1])
    assert acc.eval() == 0.5
    assert np.argmax(scores, axis=1).tolist() == [0, 0]


@given(
    scores=hnp.arrays(np.int8, st.tuples(st.integers(0, 12), st.integers(1, 6)), elements=st.integers(-3, 3)),
    k=st.integers(1, 7),
    data=st.data(),
)
def test_accuracy_topk_matches_stable_argsort(scores, k, data):
    n, c = scores.shape
    labels = np.array(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), dtype=np.int64)
    order = np.argsort(-scores.astype(np.int64), axis=1, kind="stable")[:, :k]
    expected = np.mean([labels[i] in order[i] for i in range(n)]) if n else None
    acc = Accuracy(topk=k)
    acc.update(scores, labels)
    if n:
        assert acc.eval() == pytest.approx(expected)


@pytest.mark.parametrize(
    "pred, label, message",
    [
        (SCORES, LABELS[:5], "pred has 6 samples .* label has 5"),
        (SCORES, np.eye(4)[[0, 1, 2, 3, 0, 1]], "one-hot label of shape"),
        (SCORES[None], LABELS, "scores .N, C. or class ids"),
        (np.array([0.5, 0.2]), [0, 1], "non-integer values; pass scores as"),
        (SCORES, LABELS + 1, r"label class ids must lie in \[0, 3"),
        (SCORES, -LABELS - 1, "label class ids must lie"),
        (SCORES, LABELS.astype(str), "integer class ids"),
        (np.zeros((2, 0)), [0, 0], "no classes"),
    ],
)
def test_accuracy_shape_errors(pred, label, message):
    with pytest.raises(ValueError, match=message):
        Accuracy().update(pred, label)


def test_accuracy_arguments():
    with pytest.raises(ValueError, match="topk"):
        Accuracy(topk=0)
    with pytest.raises(ValueError, match=r"topk=2\) needs scores"):
        Accuracy(topk=2).update(PREDS, LABELS)


def test_confusion_matrix():
    cm = ConfusionMatrix(3)
    cm.update(SCORES, LABELS)
    np.testing.assert_array_equal(cm.eval(), CM)
    cm.update(PREDS.astype(np.float32), LABELS)  # integral floats are ids
    np.testing.assert_array_equal(cm.eval(), 2 * CM)
    assert cm.eval().dtype == np.int64
    cm.clear()
    np.testing.assert_array_equal(cm.eval(), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="4 class scores but num_classes=3"):
        cm.update(np.zeros((2, 4)), [0, 1])
    with pytest.raises(ValueError, match=r"pred class ids must lie in \[0, 3\)"):
        cm.update([0, 3], [0, 1])
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


@given(n=st.integers(0, 30), c=st.integers(1, 5), data=st.data())
def test_confusion_matrix_matches_loop(n, c, data):
    ids = st.lists(st.integers(0, c - 1), min_size=n, max_size=n)
    pred, label = data.draw(ids), data.draw(ids)
    want = np.zeros((c, c), np.int64)
    for p, t in zip(pred, label):
        want[t, p] += 1
    cm = ConfusionMatrix(c)
    cm.update(np.array(pred, np.int64), np.array(label, np.int64))
    np.testing.assert_array_equal(cm.eval(), want)


def test_precision_recall_hand_computed():
    # precision per class = diag / column sums = [1/2, 2/2, 1/2]; recall = diag / row sums = [1/1, 2/3, 1/2]
    p_cls, r_cls = np.array([0.5, 1.0, 0.5]), np.array([1.0, 2 / 3, 0.5])
    for cls, per_class in ((Precision, p_cls), (Recall, r_cls)):
        for num_classes in (None, 3):
            m = cls(num_classes=num_classes, average=None)
            m.update(SCORES, LABELS)
            np.testing.assert_allclose(m.eval(), per_class)
            m = cls(num_classes=num_classes)
            m.update(SCORES, LABELS)
            assert m.eval() == pytest.approx(per_class.mean())
        micro, weighted = cls(average="micro"), cls(average="weighted")
        micro.update(PREDS, LABELS)
        weighted.update(PREDS, LABELS)
        assert micro.eval() == pytest.approx(4 / 6)  # single-label: micro = accuracy
        assert weighted.eval() == pytest.approx(np.dot(per_class, [1, 3, 2]) / 6)


def test_precision_grows_and_handles_absent_classes():
    p = Precision(average=None)
    p.update([0, 1], [0, 1])
    p.update([3, 3], [3, 1])  # class 3 appears later; class 2 never
    np.testing.assert_allclose(p.eval(), [1.0, 1.0, 0.0, 0.5])
    macro = Precision()
    macro.update([0, 1, 3, 3], [0, 1, 3, 1])
    assert macro.eval() == pytest.approx((1 + 1 + 0.5) / 3)  # absent class 2 is not averaged
    fixed = Precision(num_classes=5)
    fixed.update([0, 1, 3, 3], [0, 1, 3, 1])
    assert fixed.eval() == pytest.approx(2.5 / 3)
    r = Recall(average=None)
    r.update([1, 1], [0, 1])  # class 0 never predicted: recall 0, no division error
    np.testing.assert_allclose(r.eval(), [0.0, 1.0])
    r.clear()
    with pytest.raises(RuntimeError, match="no samples"):
        r.eval()
    assert r.num_classes == 1
    with pytest.raises(ValueError, match="average"):
        Recall(average="samples")


def test_metrics_accept_tensors():
    tensor_mod = pytest.importorskip("jitgine.tensor")
    acc, cm = Accuracy(), ConfusionMatrix(3)
    acc.update(tensor_mod.Tensor(SCORES.astype(np.float32)), tensor_mod.Tensor(LABELS.astype(np.int32)))
    cm.update(tensor_mod.Tensor(SCORES.astype(np.float32)), tensor_mod.Tensor(LABELS.astype(np.int32)))
    assert acc.eval() == pytest.approx(4 / 6)
    np.testing.assert_array_equal(cm.eval(), CM)


def test_metric_base_is_abstract():
    with pytest.raises(NotImplementedError):
        Metric()
