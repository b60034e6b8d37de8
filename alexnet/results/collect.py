"""Read the runs under some folders, as they stand on disk: finished, failed, still running, killed
(`stale`), and, for a Hydra sweep, the planned runs that have no folder yet (`not_started`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf

from alexnet.hyperparameters import dotted, is_hyperparameter
from alexnet.results.planned import planned_jobs
from alexnet.run.record import METRICS_FILE, RESULTS_FILE, DamagedRecord, effective_status, read_summary
from alexnet.scores import Status

NOT_RUNS = frozenset({"mlflow-artifacts", "mlruns"})  # MLflow's stores: copies of records, not runs
GROUP_COLUMNS = {"model": "model.name"}  # a group's chosen option's key in a flattened config


@dataclass
class Run:
    """One run as read from disk (or planned by its sweep and not started)."""

    path: Path
    summary: dict[str, Any]
    hyperparameters: dict[str, Any]
    metrics: pd.DataFrame
    notebook: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")


@dataclass
class Collection:
    runs: list[Run]
    skipped: list[tuple[Path, str]]  # folders that are no runs (or unreadable), and why


def find_run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every dir under the roots a run wrote, but MLflow's artifact copies (they would count runs twice)."""
    found: set[Path] = set()
    for root in roots:
        for marker in [*root.rglob(RESULTS_FILE), *root.rglob(".hydra")]:
            if not NOT_RUNS.intersection(marker.relative_to(root).parts):
                found.add(marker.parent)
    return sorted(found, key=lambda path: [int(part) if part.isdigit() else part for part in path.parts])


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config's hyperparameters by dotted key; optimizer and scheduler by short name (`sgd`)."""
    out: dict[str, Any] = {"scheduler": "none"} if "scheduler" in config else {}
    for key, value in dotted(config).items():
        if not is_hyperparameter(key) or key == "scheduler":  # (an empty block: none)
            continue
        if key in ("optimizer._target_", "scheduler._target_"):
            key, value = key.split(".")[0], str(value).rsplit(".", 1)[-1].lower()
        out[key] = str(value) if isinstance(value, list) else value
    return out


def read_run(path: Path, stale_after_s: float | None = None) -> Run:
    """ValueError names what is missing; `stale_after_s` overrides the run's heartbeat window."""
    summary = read_summary(path)
    if summary is None:
        raise ValueError(f"no {RESULTS_FILE} (the run never started, or is not one of ours)")
    summary = {**summary, "status": effective_status(summary, path, stale_after_s)}
    metrics_path = path / METRICS_FILE
    try:
        metrics = pd.read_csv(metrics_path) if metrics_path.is_file() else pd.DataFrame()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{METRICS_FILE} is unreadable ({err})") from err
    overrides_path = path / ".hydra" / "overrides.yaml"
    overrides = (list(OmegaConf.load(overrides_path)) if overrides_path.is_file()
                 else list(summary.get("overrides") or []))
    hyperparameters = flatten(summary["config"])
    experiment = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), None)
    if experiment is not None:
        hyperparameters["experiment"] = experiment
    return Run(path, summary, hyperparameters, metrics, summary["config"].get("notebook"), overrides)


def not_started(path: Path, overrides: list[str]) -> Run:
    """A planned run without a record: what its overrides say, and status `not_started`."""
    hyperparameters: dict[str, Any] = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if is_hyperparameter(key):
            hyperparameters[GROUP_COLUMNS.get(key, key)] = yaml.safe_load(value)
    summary = {"status": Status.not_started, "overrides": overrides, "epochs_done": 0}
    return Run(path, summary, hyperparameters, pd.DataFrame(), None, list(overrides))


def collect(roots: Sequence[Path], stale_after_s: float | None = None) -> Collection:
    """Every run under the roots; a sweep root's planned runs without a record as not_started."""
    runs, skipped, damaged = [], [], []
    for path in find_run_dirs(roots):
        try:
            runs.append(read_run(path, stale_after_s))
        except DamagedRecord as err:  # (said even where its sweep lists it as planned)
            damaged.append((path, f"{err}: listed as not started; the sweep's command again "
                                  "rebuilds it from its metrics.csv and checkpoint"))
        except (ValueError, OSError) as err:
            skipped.append((path, str(err)))
    for root in roots:
        # A planned job's record is at its job-number folder, or in a run with exactly its overrides.
        mine = [run for run in runs if run.path.is_relative_to(root)]
        paths, made = {run.path for run in mine}, {tuple(sorted(run.overrides)) for run in mine}
        for number, job in enumerate(planned_jobs(root) or []):
            if root / str(number) not in paths and tuple(sorted(job)) not in made:
                runs.append(not_started(root / str(number), job))
    planned_paths = {run.path for run in runs if run.status == Status.not_started}
    skipped = [(path, reason) for path, reason in skipped if path not in planned_paths]
    return Collection(runs, [*damaged, *skipped])


# Hyperparameters first in the table, in this order, when they vary.
LEADING = ["experiment", "model.name", "augmentation.crop", "augmentation.flip", "augmentation.normalize",
           "optimizer", "optimizer.lr", "batch_size", "epochs", "model.logit_relu", "seed"]
SIGNIFICANT_DIGITS = 3


def varying_columns(runs: Sequence[Run]) -> list[str]:
    """Hyperparameters whose values differ where present (momentum beside Adam), LEADING ones first."""
    table = pd.DataFrame([r.hyperparameters for r in runs])
    varying = [c for c in table.columns if table[c].dropna().astype(str).nunique() > 1]
    return [c for c in LEADING if c in varying] + sorted(c for c in varying if c not in LEADING)


def own_keys(runs: Sequence[Run], keys: Sequence[str]) -> list[str]:
    """Keys less those no command line set that only follow a key above (scheduler.min_factor)."""
    values = pd.DataFrame([{k: str(r.hyperparameters.get(k)) for k in keys} for r in runs])
    typed = {o.lstrip("+~").split("=", 1)[0] for r in runs for o in r.overrides}

    def follows(key: str) -> bool:
        parents = [p for p in keys if key.startswith(p + ".")]
        return key not in typed and any((values.groupby(p)[key].nunique() <= 1).all()
                                        for p in parents)

    return [k for k in keys if not follows(k)]


def readable(value: Any) -> str:
    """A hyperparameter's value for a person: floats to 3 significant digits."""
    return f"{value:.{SIGNIFICANT_DIGITS}g}" if isinstance(value, float) else str(value)


def natural_order(values: Sequence[Any]) -> list[Any]:
    """Distinct values in the order a person lists them: numbers by size, then the rest by name."""
    def is_number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    distinct = list(dict.fromkeys(values))
    return (sorted(filter(is_number, distinct), key=float)
            + sorted((v for v in distinct if not is_number(v)), key=str))
