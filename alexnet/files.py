"""Writing a run's files so a kill or a full disk never leaves half a file. They get the umask's modes,
for teammates to read: only lock files are private (alexnet/locks.py)."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO


class OutputError(OSError):
    """A run's file could not be written; names the path and the fix (what was written before is whole)."""

    def __init__(self, path: Path, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        hint = ("free some disk space" if cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
                else "make the folder writable")
        super().__init__(cause.errno, f"cannot write {path}: {reason}. The files written before "
                         f"are intact; {hint}, or move the outputs with hydra.run.dir=/ "
                         "hydra.sweep.dir=, then rerun the same command to resume.")
        self.path = path

    def __str__(self) -> str:  # (the message alone, without OSError's "[Errno N]")
        return str(self.strerror)

    def __reduce__(self) -> tuple:  # (a job's process sends it back to its launcher whole)
        return _rebuilt, (type(self), self.args, self.__dict__)


def _rebuilt(kind: type, args: tuple, state: dict) -> OSError:
    error = OSError.__new__(kind)
    OSError.__init__(error, *args)
    error.__dict__.update(state)
    return error


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write into a synced temp file renamed over `path`: readers see the old or new file, never torn."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = _create_beside(path)
        with os.fdopen(fd, "wb") as f:
            target = _Refusals(f)
            try:
                write(target)
            except Exception as err:  # a writer that turns the disk's OSError into its own error
                if target.refused is None:  # (torch.save: RuntimeError "unexpected pos")
                    raise
                raise target.refused from err
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as err:
        raise OutputError(path, err) from err
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


class _Refusals:
    """Remembers the disk's OSError on write, so the caller learns it whatever error the writer raised."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.refused = f, None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.refused = err
            raise

    def __getattr__(self, name: str) -> object:  # flush, seek, tell...: the file's own
        return getattr(self.f, name)


def _create_beside(path: Path) -> tuple[int, str]:
    """A new temp file beside `path`, mode 0666 less the umask (tempfile.mkstemp would make it 0600)."""
    while True:
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def append_line(path: Path, text: str) -> None:
    """Append to a log-like file (metrics.csv), never through a symbolic link; OutputError if refused."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        with open(fd, "a", newline="") as f:
            f.write(text)
    except OSError as err:
        raise OutputError(Path(path), err) from err


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power loss right after it must not undo it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def shared_folder(folder: Path) -> str | None:
    """Why `folder` is no place for our files (another user's, or on a path all may write), else None."""
    folder = Path(os.path.abspath(folder))
    for level in [folder, *folder.parents]:
        try:
            st = os.lstat(level)
        except OSError:
            continue
        link = stat.S_ISLNK(st.st_mode)
        if st.st_uid != os.geteuid() and (level == folder or (link and st.st_uid != 0)):
            return f"{level} belongs to user {st.st_uid}"
        if link:  # (the rest is checked where it leads)
            return shared_folder(level.resolve() / folder.relative_to(level))
        if st.st_mode & stat.S_IWOTH and (level == folder or not st.st_mode & stat.S_ISVTX):  # (sticky:
            # others cannot replace what is ours, but could plant in the folder itself what we create)
            return f"anyone may write in {level} (mode {stat.S_IMODE(st.st_mode):o})"
    return None
