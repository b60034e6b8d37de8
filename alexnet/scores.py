"""The one place that decides what a run is judged by: `objective=auto` is `val_acc` with a held-out
split, else `test_acc` (test scores would choose settings on the test set); sweepers, early stopping,
best epochs and tables all use it. Only runs that ended well have scores that count."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from omegaconf import DictConfig

AUTO = "auto"
LOWER_IS_BETTER = ("_loss", "_time_s")
RECORD_METRICS = ("wall_time_s",)  # in a run's record, not its metrics.csv
EPOCH_METRICS = ("train_loss", *(f"{split}_{name}" for split in ("val", "test")
                                 for name in ("loss", "acc", "top5", "f1")))


def objectives(config: Mapping[str, Any]) -> list[str]:
    """The first is chief."""
    value = config.get("objective", AUTO)
    names = [value] if isinstance(value, str) or value is None else list(value)
    held_out = (config.get("data") or {}).get("val_split") is not None
    return [("val_acc" if held_out else "test_acc") if name in (AUTO, None) else str(name) for name in names]


def selection_metric(config: Mapping[str, Any]) -> str:
    return objectives(config)[0]


def higher_is_better(metric: str) -> bool:
    return not str(metric).endswith(LOWER_IS_BETTER)


def best_epoch(epochs: Sequence[Mapping[str, Any]], metric: str) -> Mapping[str, Any] | None:
    """The first of equal ones; None while no epoch has `metric`."""
    scored = [row for row in epochs if isinstance(row.get(metric), int | float)]
    if not scored:
        return None
    sign = 1.0 if higher_is_better(metric) else -1.0
    return max(scored, key=lambda row: sign * float(row[metric]))


def value(summary: Mapping[str, Any], metric: str, epoch: str = "final") -> float | None:
    """`metric` of the final (or best) epoch, or of the record (wall_time_s); None when missing."""
    found = (summary.get(epoch) or {}).get(metric)
    if found is None and metric in RECORD_METRICS:
        found = summary.get(metric)
    return float(found) if isinstance(found, int | float) and not isinstance(found, bool) else None


def counts(summary: Mapping[str, Any]) -> bool:
    """Scores are results only when the run completed or stopped early on its own rule."""
    return summary.get("status") in SUCCEEDED


def selection_score(summary: Mapping[str, Any]) -> float | None:
    """None where the run's scores do not count."""
    return value(summary, selection_metric(summary.get("config") or {})) if counts(summary) else None


def best(summaries: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the top-ranked run whose scores count (the first of equal ones), else None."""
    ranked = []
    for index, summary in enumerate(summaries):
        score = selection_score(summary)
        if score is not None and not math.isnan(score):
            metric = selection_metric(summary.get("config") or {})
            ranked.append((score if higher_is_better(metric) else -score, -index))
    return -max(ranked)[1] if ranked else None


class Status(str, Enum):
    """In the order the summary line and tables list them."""

    completed = "completed"
    early_stopped = "early_stopped"  # its monitored score stopped improving
    failed = "failed"  # an error; the message is in results.json
    diverged = "diverged"  # its loss became NaN or infinite
    pruned = "pruned"  # stopped by its search's pruner (hydra/sweeper=optuna): hopeless
    interrupted = "interrupted"  # stopped at a safe point (or its job lost): resumes on rerun
    stale = "stale"  # says running, but nobody holds its lock or its heartbeat stopped
    running = "running"
    waiting = "waiting"  # started, waiting for its device (a GPU slot, its turn to load)
    not_started = "not_started"  # planned by its sweep, never begun (tables only)

    def __str__(self) -> str:
        return self.value


# Rerunning a sweep leaves FINISHED alone; SUCCEEDED scores count; a sweep ending in ENDED_WELL exits 0.
FINISHED = (Status.completed, Status.diverged, Status.early_stopped, Status.pruned)
SUCCEEDED = (Status.completed, Status.early_stopped)
ENDED_WELL = (*SUCCEEDED, Status.pruned)  # a pruned trial is a search working
LIVE = (Status.waiting, Status.running)  # a process is on it (run/record.py checks it still is)


def watched(early_stop: DictConfig, config: Mapping[str, Any]) -> tuple[str, bool]:
    """(metric, higher is better); `auto` is the run's objective and its natural direction."""
    monitor = str(getattr(early_stop.monitor, "value", early_stop.monitor))  # enum or text
    if monitor == AUTO:
        monitor = selection_metric(config)
    mode = str(getattr(early_stop.mode, "value", early_stop.mode))
    return monitor, higher_is_better(monitor) if mode == AUTO else mode == "max"


def should_stop(epochs: Sequence[dict[str, Any]], early_stop: DictConfig, config: Mapping[str, Any]) -> bool:
    """A tie is no improvement (as in Lightning and Keras), so a run frozen at one value stops."""
    patience = early_stop.patience
    if patience is None or len(epochs) <= patience:
        return False
    monitor, higher = watched(early_stop, config)
    sign = 1.0 if higher else -1.0
    values = [sign * float(row[monitor]) for row in epochs]
    best_before = max(values[:-patience])
    return all(value <= best_before + early_stop.min_delta for value in values[-patience:])


Values = float | list[float]  # what a run returns to a sweeper


def objective_values(summary: Mapping[str, Any]) -> Values:
    """The objective value(s) a sweeper gets: NaN where the scores do not count, or there are none."""
    names = objectives(summary.get("config") or {})
    values = [value(summary, name) if counts(summary) else None for name in names]
    values = [math.nan if v is None else v for v in values]
    return values[0] if len(values) == 1 else values
