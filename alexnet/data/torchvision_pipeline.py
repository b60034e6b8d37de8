"""The reference input pipeline: per-image PIL transforms in a DataLoader, as the notebook ran it
(with a real random crop instead of its two resizes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from alexnet.data.cifar import Split


def build_transform(augmentation: DictConfig, input_size: int, train: bool) -> T.Compose:
    """The torchvision transforms that the `augmentation` switches stand for."""
    steps: list[object] = []
    if augmentation.crop:
        steps.append(T.Resize(augmentation.resize))
        steps.append(T.RandomCrop(input_size) if train else T.CenterCrop(input_size))
    else:
        steps.append(T.Resize(input_size))
    if augmentation.flip and train:
        steps.append(T.RandomHorizontalFlip())
    steps.append(T.ToTensor())
    if augmentation.normalize:
        steps.append(T.Normalize(list(augmentation.mean), list(augmentation.std)))
    return T.Compose(steps)


class SplitDataset(Dataset):
    """A CIFAR split as PIL images, the way torchvision's CIFAR100 dataset hands them out."""

    def __init__(self, split: Split, transform: T.Compose) -> None:
        self.images = split.images.permute(0, 2, 3, 1).numpy()  # HWC for PIL
        self.labels = split.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


class TorchvisionBatches:
    """Batches from a DataLoader, moved to the training device. A checkpoint saves the shuffling
    generator between passes; a pass interrupted half-way is redone from its start."""

    resumes_mid_pass = False

    def __init__(self, split: Split, augmentation: DictConfig, input_size: int, batch_size: int,
                 train: bool, device: torch.device, seed: int, num_workers: int = 0) -> None:
        dataset = SplitDataset(split, build_transform(augmentation, input_size, train))
        self.loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=train, num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed), pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,  # no new worker processes every epoch
        )
        self.device = device
        self.generator = self.loader.generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield (images.to(self.device, non_blocking=True),
                   labels.to(self.device, non_blocking=True))

    def state_dict(self) -> dict[str, Any]:
        """The shuffling generator, between passes (this pipeline cannot save a pass half-way)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def augment_batch(images: torch.Tensor, augmentation: DictConfig, input_size: int,
                  train: bool = True) -> torch.Tensor:
    """Apply the per-image transforms to a uint8 batch (N, 3, 32, 32): what the network sees."""
    transform = build_transform(augmentation, input_size, train)
    return torch.stack([transform(Image.fromarray(image)) for image in
                        images.permute(0, 2, 3, 1).numpy()])
