"""Which hyperparameters tell runs apart, and how a value reads for a person (tables, legends,
sentences): `lr=0.00053`, not `lr=0.0005297719971005209`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from alexnet.results.collect import Run

# Hyperparameters first in the table, in this order, when they vary.
LEADING = ["experiment", "model.name", "augmentation.crop", "augmentation.flip",
           "augmentation.normalize", "optimizer", "optimizer.lr", "batch_size", "epochs",
           "model.logit_relu", "seed"]
SIGNIFICANT_DIGITS = 3


def varying_columns(runs: Sequence[Run]) -> list[str]:
    """Hyperparameters whose value differs between runs: leading ones first, then the rest."""
    # A key only some runs have (momentum beside Adam) varies only if its present values differ.
    table = pd.DataFrame([r.hyperparameters for r in runs])
    varying = [c for c in table.columns if table[c].dropna().astype(str).nunique() > 1]
    return [c for c in LEADING if c in varying] + sorted(c for c in varying if c not in LEADING)


def own_keys(runs: Sequence[Run], keys: Sequence[str]) -> list[str]:
    """The keys that say something of their own: a key no command line set whose value only
    follows a key above it (scheduler.min_factor with scheduler: part of choosing the schedule)
    is left out."""
    values = pd.DataFrame([{k: str(r.hyperparameters.get(k)) for k in keys} for r in runs])
    typed = {o.lstrip("+~").split("=", 1)[0] for r in runs for o in r.overrides}

    def follows(key: str) -> bool:
        parents = [p for p in keys if key.startswith(p + ".")]
        return key not in typed and any((values.groupby(p)[key].nunique() <= 1).all()
                                        for p in parents)

    return [k for k in keys if not follows(k)]


def readable(value: Any) -> str:
    """A hyperparameter's value for a person: floats to 3 significant digits."""
    if isinstance(value, float):
        return f"{value:.{SIGNIFICANT_DIGITS}g}"
    return str(value)


def natural_order(values: Sequence[Any]) -> list[Any]:
    """Distinct values in the order a person lists them: numbers by size, then the rest by name."""
    def is_number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    distinct = list(dict.fromkeys(values))
    return (sorted(filter(is_number, distinct), key=float)
            + sorted((v for v in distinct if not is_number(v)), key=str))
