"""Advisory file locks (flock) for "only one at a time": a run dir has one trainer, a device slot
one job. The kernel drops a lock the moment its holder dies, even by SIGKILL, so a lock never
outlives the process that took it; processes on one kernel (containers included) see each other's
locks, and so do hosts on a shared filesystem whose locks are shared (NFSv4, Lustre with flock)."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import time
from pathlib import Path
from typing import IO


def _open(path: Path) -> IO[str]:
    """The lock file, created writable by everyone (a folder of locks several users share); read
    only when another user's umask made it theirs alone (flock needs no write access)."""
    try:
        fd, mode = os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "r+"
    except PermissionError:
        fd, mode = os.open(path, os.O_RDONLY), "r"
    with contextlib.suppress(OSError):  # only the owner may; the umask may have cut the mode
        os.fchmod(fd, 0o666)
    return os.fdopen(fd, mode)


def try_lock(path: Path, wait_s: float = 0.0, poll_s: float = 0.05) -> IO[str] | None:
    """Lock `path` (created if missing), waiting up to `wait_s`; the open file while it is ours
    (close it to release), or None when another process holds it."""
    handle = _open(path)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                return None
            time.sleep(poll_s)


def label(handle: IO[str], text: str) -> None:
    """Say in a held lock file who holds it (for a person looking; the lock is what counts, so a
    file we may only read stays as it is)."""
    with contextlib.suppress(OSError, io.UnsupportedOperation):
        handle.seek(0)
        handle.truncate()
        handle.write(text + "\n")
        handle.flush()


def is_locked(path: Path) -> bool:
    """Whether some process holds the lock on `path` now (False when there is no such file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock we may have taken
    return False
