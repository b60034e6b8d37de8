"""The app's configs ship inside the package (alexnet/conf/), so an installed wheel has them. This
composes them outside a Hydra app (benchmarks, tests) exactly as `python -m alexnet.train` does."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from alexnet import config_schema  # noqa: F401 - registers the schemas the configs start from

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def compose_config(*overrides: str, config_name: str = "config") -> DictConfig:
    """The composed config (Hydra's own keys left out) for these overrides."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def config_label(hydra_config: DictConfig) -> str:
    """What a run's config is called (an MLflow experiment's default name): the sweep preset it
    was started with (`sweep=notebook_cpu`), else the config's name."""
    return str(hydra_config.runtime.choices.get("sweep") or hydra_config.job.config_name)
