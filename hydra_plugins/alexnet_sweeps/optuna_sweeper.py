"""`hydra/sweeper=optuna`: a drop-in for Hydra's Optuna sweeper, plus pruning, streaming and resume.
Its conf/ is searched after the app's own, so an app's optuna.yaml wins; the work is in alexnet/search/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from alexnet.search import config

config.register()


class OptunaSweeperConfigs(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append("alexnet-sweeps", f"file://{Path(__file__).parent / 'conf'}")


class OptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, direction: Any, storage: Any, study_name: str | None,
                 n_trials: int, n_jobs: int | None, max_failure_rate: float, params: Any,
                 custom_search_space: str | None, pruner: Any, resume_identity: str | None = None,
                 metric_names: Any = None, search_space: Any = None) -> None:
        self.sampler, self.direction, self.storage = sampler, direction, storage
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, n_jobs
        self.max_failure_rate, self.params = max_failure_rate, params
        self.custom_search_space, self.pruner = custom_search_space, pruner
        self.resume_identity, self.metric_names = resume_identity, metric_names
        self.search_space = search_space

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        from alexnet.search.sweeper import sweep

        sweep(self, arguments)
