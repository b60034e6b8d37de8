"""An app that is not ours, for the Optuna sweeper's tests: x**2 + y**2 (the official plugin's
sphere), reported per step when `steps` > 0 (falling toward the value, so that a pruner has
something to judge), with switches for a failing task and one that waits for a file."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from alexnet.search.trial import report


@dataclass
class Quadratic:
    x: float = 1.0
    y: float = 1.0
    z: float = 0.0
    steps: int = 0  # values reported to the trial, one per step
    error: bool = False  # the task raises
    wait_for: str | None = None  # a file the task waits for before it ends ...
    wait_above: float | None = None  # ... if x is above this (else every trial waits)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # (typed: a list, no string)
    max_z_difference_from_x: float = 0.5


ConfigStore.instance().store(name="quadratic_schema", node=Quadratic)


def identity(fixed: list[str]) -> list[str]:
    """resume_identity: the fixed overrides a rerun must repeat (not the waiting ones)."""
    return [o for o in fixed if not o.startswith("wait_")]


def configure(cfg: DictConfig, trial) -> None:
    """custom_search_space: z within max_z_difference_from_x of x, and a new key +w."""
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)


@hydra.main(version_base="1.3", config_path="conf", config_name="quadratic")
def main(cfg: DictConfig) -> float:
    Path(HydraConfig.get().runtime.output_dir, "seen.json").write_text(
        json.dumps(OmegaConf.to_container(cfg)))
    if cfg.error:
        raise RuntimeError("cfg.error is true")
    if cfg.wait_for and (cfg.wait_above is None or cfg.x > cfg.wait_above):
        while not Path(cfg.wait_for).exists():
            time.sleep(0.05)
    value = cfg.x**2 + cfg.y**2
    for step in range(cfg.steps):
        if report(value + cfg.steps - step, step):
            break
    return value


if __name__ == "__main__":
    main()
