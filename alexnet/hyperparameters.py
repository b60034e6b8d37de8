"""Which config keys make a run what it is. The others (how or where it runs, what was reported
for it) may differ between a run and its resumption and are not compared in the tables."""

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
    """The result-deciding overrides, sorted: two jobs of a sweep with one identity are one run."""
    return tuple(sorted(o for o in overrides if is_hyperparameter(o.split("=", 1)[0])))


def hyperparameters(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Result-deciding keys of a resolved config, dotted, however the command line said them."""
    found: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if not is_hyperparameter(dotted):
            continue
        if isinstance(value, Mapping) and value:
            found |= hyperparameters(value, f"{dotted}.")
        else:  # a choice as text: what torch.load(weights_only=True) can read back
            found[dotted] = value.value if isinstance(value, Enum) else value
    return found


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """`key: recorded -> current` per changed key; a key only one has is another app version's."""
    return [f"{key}: {recorded[key]!r} -> {current[key]!r}" for key in sorted(recorded)
            if key in current and recorded[key] != current[key]]


def dotted(config: dict[str, Any]) -> dict[str, Any]:
    return pd.json_normalize(config, sep=".").iloc[0].to_dict()


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys, lists as text: what params/hparams can hold."""
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in dotted(config).items()}
