"""What the sweeper reads of a launcher: whether it streams jobs (`streams_jobs`, `run_each`), and how
many it runs at once (`jobs_at_once()`, else n_jobs as joblib's, array_parallelism, else one)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hydra.core.utils import JobReturn

from alexnet.launch.placement import cores


def streams(launcher: Any) -> bool:
    return bool(getattr(type(launcher), "streams_jobs", False)) and \
        callable(getattr(launcher, "run_each", None))


def jobs_at_once(launcher_config: Any, launcher: Any = None) -> int:
    """Jobs run at a time (one for the basic launcher, and submitit's local one that starts a list)."""
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
    """`size` jobs at a time, numbers consecutive (Hydra numbers a batch from its first); a job is read
    only when its batch forms, so the next batch is chosen knowing how the one before ended."""
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
