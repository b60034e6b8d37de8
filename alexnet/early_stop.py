"""Early stopping (off unless `early_stop.patience` is set): end a run whose monitored metric has not
improved by `min_delta` for `patience` epochs. Decided from the epochs' metrics alone, so a resumed
run decides exactly as an uninterrupted one would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig

from alexnet import scores


def watched(early_stop: DictConfig, config: Mapping[str, Any]) -> tuple[str, bool]:
    """(the metric early stopping watches, whether higher is better): `auto` is the run's objective
    and its natural direction (alexnet/scores.py)."""
    monitor = str(getattr(early_stop.monitor, "value", early_stop.monitor))  # enum or text
    if monitor == scores.AUTO:
        monitor = scores.selection_metric(config)
    mode = str(getattr(early_stop.mode, "value", early_stop.mode))
    return monitor, scores.higher_is_better(monitor) if mode == scores.AUTO else mode == "max"


def should_stop(epochs: Sequence[dict[str, Any]], early_stop: DictConfig,
                config: Mapping[str, Any]) -> bool:
    """Whether the last `patience` epochs all failed to beat the best value before them by more
    than min_delta: a tie is no improvement (as in Lightning and Keras), so a run frozen at one
    value stops."""
    patience = early_stop.patience
    if patience is None or len(epochs) <= patience:
        return False
    monitor, higher = watched(early_stop, config)
    sign = 1.0 if higher else -1.0
    values = [sign * float(row[monitor]) for row in epochs]
    best_before = max(values[:-patience])
    return all(value <= best_before + early_stop.min_delta for value in values[-patience:])
