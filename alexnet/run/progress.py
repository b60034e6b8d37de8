"""How long a run, and its sweep, have to go: the estimate and its words for the log line and bar.
A run's pace is the mean of its measured epochs; the later runs' planned epochs at that pace are
shared by the runs at once, never less than the run's own time left."""

from __future__ import annotations

import math
import statistics
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from tqdm import tqdm


@dataclass(frozen=True)
class Position:
    """Where a run stands: run `run` of `runs` (None: unknown), `at_once` side by side, later runs' epochs."""

    run: int = 1
    runs: int | None = 1
    at_once: int = 1
    later_epochs: tuple[int, ...] = ()


@dataclass(frozen=True)
class TimeLeft:
    run_s: float
    sweep_s: float | None  # None when the sweep does not say how many runs it has


def measured(rows: Iterable[Mapping[str, Any]]) -> list[float]:
    """The epoch seconds of a run's epoch rows (metrics.csv's `epoch_time_s`), where recorded."""
    seconds = (row.get("epoch_time_s") for row in rows)
    return [float(s) for s in seconds if isinstance(s, int | float) and math.isfinite(s)]


def seconds_left(work: Sequence[tuple[int | None, float | None]], at_once: int,
                 typical: float | None = None) -> float | None:
    """Time left: each run's epochs left x its pace (else `typical`), shared by `at_once`; None if unknown."""
    known = [pace for _, pace in work if pace is not None]
    typical = typical if typical is not None else statistics.median(known) if known else None
    if typical is None or any(left is None for left, _ in work):
        return None
    return sum(left * (typical if pace is None else pace) for left, pace in work) / max(1, at_once)


def time_left(epoch_seconds: Sequence[float], epochs_left: int, position: Position) -> TimeLeft | None:
    """The rule above from one run's own pace; None before any epoch is measured."""
    if not epoch_seconds:
        return None
    per_epoch = statistics.fmean(epoch_seconds)
    run_s = per_epoch * max(epochs_left, 0)
    if position.runs is None:
        return TimeLeft(run_s, None)
    sweep_s = seconds_left([(max(epochs_left, 0), per_epoch),
                            *((later, None) for later in position.later_epochs)], position.at_once)
    return TimeLeft(run_s, max(run_s, sweep_s))


def duration(seconds: float) -> str:
    """`45 s`, `12 min`, `2 h 05 min`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def where(position: Position, epoch: int, epochs: int) -> str:
    """`run 2 of 6, epoch 3 of 5`, for the log line."""
    runs = "" if position.runs is None else f" of {position.runs}"
    return f"run {position.run}{runs}, epoch {epoch} of {epochs}"


def told(left: TimeLeft | None, position: Position) -> str:
    """`time left (estimate): run 40 s, sweep 4 min`, for the log line (a run on its own: `40 s`)."""
    if left is None:
        return "time left: unknown until an epoch is measured"
    if position.runs == 1:
        return f"time left (estimate): {duration(left.run_s)}"
    sweep = "unknown" if left.sweep_s is None else duration(left.sweep_s)
    return f"time left (estimate): run {duration(left.run_s)}, sweep {sweep}"


def bar_label(position: Position, epoch: int, epochs: int, together: int = 1) -> str:
    """`run 2/6 epoch 3/5` (`runs 2-5/6 ...` for a fused group), a progress bar's first words."""
    runs = "" if position.runs is None else f"/{position.runs}"
    which = f"runs {position.run}-{position.run + together - 1}" if together > 1 else f"run {position.run}"
    return f"{which}{runs} epoch {epoch}/{epochs}"


def bar_postfix(left: TimeLeft | None, position: Position) -> str | None:
    """`left ~2 min, sweep ~14 min` after a bar's own timings; None before an epoch is measured."""
    if left is None:
        return None
    if position.runs == 1 or left.sweep_s is None:
        return f"left ~{duration(left.run_s)}"
    return f"left ~{duration(left.run_s)}, sweep ~{duration(left.sweep_s)}"


T = TypeVar("T")

ERASE_LINE = "\x1b[K"
CURSOR_UP = "\x1b[A"
GAP = 2  # blank rows between the cursor's row and the first bar
_THREAD_LOCK = threading.RLock()


class OwnLineBar(tqdm):
    """A tqdm bar on line `line` of the bars below the cursor, each draw one write (see above)."""

    def __init__(self, *args: Any, line: int, **kwargs: Any) -> None:
        self.row = GAP + line  # below the cursor's row
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self.row >= (self.nrows or 20) - 1:  # below the screen: as tqdm, not drawn
            return False
        text = self.__str__() if msg is None else msg
        blank = f"\r{ERASE_LINE}" + f"\n\r{ERASE_LINE}" * GAP
        self.fp.write(blank + "\n" * (self.row - GAP) + f"\r{ERASE_LINE}{text}\r" + CURSOR_UP * self.row)
        self.fp.flush()
        return True


def bar(items: Iterable[T], description: str, *, line: int | None = None,
        postfix: str | None = None, file: IO[str] | None = None) -> Iterable[T]:
    """`items` with a bar on line `line` below the cursor (None: at the cursor); hidden off a terminal."""
    tqdm.set_lock(_THREAD_LOCK)
    total = len(items) if isinstance(items, Sized) else None
    options: dict[str, Any] = dict(desc=description, total=total, leave=False, disable=None,
                                   postfix=postfix, file=file)
    return tqdm(items, **options) if line is None else OwnLineBar(items, line=line, **options)


def labelled(label: str, postfix: str | None, line: int | None) -> Callable[[Iterable[T], str], Iterable[T]]:
    """Bars for an epoch's passes (alexnet/engine.py's `progress`), labelled `<label> <pass>`."""
    return lambda items, name: bar(items, f"{label} {name}", line=line, postfix=postfix)
