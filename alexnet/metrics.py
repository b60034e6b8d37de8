"""Epoch metrics accumulated on the training device, read back once per epoch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Predictions:
    """Each image's predicted class and top softmax probability, in batch order, for the mistakes grid."""

    predicted: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    confidence: Tensor = field(default_factory=lambda: torch.empty(0))


class EvalAccumulator:
    """Sums loss, top-5 hits and a confusion matrix on the device: no host sync per batch."""

    def __init__(self, num_classes: int, device: torch.device, keep_predictions: bool = False) -> None:
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.top5_hits = torch.zeros((), dtype=torch.long, device=device)
        self.keep_predictions = keep_predictions
        self._predicted: list[Tensor] = []
        self._confidence: list[Tensor] = []

    def update(self, logits: Tensor, targets: Tensor, loss_sum: Tensor) -> None:
        """`loss_sum` is the batch's summed, not averaged, loss."""
        predictions = logits.argmax(dim=1)
        # (not bincount: sizing its output syncs with the host on CUDA)
        self.confusion.index_add_(0, targets * self.num_classes + predictions,
                                  torch.ones_like(targets, dtype=self.confusion.dtype))
        k = min(5, logits.shape[1])
        self.top5_hits += (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1).sum()
        self.loss_sum += loss_sum.double()
        if self.keep_predictions:
            self._predicted.append(predictions)
            self._confidence.append(logits.float().softmax(dim=1).amax(dim=1))

    def compute(self, split: str = "test") -> dict[str, float]:
        """Per-image loss, top-1/top-5 accuracy and macro-F1, keyed by split (test_acc, ...)."""
        confusion = self.confusion_matrix()
        count = int(confusion.sum())
        return {f"{split}_loss": float(self.loss_sum) / count, f"{split}_acc": int(confusion.trace()) / count,
                f"{split}_top5": int(self.top5_hits) / count, f"{split}_f1": macro_f1(confusion)}

    def confusion_matrix(self) -> Tensor:
        """Rows are true classes, columns predicted classes."""
        return self.confusion.view(self.num_classes, self.num_classes).cpu()

    def predictions(self) -> Predictions:
        """Read back in one go."""
        if not self._predicted:
            return Predictions()
        return Predictions(torch.cat(self._predicted).cpu(), torch.cat(self._confidence).cpu())


def macro_f1(confusion: Tensor) -> float:
    """As sklearn's f1_score(average="macro"): over classes in targets or predictions."""
    confusion = confusion.double()
    true_positives = confusion.diagonal()
    support_plus_predicted = confusion.sum(dim=0) + confusion.sum(dim=1)
    present = support_plus_predicted > 0
    f1 = 2 * true_positives[present] / support_plus_predicted[present]
    return float(f1.mean()) if present.any() else 0.0


def superclass_confusion(confusion: Tensor, fine_to_coarse: Tensor, num_superclasses: int) -> Tensor:
    """Classes mapped to -1 are left out."""
    known = fine_to_coarse >= 0
    counts, groups = confusion[known][:, known], fine_to_coarse[known]
    by_true = torch.zeros(num_superclasses, counts.shape[1], dtype=counts.dtype)
    by_true.index_add_(0, groups, counts)
    merged = torch.zeros(num_superclasses, num_superclasses, dtype=counts.dtype)
    return merged.index_add_(1, groups, by_true)
