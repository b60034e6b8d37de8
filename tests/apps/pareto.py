"""An app that is not ours returning two floats, for the Optuna sweeper's Pareto front: two
quadratics with their minima apart, both reported per step when `steps` > 0."""

from __future__ import annotations

from dataclasses import dataclass

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from alexnet.search.trial import report


@dataclass
class Pareto:
    x: float = 1.0
    y: float = 1.0
    steps: int = 0


ConfigStore.instance().store(name="pareto", node=Pareto)


@hydra.main(version_base="1.3", config_name="pareto")
def main(cfg: DictConfig) -> list[float]:
    values = [4 * cfg.x**2 + 4 * cfg.y**2, (cfg.x - 5) ** 2 + (cfg.y - 5) ** 2]
    for step in range(cfg.steps):
        report(values[0], step)
    return values


if __name__ == "__main__":
    main()
