"""The reference pipeline: per-image PIL transforms in a DataLoader, as the notebook ran it (with a
real random crop). Each pass draws its order and a seed per image in the main process, and each
image's transforms draw from its seed: a pass is the same with any number of workers, and a
checkpoint's generator state is all the next passes draw from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info
from torchvision import transforms as T

from alexnet.data.cifar import Split


def build_transform(augmentation: DictConfig, input_size: int, train: bool) -> T.Compose:
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
    """A split as PIL images, as torchvision's CIFAR100 gives them, each asked for with its seed."""

    def __init__(self, split: Split, transform: T.Compose) -> None:
        self.images = split.images.permute(0, 2, 3, 1).numpy()  # HWC for PIL
        self.labels = split.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Restore the trainer's random state once per batch, not per image (not in a worker)."""
        with torch.random.fork_rng(devices=[], enabled=get_worker_info() is None):
            return [self._transformed(index, seed) for index, seed in keys]

    def _transformed(self, index: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.default_generator.manual_seed(seed)
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


class SeededOrder(Sampler[tuple[int, int]]):
    """(image, seed) pairs of a pass: shuffled and seeded (train), or in order (test draws nothing)."""

    def __init__(self, count: int, shuffle: bool, generator: torch.Generator) -> None:
        self.count, self.shuffle, self.generator = count, shuffle, generator

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if not self.shuffle:
            return iter([(index, 0) for index in range(self.count)])
        order = torch.randperm(self.count, generator=self.generator)
        seeds = torch.randint(0, 2**63 - 1, (self.count,), generator=self.generator)
        return iter(list(zip(order.tolist(), seeds.tolist(), strict=True)))


class TorchvisionBatches:
    """DataLoader batches on the training device; a pass interrupted half-way is redone from its start."""

    resumes_mid_pass = False

    def __init__(self, split: Split, augmentation: DictConfig, input_size: int, batch_size: int,
                 train: bool, device: torch.device, seed: int, num_workers: int = 0) -> None:
        dataset = SplitDataset(split, build_transform(augmentation, input_size, train))
        self.generator = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(
            dataset, batch_size=batch_size, sampler=SeededOrder(len(dataset), train, self.generator),
            num_workers=num_workers, pin_memory=device.type == "cuda",
            # Its own generator for the workers' base seed: else it draws from the trainer's
            # (dropout's) a number of times that depends on num_workers.
            generator=torch.Generator().manual_seed(seed),
            persistent_workers=num_workers > 0,  # no new worker processes every epoch
        )
        self.device = device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        """The passes' generator: this pipeline cannot save a pass half-way."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def augment_batch(images: torch.Tensor, augmentation: DictConfig, input_size: int,
                  train: bool = True) -> torch.Tensor:
    """Apply the per-image transforms to a uint8 batch (N, 3, 32, 32): what the network sees."""
    transform = build_transform(augmentation, input_size, train)
    return torch.stack([transform(Image.fromarray(image)) for image in images.permute(0, 2, 3, 1).numpy()])
