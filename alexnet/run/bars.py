"""A run's progress bars (tqdm) over its batches, shown only when stderr is a terminal.

A run alone on its terminal draws its bar where the cursor is, as tqdm does. When several jobs of
a sweep share the terminal (hydra/launcher=parallel: a process each), each keeps a line of its own
(`line` 1, 2, ...) below the cursor and a gap of blank rows, drawn in a single write that blanks
the cursor's row and the gap, draws its own row and comes back to the start of the cursor's row.
Whatever the jobs and the launcher log thus lands on blank rows, whole (a line of up to GAP + 1
rows: a long log line wraps), above the bars, which move down as it scrolls and are redrawn at
their next refresh; no process's write can fall inside another's draw, so bars never interleave.
(tqdm's own `position=` takes several writes a draw and leaves the cursor at the end of a bar, where
the next log line of another process then begins.)

Each process draws only its own bar, so tqdm's lock is a thread lock: the multiprocessing lock tqdm
makes by default is a semaphore that a job killed by kill -9 leaves to the resource tracker ("There
appear to be 1 leaked semaphore objects")."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sized
from typing import IO, Any, TypeVar

from tqdm import tqdm

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
    """`items` with a bar labelled `description` (and `postfix` after its timings), on the
    terminal's line `line` below the cursor when given, else where the cursor is; hidden when
    `file` (default: stderr) is not a terminal."""
    tqdm.set_lock(_THREAD_LOCK)
    total = len(items) if isinstance(items, Sized) else None
    options: dict[str, Any] = dict(desc=description, total=total, leave=False, disable=None,
                                   postfix=postfix, file=file)
    return tqdm(items, **options) if line is None else OwnLineBar(items, line=line, **options)


def labelled(label: str, postfix: str | None, line: int | None
             ) -> Callable[[Iterable[T], str], Iterable[T]]:
    """Bars for an epoch's passes (alexnet/engine.py's `progress`): `<label> <pass>`, with
    `postfix`, on the terminal line `line` (as in `bar`)."""
    return lambda items, name: bar(items, f"{label} {name}", line=line, postfix=postfix)
