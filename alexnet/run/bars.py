"""A run's tqdm bars, only on a terminal. Sweep jobs sharing one each keep a line below the cursor,
drawn in one write that blanks a gap above, so log lines land whole and draws never interleave.
tqdm's lock is a thread lock: its default semaphore leaks when a job is killed by kill -9."""

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
    """`items` with a bar on line `line` below the cursor (None: at the cursor); hidden off a terminal."""
    tqdm.set_lock(_THREAD_LOCK)
    total = len(items) if isinstance(items, Sized) else None
    options: dict[str, Any] = dict(desc=description, total=total, leave=False, disable=None,
                                   postfix=postfix, file=file)
    return tqdm(items, **options) if line is None else OwnLineBar(items, line=line, **options)


def labelled(label: str, postfix: str | None, line: int | None
             ) -> Callable[[Iterable[T], str], Iterable[T]]:
    """Bars for an epoch's passes (alexnet/engine.py's `progress`), labelled `<label> <pass>`."""
    return lambda items, name: bar(items, f"{label} {name}", line=line, postfix=postfix)
