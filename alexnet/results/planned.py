"""The runs a Hydra sweep planned, expanded as its basic sweeper does and written to planned_jobs.yaml before
the first job, so the table can list runs that never started and a rerun can tell its own sweep."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from alexnet.files import write_text_atomic

PLANNED_FILE = "planned_jobs.yaml"
MULTIRUN_FILE = "multirun.yaml"


def sweep_overrides(config: DictConfig, config_loader: ConfigLoader | None = None) -> list[Override]:
    """hydra.sweeper.params, then the command line's; glob(...) expands only with a config loader."""
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    return OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)


def jobs_of(config: DictConfig, config_loader: ConfigLoader) -> list[list[str]] | None:
    """The jobs in job-number order; None for a sweeper that chooses jobs as it goes (Optuna...)."""
    from hydra.utils import get_class

    from alexnet.hydra_internals import expand_sweep, is_basic_sweeper

    if not is_basic_sweeper(get_class(str(config.hydra.sweeper._target_))):
        return None
    return expand_sweep(sweep_overrides(config, config_loader))


def write_planned(sweep_dir: Path, jobs: list[list[str]]) -> None:
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(sweep_dir) / PLANNED_FILE, yaml.safe_dump(jobs, default_flow_style=False))


def planned_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """Each job's overrides in job-number order; None for no sweep of ours or one choosing as it goes."""
    path = Path(sweep_dir) / PLANNED_FILE
    if not path.is_file():
        return None
    jobs = yaml.safe_load(path.read_text())
    return [[str(o) for o in job] for job in jobs] if isinstance(jobs, list) else None


def original_command(sweep_dir: Path) -> str | None:
    """The command line the sweep was last started with (Hydra's multirun.yaml), quoted for a shell."""
    path = Path(sweep_dir) / MULTIRUN_FILE
    if not path.is_file():
        return None
    overrides = OmegaConf.load(path).hydra.overrides
    arguments = [o for o in overrides.get("hydra", []) if not str(o).startswith("hydra.mode=")]
    arguments = ["-m", *map(str, arguments), *map(str, overrides.get("task", []))]  # (-m: the mode)
    return " ".join(["python -m alexnet.train", *map(shlex.quote, arguments)])
