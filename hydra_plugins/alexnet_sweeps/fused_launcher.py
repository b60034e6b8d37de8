"""`hydra/launcher=fused`: alexnet runs that can share one network trained as one, a process per group.
The work lives in alexnet/launch/fused.py; this module makes it a plugin and registers its config."""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn

from hydra_plugins.alexnet_sweeps.parallel_launcher import ParallelLauncher


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.alexnet_sweeps.fused_launcher.FusedLauncher"
    n_jobs: int | None = None  # groups at once: null = one per GPU slot (2 without a GPU)
    jobs_per_gpu: int = 1  # groups that share one GPU
    group_size: int | None = None  # runs fused at most; null: every run that can be


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf,
                             provider="alexnet_sweeps")


class FusedLauncher(ParallelLauncher):
    """Trains jobs that can share one network (same shape, batch, epochs, data) as one; each stays a run."""

    streams_jobs = False  # a sweeper hands it batches: each batch is grouped

    def __init__(self, n_jobs: int | None = None, jobs_per_gpu: int = 1,
                 group_size: int | None = None) -> None:
        super().__init__(n_jobs, jobs_per_gpu)
        if group_size is not None and group_size < 1:
            raise ValueError(f"hydra.launcher.group_size={group_size}: give 1 or more, or null")
        self.group_size = group_size

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from alexnet.launch.fused import launch

        return launch(self, job_overrides, initial_job_idx)
