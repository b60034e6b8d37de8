"""Where a job stands in its sweep, from what its own process knows: its number, the planned runs, how
many go at once and, when several jobs share the terminal, the line its progress bar keeps."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import IO

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig

from alexnet.files import OutputError
from alexnet.launch.placement import LOCKS_DIR, jobs_at_once
from alexnet.locks import label, private_folder, try_lock
from alexnet.results.planned import planned_jobs
from alexnet.run.progress import Position

log = logging.getLogger(__name__)

# Terminal lines held per process until it ends (even by kill -9): a worker keeps its line job after job.
_held: dict[Path, tuple[IO[str], int]] = {}


def this_job(hydra_cfg: DictConfig | None, epochs: int) -> Position:
    """The job's place in its multirun (`epochs` assumed for later runs not setting theirs); 1 of 1 alone."""
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return Position()
    run = int(hydra_cfg.job.num) + 1
    planned = planned_jobs(Path(str(hydra_cfg.sweep.dir)))
    n_trials = hydra_cfg.sweeper.get("n_trials")
    if planned is not None:
        runs: int | None = len(planned)
        later = tuple(_epochs_of(job, epochs) for job in planned[run:])
    elif isinstance(n_trials, int):
        runs = max(n_trials, run)
        later = (epochs,) * (runs - run)
    else:  # a sweeper that neither plans its jobs nor says how many it will run
        runs, later = None, ()
    return Position(run, runs, _at_once(hydra_cfg, runs), later)


def _epochs_of(job: list[str], default: int) -> int:
    for override in OverridesParser.create().parse_overrides(job):
        value = override.value()
        if override.get_key_element().lstrip("+~") == "epochs" and isinstance(value, int):
            return value
    return default


def _at_once(hydra_cfg: DictConfig, runs: int | None) -> int:
    count = jobs_at_once(hydra_cfg.get("launcher"))
    searching = hydra_cfg.sweeper.get("n_jobs")  # (a search's trials at a time)
    if isinstance(searching, int) and searching > 0:
        count = min(count, searching)
    return max(1, min(count, runs or count))


def terminal_line(position: Position, hydra_cfg: DictConfig | None) -> int | None:
    """The bar's own line below the cursor when jobs share the terminal; None: at the cursor, or no bar."""
    if position.at_once <= 1 or not sys.stderr.isatty():
        return None
    folder = Path(str(hydra_cfg.sweep.dir)) / LOCKS_DIR
    if folder not in _held:
        try:
            _held[folder] = take_line(folder)
        except OutputError as err:  # (a bar is no reason to stop a run)
            log.warning("no progress bar for this run: %s", err)
            return None
    return _held[folder][1]


def take_line(folder: Path) -> tuple[IO[str], int]:
    """The pool's first line no live process holds, held until the returned file is closed."""
    fix = "remove it: it holds only the sweep's locks, and is made anew"
    with private_folder(folder, folder.parent, fix) as folder_fd:
        line = 1
        while (handle := try_lock(folder / f"terminal-line-{line}.lock", folder_fd=folder_fd)) is None:
            line += 1
    label(handle, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return handle, line
