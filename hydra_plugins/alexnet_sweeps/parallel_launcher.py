"""`hydra/launcher=parallel`: joblib's launcher (hydra-joblib-launcher), with stops that reach
every job. The logic lives in alexnet/launch/parallel.py; this module makes it a plugin."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
except ImportError:  # no `launchers` extra: no such launcher, and no warning at every command
    JoblibLauncher = object


class ParallelLauncher(JoblibLauncher):  # type: ignore[misc,valid-type]
    """Runs a sweep's jobs n at a time in worker processes, a new one as soon as a worker is free;
    a Ctrl-C, a SIGTERM or one job's sweep-stopping error ends every running job at its safe point
    (checkpointed, `interrupted`) instead of killing it, and starts no new one."""

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from alexnet.launch.parallel import launch

        return launch(self, job_overrides, initial_job_idx)

    def run_each(self, jobs: Iterable[tuple[int, Sequence[str]]], at_most: int | None = None
                 ) -> Iterator[tuple[int, JobReturn]]:
        """(job number, overrides) pairs read one per free worker (at most `at_most` workers);
        (job number, return) pairs as the jobs end (the Optuna sweeper's way past the batch
        barrier)."""
        from alexnet.launch.parallel import run_each

        return run_each(self, jobs, at_most)
