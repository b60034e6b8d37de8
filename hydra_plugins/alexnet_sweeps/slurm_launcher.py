"""`hydra/launcher=slurm`: submitit's SLURM launcher (hydra-submitit-launcher) with a wait that ends
and settings checked before submitting. The logic lives in alexnet/launch/slurm.py; this module
makes it a plugin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn

from alexnet.resume.stop import Stop

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        SlurmLauncher as SubmititSlurm,
    )
except ImportError:  # no `launchers` extra: no such launcher, and no warning at every command
    SubmititSlurm = object


class SlurmLauncher(SubmititSlurm):  # type: ignore[misc,valid-type]
    """One SLURM job per run, as an array. The sweep command ends when every job has ended, with a
    result or without one (cancelled, killed, node lost: found with squeue, no accounting needed);
    a run stopped inside SLURM (scancel) hands back how it stopped instead of leaving no result."""

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from alexnet.launch.slurm import launch

        return launch(self, job_overrides, initial_job_idx)

    @staticmethod
    def check_settings(params: dict[str, Any]) -> None:
        """Refuse, before anything is submitted, settings SLURM would take but that cannot work."""
        from alexnet.launch.slurm import check_settings

        check_settings(params)

    def __call__(self, *args: Any) -> JobReturn | Stop:
        """In the SLURM job: the run; a stopped run (SIGTERM from scancel, a full disk) returns
        how it stopped, so the launcher learns it from the result file."""
        try:
            return super().__call__(*args)
        except Stop as stopped:
            return stopped
