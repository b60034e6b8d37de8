"""How far a running sweep has got: each unfinished run's epochs done of planned (its `epochs=`, else the
sweep's most common), and the time left: epochs left times the run's mean `epoch_time_s` (the others' median
before its first epoch), over the runs training now. Early stopping can only shorten it; stale and
interrupted runs are not counted (they go on only when the sweep is run again)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alexnet.results.collect import Run
from alexnet.run.progress import duration, seconds_left
from alexnet.scores import Status

PENDING = (Status.running, Status.waiting, Status.not_started)  # they train on unaided
HALTED = (Status.stale, Status.interrupted)  # they train on only when the sweep is run again


@dataclass(frozen=True)
class RunProgress:
    path: Path
    status: str
    done: int
    planned: int | None
    seconds_per_epoch: float | None
    estimated: bool  # seconds_per_epoch is the other runs' (it has no epoch of its own)

    @property
    def left(self) -> int | None:
        return None if self.planned is None else max(self.planned - self.done, 0)


@dataclass(frozen=True)
class Progress:
    runs: list[RunProgress]  # the pending and halted runs
    total: int  # runs in the sweep
    at_once: int  # runs training now
    seconds_left: float | None  # None where some pending run's epochs or speed are unknown


def _own_seconds(run: Run) -> float | None:
    if "epoch_time_s" in run.metrics and run.metrics["epoch_time_s"].notna().any():
        return float(run.metrics["epoch_time_s"].mean())
    done, wall = run.summary.get("epochs_done") or 0, run.summary.get("wall_time_s")
    return float(wall) / done if done and isinstance(wall, int | float) else None


def _planned(run: Run, usual: int | None) -> int | None:
    planned = run.summary.get("epochs_planned")
    if isinstance(planned, int):
        return planned
    epochs = run.hyperparameters.get("epochs")
    return epochs if isinstance(epochs, int) else usual


def progress(runs: Sequence[Run]) -> Progress | None:
    """Where the sweep stands, or None when every run has ended."""
    if not any(run.status in (*PENDING, *HALTED) for run in runs):
        return None
    own = {id(run): _own_seconds(run) for run in runs}
    known = [s for s in own.values() if s is not None]
    typical = statistics.median(known) if known else None
    counts = Counter(p for p in (run.summary.get("epochs_planned") for run in runs)
                     if isinstance(p, int))
    usual = counts.most_common(1)[0][0] if counts else None
    found = []
    for run in runs:
        if run.status in (*PENDING, *HALTED):
            seconds = own[id(run)]
            found.append(RunProgress(run.path, str(run.status), int(run.summary.get("epochs_done") or 0),
                                     _planned(run, usual), seconds if seconds is not None else typical,
                                     seconds is None))
    at_once = max(1, sum(run.status == Status.running for run in runs))
    left = seconds_left([(p.left, p.seconds_per_epoch) for p in found if p.status in PENDING],
                        at_once, typical)
    return Progress(found, len(runs), at_once, left)


def describe(found: Progress, relative_to: Path | None = None) -> str:
    """A line per unfinished run and the time left, for a person."""
    counts = Counter(p.status for p in found.runs)
    lines = [f"not finished: {', '.join(f'{n} {s}' for s, n in counts.items())} "
             f"(of {found.total} runs)"]
    for p in found.runs:
        where = p.path.relative_to(relative_to) if relative_to and p.path.is_relative_to(relative_to) \
            else p.path
        speed = ("" if p.seconds_per_epoch is None else
                 f", {p.seconds_per_epoch:.0f} s an epoch"
                 + (" (the other runs')" if p.estimated else ""))
        lines.append(f"  {where}: {p.status}, {p.done} of {p.planned or '?'} epochs{speed}")
    pending = [p for p in found.runs if p.status in PENDING]
    if not pending:
        lines.append("nothing is training: run the sweep's command again to finish it")
    elif found.seconds_left is None:
        why = ("no run has finished an epoch yet" if all(p.seconds_per_epoch is None for p in pending)
               else "a planned run's epochs are unknown")
        lines.append(f"time left: unknown ({why})")
    else:
        epochs = sum(p.left for p in pending)
        lines.append(f"estimated time left: about {duration(found.seconds_left)} ({epochs} epochs "
                     f"to go, {found.at_once} run{'s' if found.at_once > 1 else ''} at a time)")
    if any(p.status in HALTED for p in found.runs):
        lines.append("stale and interrupted runs are not counted: they go on when the sweep is run "
                     "again")
    return "\n".join(lines)
