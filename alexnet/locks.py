"""Advisory flock locks for "one at a time" (a run dir's trainer, a device slot), dropped when the
holder dies, even by SIGKILL. Lock files lie in folders others may write, so they are never followed
links, made 0600 and refused unless ours; their folders are 0700 and used only while ours alone."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from alexnet.files import OutputError

log = logging.getLogger(__name__)

# flock's answers where a filesystem has no locks (NFS without a lock manager, some Lustre mounts)
UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
# Never follow a symbolic link at the last step; never block on a FIFO planted as a lock file.
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_SYMLINK_ERRNOS = (errno.ELOOP, errno.EMLINK)  # (EMLINK: the BSDs' answer to O_NOFOLLOW)
_REMAKE = "remove it: it holds only a lock, and is made anew"
_warned: set[Path] = set()


class UnsafeLockPath(OutputError):
    """A lock path not safely ours (a link, another user's, writable by others): it could stall our jobs."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        OSError.__init__(self, errno.EPERM, f"refusing {path}: {problem}; {fix}")
        self.path = Path(path)


def _warn_unsupported(path: Path, err: OSError) -> None:
    folder = Path(path).parent.parent
    if folder not in _warned:
        _warned.add(folder)
        log.warning("%s cannot be locked (%s): this filesystem has no file locks, so only the heartbeat in "
                    "results.json tells a live run from a dead one here", path, err.strerror)


def _owner_problem(st: os.stat_result) -> str | None:
    """Why a file or folder that is someone else's must not hold our locks; None when it is ours."""
    if st.st_uid != os.geteuid():
        return f"it belongs to user {st.st_uid}, who could hold its locks and stall our jobs"
    return None


def _open(path: Path, folder_fd: int | None = None) -> IO[str]:
    """Open the lock file (by name in `folder_fd` if given), made 0600; UnsafeLockPath when not ours."""
    try:
        fd = os.open(path.name if folder_fd is not None else path,
                     os.O_RDWR | os.O_CREAT | _NOFOLLOW, PRIVATE_FILE, dir_fd=folder_fd)
    except OSError as err:
        if err.errno in _SYMLINK_ERRNOS:
            raise UnsafeLockPath(path, "it is a symbolic link (a lock file is never followed)",
                                 _REMAKE) from None
        with contextlib.suppress(OSError):
            problem = _owner_problem(os.stat(path.name if folder_fd is not None else path,
                                             dir_fd=folder_fd, follow_symlinks=False))
            if problem:
                raise UnsafeLockPath(path, problem, _REMAKE) from None
        raise OutputError(path, err) from err
    try:
        st = os.fstat(fd)
        problem = "it is not a plain file" if not stat.S_ISREG(st.st_mode) else _owner_problem(st)
        if problem:
            raise UnsafeLockPath(path, problem, _REMAKE)
        if st.st_mode & 0o077:  # a lock file of an earlier version (0666): ours, so narrowed
            os.fchmod(fd, PRIVATE_FILE)
        return os.fdopen(fd, "r+")
    except BaseException:
        os.close(fd)
        raise


def try_lock(path: Path, wait_s: float = 0.0, poll_s: float = 0.05, *,
             folder_fd: int | None = None) -> IO[str] | None:
    """Lock `path` within `wait_s`: the open file (close to release), or None when another one holds it."""
    handle = _open(Path(path), folder_fd)
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


@contextlib.contextmanager
def held(path: Path, *, folder_fd: int | None = None) -> Iterator[None]:
    """Hold the lock on `path` (as try_lock opens it) while inside, waiting as long as it takes."""
    with _open(Path(path), folder_fd) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as err:
            if err.errno not in UNSUPPORTED:
                raise
            _warn_unsupported(path, err)
        yield


def label(handle: IO[str], text: str) -> None:
    """Write who holds the lock into its file, unless it has hard links (emptying it would empty them)."""
    with contextlib.suppress(OSError):
        if os.fstat(handle.fileno()).st_nlink != 1:
            return
        handle.seek(0)
        handle.truncate()
        handle.write(text + "\n")
        handle.flush()


def is_locked(path: Path) -> bool | None:
    """Whether someone holds `path`'s lock, creating nothing; None if it cannot tell (no locks, not ours)."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except PermissionError:
        return None
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
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


@contextlib.contextmanager
def private_folder(folder: Path, above: Path, fix: str) -> Iterator[int]:
    """Open `folder` under `above` for lock files: each level made 0700, never a followed link, ours alone.
    Yields its descriptor so lock files open by name in it: nobody can swap the folder after the check."""
    folder, above = Path(os.path.abspath(folder)), Path(os.path.abspath(above))
    try:
        above.mkdir(parents=True, exist_ok=True)  # (the user's choice: made as they make folders)
        fd = os.open(above, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise OutputError(above, err) from err
    try:
        level = above
        for name in folder.relative_to(above).parts:
            level = level / name
            try:
                os.mkdir(name, PRIVATE_FOLDER, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as err:
                raise OutputError(level, err) from err
            try:
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=fd)
            except OSError as err:
                if err.errno in (*_SYMLINK_ERRNOS, errno.ENOTDIR):
                    raise UnsafeLockPath(level, "it is not a folder (a symbolic link is never "
                                         "followed here)", fix) from None
                raise OutputError(level, err) from err
            os.close(fd)
            fd = inner
            st = os.fstat(fd)
            problem = _owner_problem(st) or (
                f"group or others may write in it (mode {stat.S_IMODE(st.st_mode):o}), so they "
                "could replace its lock files" if st.st_mode & 0o022 else None)
            if problem:
                raise UnsafeLockPath(level, problem, fix)
        yield fd
    finally:
        os.close(fd)
