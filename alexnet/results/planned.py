"""The runs a Hydra sweep planned, read back from its multirun.yaml, so the table can list the
ones that never started (Hydra writes multirun.yaml before the first job)."""

from __future__ import annotations

from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

MULTIRUN_FILE = "multirun.yaml"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def planned_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """Each job's overrides in job-number order, as the sweep in `sweep_dir` planned them; None
    when `sweep_dir` is no sweep or its sweeper chooses jobs as it goes (Optuna, Nevergrad...)."""
    path = Path(sweep_dir) / MULTIRUN_FILE
    return jobs_of(OmegaConf.load(path)) if path.is_file() else None


def sweep_overrides(config: DictConfig) -> list[Override]:
    """What a multirun sweeps over, as its sweeper sees it: hydra.sweeper.params, then the
    command line's overrides."""
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += list(config.hydra.overrides.task)
    return OverridesParser.create().parse_overrides(arguments)


def jobs_of(config: DictConfig) -> list[list[str]] | None:
    """The jobs a multirun config makes, expanded as Hydra's basic sweeper does."""
    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    batches = BasicSweeper.split_arguments(sweep_overrides(config), None)
    return [job for batch in batches for job in batch]
