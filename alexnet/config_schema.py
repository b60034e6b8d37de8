"""Typed schemas (Hydra structured configs) for the blocks that steer a run's life rather than what
it learns: `checkpoint`, `early_stop`, `launch`. Hydra checks them when the config is composed, so
`checkpoint.keep=al` or `early_stop.patience=abc` stops there with the key and the allowed values.
conf/config.yaml merges its values onto them; config_checks.py keeps the range checks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from hydra.core.config_store import ConfigStore


class Keep(str, Enum):
    """What stays of a finished run's checkpoint."""

    weights = "weights"  # model.pt, the weights alone
    full = "full"  # checkpoint.pt: weights, optimizer, RNG states


class Mode(str, Enum):
    max = "max"
    min = "min"


class Monitor(str, Enum):
    """The metrics.csv columns early stopping can watch."""

    test_acc = "test_acc"
    test_loss = "test_loss"
    test_f1 = "test_f1"
    test_top5 = "test_top5"
    train_loss = "train_loss"


@dataclass
class CheckpointSchema:
    keep: Keep = Keep.weights


@dataclass
class EarlyStopSchema:
    patience: int | None = None
    monitor: Monitor = Monitor.test_acc
    mode: Mode = Mode.max
    min_delta: float = 0.0


@dataclass
class LaunchSchema:
    jobs_per_gpu: int = 1
    slots_dir: str | None = None
    queue_poll_s: float = 10.0
    result_wait_s: float = 30.0


for name, node in (("checkpoint", CheckpointSchema), ("early_stop", EarlyStopSchema),
                   ("launch", LaunchSchema)):
    ConfigStore.instance().store(group="schema", name=name, node=node)
