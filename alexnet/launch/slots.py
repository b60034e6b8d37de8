"""A pool of device slots shared by the jobs of one sweep on one machine, as lock files in the
sweep dir. A job takes the first free slot when it starts and holds it until it ends; the kernel
drops the lock of a process that dies (even by SIGKILL), so a killed job never keeps its slot and
jobs that finish out of order hand their slots on correctly."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SLOTS_DIR = ".slots"


@dataclass
class Slot:
    index: int
    handle: IO[str]  # the locked file: the slot is ours while it stays open


def _try_lock(path: Path) -> IO[str] | None:
    handle = open(path, "a+")  # noqa: SIM115 - held open for the slot's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextmanager
def hold_slot(folder: Path, count: int, poll_s: float = 0.2) -> Iterator[Slot]:
    """Take the lowest free slot of `count` (waiting while all are taken); give it back on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(count):
            handle = _try_lock(folder / f"slot-{index}.lock")
            if handle is not None:
                handle.seek(0)
                handle.truncate()
                handle.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n")
                handle.flush()  # for a person looking: who holds it
                try:
                    yield Slot(index, handle)
                finally:
                    handle.close()
                return
        time.sleep(poll_s)


@contextmanager
def one_at_a_time(folder: Path, name: str = "startup") -> Iterator[None]:
    """Serialize a phase (loading data, first allocations) across the sweep's parallel jobs."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
