"""`hydra/launcher=fused`: alexnet's runs that can share one network (alexnet/fused.py) trained as
one, each group in a process of its own (as hydra/launcher=parallel runs a job). The work lives in
alexnet/launch/fused.py; this module makes it a plugin and registers its config."""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn

from hydra_plugins.alexnet_sweeps.parallel_launcher import ParallelLauncher


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.alexnet_sweeps.fused_launcher.FusedLauncher"
    # Groups at once: null = one per GPU slot (GPUs x jobs_per_gpu), or 2 on a machine without a
    # GPU; or a count (negative counts from the cores, as joblib's).
    n_jobs: int | None = None
    jobs_per_gpu: int = 1  # groups that share one GPU
    group_size: int | None = None  # runs fused at most; null: every run that can be


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf,
                             provider="alexnet_sweeps")


class FusedLauncher(ParallelLauncher):
    """Trains the jobs that can share one network (the same model shape, batch size, epochs, data,
    device and speed settings) as one, a group per process; each job stays a run of its own."""

    streams_jobs = False  # a sweeper hands it batches: each batch is grouped

    def __init__(self, n_jobs: int | None = None, jobs_per_gpu: int = 1,
                 group_size: int | None = None) -> None:
        super().__init__(n_jobs, jobs_per_gpu)
        if group_size is not None and group_size < 1:
            raise ValueError(f"hydra.launcher.group_size={group_size}: give 1 or more, or null")
        self.group_size = group_size

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from alexnet.launch.fused import launch

        return launch(self, job_overrides, initial_job_idx)
