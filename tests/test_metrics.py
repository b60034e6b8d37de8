import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

from alexnet.metrics import EvalAccumulator, macro_f1


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    num_classes = 100
    # Few samples so that some classes are absent from targets, predictions or both.
    y_true = rng.integers(0, num_classes, 300)
    y_pred = np.where(rng.random(300) < 0.3, y_true, rng.integers(0, 60, 300))
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    assert macro_f1(torch.from_numpy(confusion)) == pytest.approx(
        f1_score(y_true, y_pred, average="macro"), abs=1e-12
    )


def test_accumulator_counts_every_image_across_uneven_batches():
    torch.manual_seed(0)
    num_classes = 10
    logits = torch.randn(103, num_classes)
    targets = torch.randint(0, num_classes, (103,))
    acc = EvalAccumulator(num_classes, torch.device("cpu"))
    for start in range(0, 103, 32):  # the last batch holds 7 images, not 32
        batch = slice(start, start + 32)
        loss = torch.nn.functional.cross_entropy(logits[batch], targets[batch], reduction="sum")
        acc.update(logits[batch], targets[batch], loss)
    result = acc.compute()

    y_true, y_pred = targets.numpy(), logits.argmax(1).numpy()
    assert result["test_acc"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert result["test_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert result["test_top5"] == pytest.approx(
        top_k_accuracy_score(y_true, logits.numpy(), k=5, labels=range(num_classes))
    )
    assert result["test_loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-6
    )
    assert int(acc.confusion_matrix().sum()) == 103
