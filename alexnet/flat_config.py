"""A nested config as one level of dotted keys: what tables, MLflow params and TensorBoard hparams
hold. A leaf module (pandas only), so the run's trackers and the tables share it without importing
each other."""

from __future__ import annotations

from typing import Any

import pandas as pd


def dotted(config: dict[str, Any]) -> dict[str, Any]:
    """optimizer.lr, augmentation.flip, ... for a nested config."""
    return pd.json_normalize(config, sep=".").iloc[0].to_dict()


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of a resolved config, lists as text: what params/hparams can hold."""
    return {k: v if isinstance(v, bool | int | float | str) else str(v)
            for k, v in dotted(config).items()}
