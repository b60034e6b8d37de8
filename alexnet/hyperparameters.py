"""Which config keys make a run what it is. The others say how or where it runs (threads, device,
progress bars, the data's folder, tracking, launching, checkpoint keeping) or what was reported
for it (`notebook.*`): they may differ between a run and its resumption, and are not compared
between runs in the tables."""

from __future__ import annotations

from collections.abc import Iterable

NOT_HYPERPARAMETERS = ("notebook", "logger", "checkpoint", "launch", "search", "progress", "heartbeat_s",
                       "torch_threads", "device", "data.root", "data.download", "data.num_workers")


def is_hyperparameter(key: str) -> bool:
    """`key` as a dotted config key or an override's key (`+`/`~`/`++` prefixes allowed)."""
    key = key.lstrip("+~")
    return not any(key == name or key.startswith(name + ".") for name in NOT_HYPERPARAMETERS)


def identity(overrides: Iterable[str]) -> tuple[str, ...]:
    """The overrides that decide a run's result, in a fixed order: two jobs with the same identity
    are the same run."""
    return tuple(sorted(o for o in overrides if is_hyperparameter(o.split("=", 1)[0])))
