"""Where a search's study lives (memory, a URL, `journal:PATH` for NFS where SQLite's locks fail, or a
storage config), the text a trial's run reopens it from, and the lock that lets one start continue it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from alexnet.locks import private_folder, try_lock

JOURNAL = "journal:"
SQLITE = "sqlite:///"


def storage_text(storage: Any) -> str:
    """The storage as a line a run can reopen (paths absolute: a run may work elsewhere); "" if none."""
    if isinstance(storage, Mapping):
        return json.dumps(dict(storage), sort_keys=True)
    if not isinstance(storage, str):
        return ""
    if storage.startswith(JOURNAL):
        return JOURNAL + os.path.abspath(storage.removeprefix(JOURNAL))
    path, query = _sqlite_path(storage)
    if path is not None and path != ":memory:":
        return SQLITE + os.path.abspath(path) + query
    return storage


def open_storage(text: str) -> Any:
    """The storage `text` (from storage_text) names: an Optuna storage, or None for one in memory."""
    import optuna

    if not text:
        return None
    if text.startswith("{"):
        from hydra.utils import instantiate

        return instantiate(json.loads(text))
    if text.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(text.removeprefix(JOURNAL)))
    return optuna.storages.get_storage(text)


def file_of(text: str) -> Path | None:
    """The file a storage lives in (SQLite, journal), where a start's lock goes beside it."""
    if text.startswith(JOURNAL):
        return Path(text.removeprefix(JOURNAL))
    path, _ = _sqlite_path(text)
    return Path(path) if path not in (None, ":memory:") else None


def _sqlite_path(url: str) -> tuple[str | None, str]:
    if not url.startswith(SQLITE):
        return None, ""
    path, _, query = url.removeprefix(SQLITE).partition("?")
    return path, f"?{query}" if query else ""


@contextlib.contextmanager
def one_start(sweep_dir: Path, text: str, study_name: str | None) -> Iterator[str | None]:
    """Lock the sweep dir and the study: two starts would share run dirs and rerun each other's trials."""
    with contextlib.ExitStack() as held:
        taken = _take(held, sweep_dir / ".search.lock", f"another start of a search in {sweep_dir}")
        if taken is True and study_name is not None and text:
            what = f"another start continuing study {study_name} of {text}"
            key = re.sub(r"[^A-Za-z0-9_.-]", "_", study_name)[:60] + "." + \
                hashlib.sha256(f"{text}\0{study_name}".encode()).hexdigest()[:12]
            study_file = file_of(text)
            if study_file is not None:
                taken = _take(held, study_file.with_name(f".{study_file.name}.{key}.lock"), what)
            else:
                folder = Path(tempfile.gettempdir()) / f"alexnet-sweeps-{os.geteuid()}"
                fd = held.enter_context(private_folder(folder / "studies", folder.parent, f"remove {folder}"))
                taken = _take(held, folder / "studies" / f"{key}.lock", what, fd)
        yield None if taken is True else taken


def _take(stack: contextlib.ExitStack, path: Path, what: str, folder_fd: int | None = None) -> str | bool:
    """True once the lock on `path` is ours for as long as `stack` lasts; else who holds it."""
    handle = try_lock(path, folder_fd=folder_fd)
    if handle is None:
        return f"{what} is running (it holds {path})"
    stack.enter_context(handle)
    return True


def program() -> str:
    """The command that started this process minus its overrides, for a person to rerun the app."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        words = ["python", "-m", spec.name.removesuffix(".__main__")]
    elif sys.argv[0].endswith(".py"):
        words = ["python", sys.argv[0]]
    else:
        words = [sys.argv[0]]
    arguments = iter(sys.argv[1:])
    for word in arguments:  # (which config the app composes: part of the program)
        if word in CONFIG_FLAGS:
            words += [word, next(arguments, "")]
        elif word.startswith(tuple(f"{flag}=" for flag in CONFIG_FLAGS)):
            words.append(word)
    return shlex.join(words)


CONFIG_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")


def command_line() -> str:
    return " ".join([program(), *map(shlex.quote, sys.argv[1:])])
