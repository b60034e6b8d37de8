"""Advisory file locks (flock) for "only one at a time": a run dir has one trainer, a device slot
one job. The kernel drops a lock the moment its holder dies, even by SIGKILL, so a lock never
outlives the process that took it; processes on one kernel (containers included) see each other's
locks, and so do hosts on a shared filesystem whose locks are shared (NFSv4, Lustre with flock).

Lock files lie in folders others may write (a run dir, the temp dir's slot pool). Anyone who can
open a lock file can flock it and stall its jobs for ever, and a lock file that is a symbolic link
would aim our writes at a file of someone's choosing. So a lock file is opened without following
a symbolic link, created readable and writable by its owner alone (0600) and never widened, and
refused unless it is a plain file of ours; the folders made for lock files are made 0700 and used
only while they are ours and writable by us alone."""

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
    """A lock file, or a folder for lock files, that is not safely ours (a symbolic link, another
    user's, writable by others): using it would let someone else stall our jobs or choose which
    file we write. Names the path and the way out."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        OSError.__init__(self, errno.EPERM, f"refusing {path}: {problem}; {fix}")
        self.path = Path(path)


def _warn_unsupported(path: Path, err: OSError) -> None:
    folder = Path(path).parent.parent
    if folder not in _warned:
        _warned.add(folder)
        log.warning("%s cannot be locked (%s): this filesystem has no file locks, so only the "
                    "heartbeat in results.json tells a live run from a dead one here", path,
                    err.strerror)


def _owner_problem(st: os.stat_result) -> str | None:
    """Why a file or folder that is someone else's must not hold our locks; None when it is ours."""
    if st.st_uid != os.geteuid():
        return f"it belongs to user {st.st_uid}, who could hold its locks and stall our jobs"
    return None


def _open(path: Path, folder_fd: int | None = None) -> IO[str]:
    """The lock file `path` (by its name in `folder_fd` when given), created 0600 if missing;
    UnsafeLockPath when it is a symbolic link, not a plain file, or not ours."""
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
        problem = ("it is not a plain file" if not stat.S_ISREG(st.st_mode)
                   else _owner_problem(st))
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
    """Lock `path` (created 0600 if missing), waiting up to `wait_s`; the open file while it is
    ours (close it to release), or None when another process holds it. With `folder_fd` (from
    private_folder), `path` is opened by its name in that folder. UnsafeLockPath when the file is
    not safely ours, OutputError when it cannot be created."""
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
    """Say in a held lock file who holds it (for a person looking; the lock is what counts). A
    file with other names (hard links) is left as it is: emptying it would empty them too."""
    with contextlib.suppress(OSError):
        if os.fstat(handle.fileno()).st_nlink != 1:
            return
        handle.seek(0)
        handle.truncate()
        handle.write(text + "\n")
        handle.flush()


def is_locked(path: Path) -> bool | None:
    """Whether some open file holds the lock on `path` now (ours too, if we hold it through
    another); False when there is no such plain file (a symbolic link there is nobody's lock);
    None when it cannot be told: the filesystem has no locks, or the lock file is another user's
    (0600: we may not open it), where the heartbeat decides. Opens without creating anything."""
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
    """The folder `folder`, inside `above` (which the user chose), opened for lock files: each
    level below `above` is made 0700 when missing, never followed when it is a symbolic link, and
    used only while it is ours and writable by us alone (UnsafeLockPath naming it and `fix`
    otherwise). Yields its descriptor: lock files are opened by name in it (try_lock's
    `folder_fd`), so nobody can swap the folder between the check and the use."""
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
