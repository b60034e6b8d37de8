"""The one adapter to Hydra's private parts, used where Hydra has no public way:
- how its basic sweeper expands a command line into jobs (`BasicSweeper.split_arguments`), so a
  sweep's planned jobs are exactly the ones Hydra will run, globs included;
- the error a FAILED job ended with (`JobReturn.return_value` raises it after writing to stderr
  that the job failed; the dataclass field holds it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn, JobStatus


def is_basic_sweeper(sweeper_class: type | None) -> bool:
    """Whether the sweeper is Hydra's basic one (a grid it expands up front)."""
    return sweeper_class is not None and issubclass(sweeper_class, BasicSweeper)


def expand_sweep(overrides: Sequence[Override]) -> list[list[str]]:
    """The jobs the basic sweeper makes of these overrides, in job-number order."""
    batches = BasicSweeper.split_arguments(list(overrides), None)
    return [list(job) for batch in batches for job in batch]


def job_error(job_return: JobReturn) -> Any:
    """The error of a FAILED job, without the stderr note; None for other jobs."""
    return job_return._return_value if job_return.status == JobStatus.FAILED else None
