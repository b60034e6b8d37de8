"""What the sweeper needs to know of a launcher, read from what the launcher declares: whether it
streams jobs (the class says `streams_jobs = True` and has `run_each(jobs, at_most)`: a job is
taken when a place is free and its return handed back as it ends), and how many jobs it runs at
once (what it says, `jobs_at_once()`, as our parallel launcher does when its n_jobs is null;
else its config's n_jobs, as joblib's launcher; array_parallelism, as submitit's SLURM launcher;
else one)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hydra.core.utils import JobReturn

from alexnet.launch.placement import cores


def streams(launcher: Any) -> bool:
    return bool(getattr(type(launcher), "streams_jobs", False)) and \
        callable(getattr(launcher, "run_each", None))


def jobs_at_once(launcher_config: Any, launcher: Any = None) -> int:
    """How many jobs the launcher runs at a time (one for the basic launcher, and for submitit's
    local one, which starts a whole list at once)."""
    declared = getattr(launcher, "jobs_at_once", None)
    if callable(declared):
        return int(declared())
    n_jobs = launcher_config.get("n_jobs") if launcher_config is not None else None
    if isinstance(n_jobs, int):  # (joblib's reading: -1 one per core, -2 all but one...)
        return n_jobs if n_jobs > 0 else max(1, cores() + 1 + n_jobs)
    parallelism = launcher_config.get("array_parallelism") if launcher_config is not None else None
    return int(parallelism) if isinstance(parallelism, int) and parallelism > 0 else 1


def in_batches(launcher: Any, jobs: Iterable[tuple[int, Sequence[str]]], size: int
               ) -> Iterator[tuple[int, JobReturn]]:
    """For launchers that take a list of jobs and return when all have ended (Hydra's contract):
    `size` jobs at a time, whose numbers follow each other (Hydra numbers a batch's jobs from its
    first); each job is read from `jobs` only when its batch forms, so the next batch is chosen
    knowing how the one before ended."""
    batch: list[tuple[int, Sequence[str]]] = []

    def launched() -> list[tuple[int, JobReturn]]:
        returns = launcher.launch([overrides for _, overrides in batch],
                                  initial_job_idx=batch[0][0])
        numbers = [number for number, _ in batch]
        batch.clear()
        return list(zip(numbers, returns, strict=True))

    for number, overrides in jobs:
        if batch and batch[-1][0] + 1 != number:
            yield from launched()
        batch.append((number, overrides))
        if len(batch) == size:
            yield from launched()
    if batch:
        yield from launched()
