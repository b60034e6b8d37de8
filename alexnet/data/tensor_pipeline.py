"""The fast input pipeline: the split lives on the device as uint8 and each batch is augmented there
by whole-batch tensor ops, with the torchvision pipeline's crop/flip/normalize meanings. All random
draws are made on the CPU a pass at a time, so they and a checkpoint's generator state are the same
on every device: a run resumed elsewhere goes on with the same data."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.nn import functional as F

from alexnet.data.cifar import Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Draws:
    """Per-image crop corner and flip for a batch or pass (`flip` None when nothing may flip)."""

    top: Tensor
    left: Tensor
    flip: Tensor | None

    def __getitem__(self, rows: slice) -> Draws:
        return Draws(self.top[rows], self.left[rows], None if self.flip is None else self.flip[rows])

    def to(self, device: torch.device) -> Draws:
        return Draws(self.top.to(device), self.left.to(device),
                     None if self.flip is None else self.flip.to(device))


def draw(count: int, augmentation: DictConfig, input_size: int, train: bool,
         generator: torch.Generator | None = None) -> Draws:
    """Uniform crop corners and p=0.5 flips (train) or torchvision's center crop (test), on the CPU."""
    zeros = torch.zeros(count, dtype=torch.long)
    top = left = zeros
    if augmentation.crop:
        margin = augmentation.resize - input_size
        if train:
            top, left = torch.randint(0, margin + 1, (2, count), generator=generator)
        else:  # torchvision's CenterCrop rounds the same way
            top = left = zeros + int(round(margin / 2.0))
    flip = None
    if train and augmentation.flip:
        flip = torch.rand(count, generator=generator) < 0.5
    return Draws(top, left, flip)


@functools.lru_cache(maxsize=16)
def resize_matrix(source: int, size: int, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """One axis's bilinear resize as a (size, source) matrix: F.interpolate's weights, read off the
    identity. Cached and shared by every batch: callers must not modify it."""
    identity = torch.eye(source, device=device)
    matrix = F.interpolate(identity[None], size=size, mode="linear", align_corners=False)[0].T
    return matrix.to(dtype).contiguous()


@functools.lru_cache(maxsize=16)
def _scale_and_shift(mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype,
                     device: torch.device) -> tuple[Tensor, Tensor]:
    """/255 and (x - mean) / std as one x * scale + shift; cached on the device (no copy per batch)."""
    mean_t = torch.tensor(mean or (0.0, 0.0, 0.0), dtype=torch.float64)
    std_t = torch.tensor(std or (1.0, 1.0, 1.0), dtype=torch.float64)
    scale, shift = 1.0 / (255.0 * std_t), -mean_t / std_t
    return (scale.to(device, dtype).view(1, 3, 1, 1), shift.to(device, dtype).view(1, 3, 1, 1))


def window_indices(draws: Draws, input_size: int) -> tuple[Tensor, Tensor]:
    """Each image's crop window as resize-matrix rows and columns, columns reversed when it flips."""
    window = torch.arange(input_size, device=draws.top.device)
    rows = draws.top.view(-1, 1) + window
    if draws.flip is None:
        return rows, draws.left.view(-1, 1) + window
    return rows, draws.left.view(-1, 1) + torch.where(draws.flip.view(-1, 1), window.flip(0), window)


def apply(images: Tensor, draws: Draws, augmentation: DictConfig, input_size: int,
          dtype: torch.dtype = torch.float32, memory_format: torch.memory_format = torch.contiguous_format,
          indices: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """uint8 (N, 3, 32, 32) -> `dtype` (N, 3, input_size, input_size) as R @ image @ C^T: two small
    matmuls, nothing of size `resize` made; normalizing first is exact (rows of R, C sum to 1)."""
    rows_index, cols_index = indices if indices is not None else window_indices(draws, input_size)
    normalize = augmentation.normalize
    scale, shift = _scale_and_shift(tuple(augmentation.mean) if normalize else (),
                                    tuple(augmentation.std) if normalize else (), dtype, images.device)
    x = torch.addcmul(shift, images.to(dtype), scale)
    size = augmentation.resize if augmentation.crop else input_size
    matrix = resize_matrix(x.shape[-1], size, x.device, dtype)
    rows, cols = matrix[rows_index], matrix[cols_index]  # (N, input_size, 32) each
    if memory_format != torch.channels_last:
        return rows.unsqueeze(1) @ x @ cols.unsqueeze(1).transpose(-1, -2)
    # Channels last: columns first, channels moved innermost while 32 rows tall, rows write NHWC.
    n = x.shape[0]
    by_columns = (x @ cols.unsqueeze(1).transpose(-1, -2)).permute(0, 2, 3, 1)
    out = rows @ by_columns.reshape(n, x.shape[2], input_size * 3)
    return out.view(n, input_size, input_size, 3).permute(0, 3, 1, 2)


class TensorBatches:
    """Each pass drawn whole on the CPU, copied once, served in slices: no host sync per batch."""

    resumes_mid_pass = True

    def __init__(self, split: Split, augmentation: DictConfig, input_size: int, batch_size: int,
                 train: bool, device: torch.device, seed: int, dtype: torch.dtype = torch.float32,
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.images = split.images.to(device)  # 3 KB per image as uint8: 154 MB for all 50,000
        self.labels = split.labels.to(device)
        self.augmentation, self.input_size = augmentation, input_size
        self.batch_size, self.train, self.device = batch_size, train, device
        self.dtype, self.memory_format = dtype, memory_format
        self.generator = torch.Generator().manual_seed(seed)  # the CPU's, whatever `device` is
        # The pass being served and its next position; a restored pass waits in _resumed.
        self._plan: tuple[Tensor, Draws] | None = None
        self._next = 0
        self._resumed: tuple[tuple[Tensor, Draws], int] | None = None

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        count = len(self.labels)
        if self._resumed is not None:
            (self._plan, self._next), self._resumed = self._resumed, None
        else:
            order = torch.randperm(count, generator=self.generator) if self.train else torch.arange(count)
            draws = draw(count, self.augmentation, self.input_size, self.train, self.generator)
            self._plan, self._next = (order, draws), 0
        order, draws = self._plan[0].to(self.device), self._plan[1].to(self.device)  # once a pass
        rows_index, cols_index = window_indices(draws, self.input_size)
        while self._next < count:
            rows = slice(self._next, self._next + self.batch_size)
            self._next = rows.stop
            index = order[rows]
            yield apply(self.images[index], draws[rows], self.augmentation, self.input_size, self.dtype,
                        self.memory_format, (rows_index[rows], cols_index[rows])), self.labels[index]
        self._plan = None  # over only once the consumer asked past its last batch

    def state_dict(self) -> dict[str, Any]:
        """The CPU generator and any unfinished pass (even one fully handed out but not closed),
        which a resume must finish, not draw again."""
        state: dict[str, Any] = {"generator": self.generator.get_state()}
        if self._plan is not None:
            order, draws = self._plan
            state["pass"] = {"order": order, "top": draws.top, "left": draws.left,
                             "flip": draws.flip, "next": self._next}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._set_generator(state["generator"])
        plan = state.get("pass")
        self._plan, self._next, self._resumed = None, 0, None
        if plan is not None:
            draws = Draws(plan["top"].cpu(), plan["left"].cpu(),
                          None if plan["flip"] is None else plan["flip"].cpu())
            self._resumed = (plan["order"].cpu(), draws), int(plan["next"])

    def _set_generator(self, saved: Tensor) -> None:
        """An old GPU checkpoint's CUDA generator state cannot be set on a CPU generator: seed one
        from it instead, so the run goes on, with other draws than it would have made."""
        if saved.numel() == self.generator.get_state().numel():
            self.generator.set_state(saved)
            return
        seed = int.from_bytes(hashlib.sha256(saved.cpu().numpy().tobytes()).digest()[:8], "little")
        self.generator.manual_seed(seed)
        log.warning("the checkpoint's input-pipeline generator state is not a CPU generator's (%d bytes: "
                    "a GPU run's, from before the pipeline drew on the CPU); the pass in progress finishes "
                    "as saved, the next ones are drawn from a generator seeded from it: the run continues, "
                    "but not with the draws it would have made", saved.numel())
