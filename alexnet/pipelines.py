"""Picks the input pipeline named by `data.pipeline`: `tensor` (default, on the device) or
`torchvision` (per-image PIL transforms in a DataLoader, the notebook's way)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from alexnet import tensor_pipeline, torchvision_pipeline
from alexnet.cifar import Split
from alexnet.engine import Batches
from alexnet.speed import SpeedSettings

PIPELINES = ("tensor", "torchvision")


def build_batches(split: Split, cfg: DictConfig, train: bool, device: torch.device,
                  settings: SpeedSettings) -> Batches:
    """Batches of (images as the network wants them, labels), on `device`."""
    common = dict(augmentation=cfg.augmentation, input_size=cfg.model.input_size,
                  batch_size=cfg.batch_size, train=train, device=device, seed=cfg.seed)
    if cfg.data.pipeline == "torchvision":
        return torchvision_pipeline.TorchvisionBatches(split, num_workers=cfg.data.num_workers,
                                                       **common)
    return tensor_pipeline.TensorBatches(split, dtype=settings.input_dtype,
                                         memory_format=settings.memory_format, **common)


def preview(images: torch.Tensor, cfg: DictConfig) -> torch.Tensor:
    """The training augmentation applied to a uint8 batch on the CPU, as float32."""
    if cfg.data.pipeline == "torchvision":
        return torchvision_pipeline.augment_batch(images, cfg.augmentation, cfg.model.input_size)
    draws = tensor_pipeline.draw(len(images), cfg.augmentation, cfg.model.input_size, train=True)
    return tensor_pipeline.apply(images, draws, cfg.augmentation, cfg.model.input_size)
