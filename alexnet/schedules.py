"""Learning-rate schedules (`scheduler/` config group), each built from its `_target_` as the
optimizer is: a factor of `optimizer.lr` for every point of training, stepped after every
optimizer step (torch's LambdaLR), so a checkpoint taken mid-epoch resumes the schedule exactly.
Each starts with an optional linear warm-up from `warmup_start` x lr. `scheduler=none` (the
default, as the notebook) builds none."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Schedule:
    """A constant factor after the warm-up; subclasses shape what follows it."""

    warmup_epochs: float = 0.0
    warmup_start: float = 0.1

    def factor(self, epoch: float, epochs: int) -> float:
        """lr's factor `epoch` epochs into training (fractional: mid-epoch) of `epochs`."""
        warmup = self.warmup(epochs)
        if epoch < warmup:
            return self.warmup_start + (1 - self.warmup_start) * epoch / warmup
        done = min((epoch - warmup) / max(epochs - warmup, 1e-9), 1.0)
        return self.after_warmup(done, epoch - warmup)

    def warmup(self, epochs: int) -> float:
        """The warm-up's length in epochs."""
        return self.warmup_epochs

    def after_warmup(self, done: float, since: float) -> float:
        """The factor once `done` (0 to 1) of the training after the warm-up has passed, `since`
        epochs after it."""
        return 1.0


@dataclass
class Cosine(Schedule):
    """Half a cosine from 1 down to `min_factor` over the epochs after the warm-up."""

    min_factor: float = 0.0

    def after_warmup(self, done: float, since: float) -> float:
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * done))


@dataclass
class OneCycle(Cosine):
    """The one-cycle policy: lr is the peak, reached after a long warm-up (default 30 % of the
    epochs), then annealed to almost nothing."""

    warmup_fraction: float = 0.3
    warmup_start: float = 0.04  # 1/25 of the peak, as torch's OneCycleLR
    min_factor: float = 1e-4

    def warmup(self, epochs: int) -> float:
        return self.warmup_fraction * epochs


@dataclass
class Step(Schedule):
    """lr x `gamma` every `every_epochs` epochs after the warm-up."""

    every_epochs: int = 5
    gamma: float = 0.1

    def after_warmup(self, done: float, since: float) -> float:
        return self.gamma ** math.floor(since / self.every_epochs)


def build_scheduler(schedule: Schedule, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The torch scheduler that follows `schedule`, one step per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule.factor(step / steps_per_epoch, epochs))
