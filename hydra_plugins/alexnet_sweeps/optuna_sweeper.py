"""`hydra/sweeper=optuna`: our Optuna sweeper (Hydra's own plugin needs optuna < 3 and cannot
prune). Its keys are the official plugin's (direction, n_trials, n_jobs, storage, study_name,
sampler, params), plus pruner and objective. The work lives in alexnet/search/sweeper.py; this
module makes it a plugin (it imports optuna only when a sweep starts)."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, pruner: Any, direction: Any, objective: Any, study_name: str,
                 storage: str, n_trials: int, n_jobs: int | None, params: Any = None) -> None:
        self.sampler, self.pruner = sampler, pruner
        self.direction, self.objective = direction, objective
        self.study_name, self.storage = study_name, storage
        self.n_trials, self.n_jobs, self.params = n_trials, n_jobs, params

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        from alexnet.search.sweeper import sweep

        sweep(self, arguments)
