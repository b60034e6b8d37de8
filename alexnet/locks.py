"""Advisory file locks (flock) for "only one at a time": a run dir has one trainer, a device slot
one job. The kernel drops a lock the moment its holder dies, even by SIGKILL, so a lock never
outlives the process that took it; processes on one kernel (containers included) see each other's
locks, and so do hosts on a shared filesystem whose locks are shared (NFSv4, Lustre with flock)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import logging
import os
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


# flock's answers where a filesystem has no locks (NFS without a lock manager, some Lustre mounts)
UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
_warned: set[Path] = set()


def _warn_unsupported(path: Path, err: OSError) -> None:
    folder = Path(path).parent.parent
    if folder not in _warned:
        _warned.add(folder)
        log.warning("%s cannot be locked (%s): this filesystem has no file locks, so only the "
                    "heartbeat in results.json tells a live run from a dead one here", path,
                    err.strerror)


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
        except OSError as err:
            if err.errno not in UNSUPPORTED:
                handle.close()
                raise
            _warn_unsupported(path, err)
            return handle  # no locks on this filesystem: as if ours (heartbeats still tell)


def label(handle: IO[str], text: str) -> None:
    """Say in a held lock file who holds it (for a person looking; the lock is what counts, so a
    file we may only read stays as it is)."""
    with contextlib.suppress(OSError, io.UnsupportedOperation):
        handle.seek(0)
        handle.truncate()
        handle.write(text + "\n")
        handle.flush()


def is_locked(path: Path) -> bool | None:
    """Whether some open file holds the lock on `path` now (ours too, if we hold it through
    another); False when there is no such file; None where the filesystem has no locks."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as err:
        if err.errno not in UNSUPPORTED:
            raise
        return None
    finally:
        os.close(fd)  # closing drops the shared lock we may have taken
    return False
