"""Which config keys make a run what it is. The others say how or where it runs (threads, device,
progress bars, the data's folder, tracking, launching, checkpoint keeping) or what was reported
for it (`notebook.*`): they may differ between a run and its resumption, and are not compared
between runs in the tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

import pandas as pd

NOT_HYPERPARAMETERS = ("notebook", "logger", "checkpoint", "launch", "progress", "heartbeat_s", "report",
                       "torch_threads", "device", "data.root", "data.download", "data.num_workers",
                       "show_data")


def is_hyperparameter(key: str) -> bool:
    """`key` as a dotted config key or an override's key (`+`/`~`/`++` prefixes allowed)."""
    key = key.lstrip("+~")
    return not any(key == name or key.startswith(name + ".") for name in NOT_HYPERPARAMETERS)


def identity(overrides: Iterable[str]) -> tuple[str, ...]:
    """The overrides that decide a run's result, in a fixed order: two jobs of one sweep with the
    same identity are the same run."""
    return tuple(sorted(o for o in overrides if is_hyperparameter(o.split("=", 1)[0])))


def hyperparameters(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A resolved config's keys that decide the result, dotted (`optimizer.lr`), with their values:
    what makes a run the same run, however its command line said it."""
    found: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if not is_hyperparameter(dotted):
            continue
        if isinstance(value, Mapping) and value:
            found |= hyperparameters(value, f"{dotted}.")
        else:  # (a choice as its text: what a checkpoint may hold, torch.load(weights_only=True))
            found[dotted] = value.value if isinstance(value, Enum) else value
    return found


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """`key: recorded -> current` for each hyperparameter both configs have with other values
    (a key only one of them has comes from another version of the app, not another run)."""
    return [f"{key}: {recorded[key]!r} -> {current[key]!r}" for key in sorted(recorded)
            if key in current and recorded[key] != current[key]]


def dotted(config: dict[str, Any]) -> dict[str, Any]:
    """optimizer.lr, augmentation.flip, ... for a nested config."""
    return pd.json_normalize(config, sep=".").iloc[0].to_dict()


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of a resolved config, lists as text: what params/hparams can hold."""
    return {k: v if isinstance(v, bool | int | float | str) else str(v)
            for k, v in dotted(config).items()}
