"""Learning-rate schedules (`scheduler/` group): closed-form factors of `optimizer.lr` over the
fractional epoch, applied by LambdaLR after every optimizer step, so a mid-epoch checkpoint resumes
them exactly; torch's own schedulers compute other factors (tests/test_schedules.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Schedule:
    """Optional linear warm-up, then 1; not LinearLR, whose whole-step products differ in the last bits."""

    warmup_epochs: float = 0.0
    warmup_start: float = 0.1

    def factor(self, epoch: float, epochs: int) -> float:
        warmup = self.warmup(epochs)
        if epoch < warmup:
            return self.warmup_start + (1 - self.warmup_start) * epoch / warmup
        done = min((epoch - warmup) / max(epochs - warmup, 1e-9), 1.0)
        return self.after_warmup(done, epoch - warmup)

    def warmup(self, epochs: int) -> float:
        return self.warmup_epochs

    def after_warmup(self, done: float, since: float) -> float:
        """`done`: the fraction (0 to 1) of post-warm-up training passed; `since`: its epochs."""
        return 1.0


@dataclass
class Cosine(Schedule):
    """Half a cosine down to `min_factor`; not CosineAnnealingLR, recursive and off in the last bits."""

    min_factor: float = 0.0

    def after_warmup(self, done: float, since: float) -> float:
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * done))


@dataclass
class OneCycle(Cosine):
    """Linear warm-up to the peak lr, then cosine; not OneCycleLR: one shape for both, a step early."""

    warmup_fraction: float = 0.3
    warmup_start: float = 0.04  # 1/25 of the peak, as torch's OneCycleLR
    min_factor: float = 1e-4

    def warmup(self, epochs: int) -> float:
        return self.warmup_fraction * epochs


@dataclass
class Step(Schedule):
    """lr x `gamma` every `every_epochs`; not StepLR: no warm-up, and its products miss gamma**k."""

    every_epochs: int = 5
    gamma: float = 0.1

    def after_warmup(self, done: float, since: float) -> float:
        return self.gamma ** math.floor(since / self.every_epochs)


def build_scheduler(schedule: Schedule, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule.factor(step / steps_per_epoch, epochs))
