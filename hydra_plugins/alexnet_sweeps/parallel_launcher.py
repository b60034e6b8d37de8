"""`hydra/launcher=parallel`: a sweep's jobs side by side on this machine, a process each, for any app.
The work lives in alexnet/launch/parallel.py; this module makes it a plugin and registers its config."""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class ParallelLauncherConf:
    _target_: str = "hydra_plugins.alexnet_sweeps.parallel_launcher.ParallelLauncher"
    n_jobs: int | None = None  # null: one per GPU slot (2 without a GPU); negative: from the cores
    jobs_per_gpu: int = 1  # every GPU gets its first job before any gets a second


ConfigStore.instance().store(group="hydra/launcher", name="parallel", node=ParallelLauncherConf,
                             provider="alexnet_sweeps")


class ParallelLauncher(Launcher):
    """Runs jobs n at a time, a process each, so a dying job costs only itself; Ctrl-C, SIGTERM or
    a job's own stop ends every running job at its safe point and starts no new one."""

    streams_jobs = True  # run_each: hands out a job whenever a place frees (no batch barrier)
    places_gpu_slots = True  # our app's jobs take a GPU slot each (alexnet/launch/placement.py)

    def __init__(self, n_jobs: int | None = None, jobs_per_gpu: int = 1) -> None:
        if jobs_per_gpu < 1:
            raise ValueError(f"hydra.launcher.jobs_per_gpu={jobs_per_gpu}: give 1 or more")
        self.n_jobs, self.jobs_per_gpu = n_jobs, jobs_per_gpu
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from alexnet.launch.parallel import launch

        return launch(self, job_overrides, initial_job_idx)

    def run_each(self, jobs: Iterable[tuple[int, Sequence[str]]], at_most: int | None = None
                 ) -> Iterator[tuple[int, JobReturn]]:
        """Jobs taken one per free place, returns yielded as they end: past the batch barrier."""
        from alexnet.launch.parallel import run_each

        return run_each(self, jobs, at_most)
