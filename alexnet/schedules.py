"""Learning-rate schedules (`scheduler/` config group), each built from its `_target_` as the
optimizer is: a factor of `optimizer.lr` for every point of training, stepped after every
optimizer step (torch's LambdaLR), so a checkpoint taken mid-epoch resumes the schedule exactly.
Each starts with an optional linear warm-up from `warmup_start` x lr. `scheduler=none` (the
default, as the notebook) builds none.

The factors are ours, in closed form of the fractional epoch; torch's LambdaLR applies them. None
of torch's own schedulers (LinearLR, CosineAnnealingLR, SequentialLR, OneCycleLR, StepLR) computes
the same factor at every step (tests/test_schedules.py compares them); each class says why."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Schedule:
    """A constant factor after the warm-up; subclasses shape what follows it. Not torch's
    LinearLR: it warms up over whole steps, not fractional epochs, and multiplies lr step by step,
    which leaves other last bits than this closed form."""

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
    """Half a cosine from 1 down to `min_factor` over the epochs after the warm-up. Not torch's
    CosineAnnealingLR (after a LinearLR, in a SequentialLR): it steps its lr recursively, off this
    closed form in the last bits, and hands over at a whole step."""

    min_factor: float = 0.0

    def after_warmup(self, done: float, since: float) -> float:
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * done))


@dataclass
class OneCycle(Cosine):
    """The one-cycle policy: lr is the peak, reached after a long warm-up (default 30 % of the
    epochs), then annealed to almost nothing. Not torch's OneCycleLR: its warm-up and annealing
    share one shape (both cosine or both linear; here linear, then cosine), and it peaks and ends
    a step earlier."""

    warmup_fraction: float = 0.3
    warmup_start: float = 0.04  # 1/25 of the peak, as torch's OneCycleLR
    min_factor: float = 1e-4

    def warmup(self, epochs: int) -> float:
        return self.warmup_fraction * epochs


@dataclass
class Step(Schedule):
    """lr x `gamma` every `every_epochs` epochs after the warm-up. Not torch's StepLR: it has no
    warm-up, and it multiplies lr by gamma at each decay, whose last bits differ from lr x gamma**k
    for most values."""

    every_epochs: int = 5
    gamma: float = 0.1

    def after_warmup(self, done: float, since: float) -> float:
        return self.gamma ** math.floor(since / self.every_epochs)


def build_scheduler(schedule: Schedule, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The torch scheduler that follows `schedule`, one step per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule.factor(step / steps_per_epoch, epochs))
