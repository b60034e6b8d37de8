"""Epoch metrics accumulated on the training device, read back once per epoch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Predictions:
    """Each image's predicted class and confidence (its largest softmax probability) from the last
    pass that filled it (`evaluate(..., predictions=)`), on the CPU, in the order the batches came:
    for a test split, its own order. What the run's mistakes grid is drawn from."""

    predicted: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    confidence: Tensor = field(default_factory=lambda: torch.empty(0))


class EvalAccumulator:
    """Sums loss, top-5 hits and a confusion matrix over batches without a host sync per batch;
    with `keep_predictions`, also keeps each image's prediction and confidence on the device."""

    def __init__(self, num_classes: int, device: torch.device, keep_predictions: bool = False) -> None:
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.top5_hits = torch.zeros((), dtype=torch.long, device=device)
        self.keep_predictions = keep_predictions
        self._predicted: list[Tensor] = []
        self._confidence: list[Tensor] = []

    def update(self, logits: Tensor, targets: Tensor, loss_sum: Tensor) -> None:
        """Add one batch: `loss_sum` is the summed (not averaged) loss over its samples."""
        predictions = logits.argmax(dim=1)
        # (index_add_, not bincount: bincount reads its largest index back to size its output,
        # a host sync per batch on CUDA)
        self.confusion.index_add_(0, targets * self.num_classes + predictions,
                                  torch.ones_like(targets, dtype=self.confusion.dtype))
        k = min(5, logits.shape[1])
        self.top5_hits += (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1).sum()
        self.loss_sum += loss_sum.double()
        if self.keep_predictions:
            self._predicted.append(predictions)
            self._confidence.append(logits.float().softmax(dim=1).amax(dim=1))

    def compute(self, split: str = "test") -> dict[str, float]:
        """Loss per image, top-1/top-5 accuracy over the true image count, and macro-F1, named
        after the split (test_acc, val_acc, ...)."""
        confusion = self.confusion.view(self.num_classes, self.num_classes).cpu()
        count = int(confusion.sum())
        return {
            f"{split}_loss": float(self.loss_sum) / count,
            f"{split}_acc": int(confusion.trace()) / count,
            f"{split}_top5": int(self.top5_hits) / count,
            f"{split}_f1": macro_f1(confusion),
        }

    def confusion_matrix(self) -> Tensor:
        """Rows are true classes, columns predicted classes."""
        return self.confusion.view(self.num_classes, self.num_classes).cpu()

    def predictions(self) -> Predictions:
        """The kept predictions of every image so far, read back in one go (keep_predictions)."""
        if not self._predicted:
            return Predictions()
        return Predictions(torch.cat(self._predicted).cpu(), torch.cat(self._confidence).cpu())


def macro_f1(confusion: Tensor) -> float:
    """Macro-F1 as sklearn's f1_score(average="macro"): the mean over classes that occur in
    the targets or the predictions; a class with no true positive counts as F1 0."""
    confusion = confusion.double()
    true_positives = confusion.diagonal()
    support_plus_predicted = confusion.sum(dim=0) + confusion.sum(dim=1)
    present = support_plus_predicted > 0
    f1 = 2 * true_positives[present] / support_plus_predicted[present]
    return float(f1.mean()) if present.any() else 0.0


def superclass_confusion(confusion: Tensor, fine_to_coarse: Tensor, num_superclasses: int) -> Tensor:
    """Sum a class confusion matrix into superclasses (classes mapped to -1 are left out)."""
    known = fine_to_coarse >= 0
    counts, groups = confusion[known][:, known], fine_to_coarse[known]
    by_true = torch.zeros(num_superclasses, counts.shape[1], dtype=counts.dtype)
    by_true.index_add_(0, groups, counts)
    merged = torch.zeros(num_superclasses, num_superclasses, dtype=counts.dtype)
    return merged.index_add_(1, groups, by_true)
