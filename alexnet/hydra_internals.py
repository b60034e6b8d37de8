"""The one adapter to Hydra's private parts: the basic sweeper's job expansion, so a sweep's planned
jobs are exactly those Hydra will run, globs included."""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override


def is_basic_sweeper(sweeper_class: type | None) -> bool:
    """Whether the sweeper is Hydra's basic one (a grid it expands up front)."""
    return sweeper_class is not None and issubclass(sweeper_class, BasicSweeper)


def expand_sweep(overrides: Sequence[Override]) -> list[list[str]]:
    """The jobs the basic sweeper makes of these overrides, in job-number order."""
    batches = BasicSweeper.split_arguments(list(overrides), None)
    return [list(job) for batch in batches for job in batch]
