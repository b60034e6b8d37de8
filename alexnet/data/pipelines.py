"""Picks the input pipeline named by `data.pipeline`: `tensor` (on the device) or `torchvision`
(the notebook's way). torchvision is imported only when chosen: its import costs seconds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import Tensor

from alexnet.data import tensor_pipeline
from alexnet.data.cifar import Split
from alexnet.speed import SpeedSettings


class Batches(Protocol):
    """(images, labels) batches on the training device, a fresh pass per iteration, resumable."""

    resumes_mid_pass: bool  # whether a state_dict() taken mid-pass continues that pass

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...

    def state_dict(self) -> dict[str, Any]:
        """Generator state and, mid-pass, the pass's plan."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The next iteration goes on where the state_dict() stood."""


def build_batches(split: Split, cfg: DictConfig, train: bool, device: torch.device,
                  settings: SpeedSettings) -> Batches:
    common = dict(augmentation=cfg.augmentation, input_size=cfg.model.input_size,
                  batch_size=cfg.batch_size, train=train, device=device, seed=cfg.seed)
    if cfg.data.pipeline == "torchvision":
        from alexnet.data import torchvision_pipeline

        return torchvision_pipeline.TorchvisionBatches(split, num_workers=cfg.data.num_workers, **common)
    return tensor_pipeline.TensorBatches(split, dtype=settings.input_dtype,
                                         memory_format=settings.memory_format, **common)


def preview(images: torch.Tensor, cfg: DictConfig) -> torch.Tensor:
    """The training augmentation applied to a uint8 batch on the CPU, as float32."""
    if cfg.data.pipeline == "torchvision":
        from alexnet.data import torchvision_pipeline

        return torchvision_pipeline.augment_batch(images, cfg.augmentation, cfg.model.input_size)
    draws = tensor_pipeline.draw(len(images), cfg.augmentation, cfg.model.input_size, train=True)
    return tensor_pipeline.apply(images, draws, cfg.augmentation, cfg.model.input_size)
