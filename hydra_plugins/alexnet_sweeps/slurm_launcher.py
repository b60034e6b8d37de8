"""`hydra/launcher=slurm`: submitit's SLURM launcher with a wait that ends and settings checked first.
The logic lives in alexnet/launch/slurm.py; this module makes it a plugin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn

from alexnet.resume.stop import Stop

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurm
except ImportError:  # no `launchers` extra: no such launcher, and no warning at every command
    SubmititSlurm = object


class SlurmLauncher(SubmititSlurm):  # type: ignore[misc,valid-type]
    """One SLURM job per run, as an array; the sweep ends once every job has, result or not (squeue),
    and a run stopped by scancel hands back how it stopped instead of leaving no result."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from alexnet.launch.slurm import launch

        return launch(self, job_overrides, initial_job_idx)

    @staticmethod
    def check_settings(params: dict[str, Any]) -> None:
        """Refuse, before anything is submitted, settings SLURM would take but that cannot work."""
        from alexnet.launch.slurm import check_settings

        check_settings(params)

    def __call__(self, *args: Any) -> JobReturn | Stop:
        """In the SLURM job: a stopped run returns how it stopped, for the launcher to read as its result."""
        try:
            return super().__call__(*args)
        except Stop as stopped:
            return stopped
