"""The notebook's way of feeding and training the network, verbatim, as the benchmark's baseline."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from PIL import Image
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms as T

from alexnet.data.cifar import Split
from alexnet.data.torchvision_pipeline import SplitDataset


class NotebookDataset(SplitDataset):
    """torchvision's CIFAR100 as the notebook used it: transforms draw from the global generator."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self[index] for index in indices]


def notebook_loader(split: Split, batch_size: int, input_size: int = 227) -> DataLoader:
    """The notebook's training input, verbatim: per-image PIL transforms, one process, no shuffling."""
    transform = T.Compose([
        T.Resize(230), T.RandomHorizontalFlip(), T.Resize(input_size), T.ToTensor(),
        T.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    ])
    return DataLoader(NotebookDataset(split, transform), batch_size=batch_size)


def notebook_train(loader: Iterable, model: nn.Module, optimizer: torch.optim.Optimizer,
                   device: torch.device, steps: int | None = None) -> int:
    """The notebook's train(); returns the images seen."""
    model.train()
    seen = 0
    for step, (x, y) in enumerate(loader):
        if steps is not None and step == steps:
            break
        x, y = x.to(device), y.to(device)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            loss.item()  # the notebook printed the loss here
        seen += len(y)
    return seen


def notebook_test(loader: Iterable, model: nn.Module, device: torch.device) -> float:
    """The notebook's test() with its per-batch host syncs, accuracy over the true image count."""
    model.eval()
    y_true, y_pred, correct, total = [], [], 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            pred = model(x)
            nn.functional.cross_entropy(pred, y).item()
            y_true.extend(y.cpu().numpy())
            y_pred.extend(pred.argmax(1).cpu().numpy())
            correct += (pred.argmax(1) == y).float().sum().item()
            total += len(y)
    f1_score(y_true, y_pred, average="macro")
    return correct / total
