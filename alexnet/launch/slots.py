"""A machine-wide pool of device slots: lock files in one folder (`launch.slots_dir`), one per GPU
and place on it, named by the GPU's identity (its UUID), not by the index a process sees, which
CUDA_VISIBLE_DEVICES renumbers. Every sweep of a user on the machine draws from the same pool,
so two sweeps started side by side spread over the GPUs instead of both starting on GPU 0. A job
takes the first free slot, first places on every GPU then second places, and holds it until it
ends; the kernel drops the lock of a process that dies (even by SIGKILL), so a killed job never
keeps its slot.

The pool is one user's: its folder must be that user's and writable by them alone (anyone who
could write there could plant lock files and hold every slot), so GPU slots are not shared
between users."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from alexnet.locks import held, label, private_folder, try_lock
from alexnet.resume.stop import by_signal


@dataclass(frozen=True)
class Slot:
    index: int  # among this process's visible GPUs: the job's device is cuda:<index>
    place: int  # 0 for the first job on that GPU, 1 for the second...


def default_slots_dir() -> Path:
    """One folder per user and machine, when `launch.slots_dir` is null."""
    return Path(tempfile.gettempdir()) / f"alexnet-sweeps-{os.getuid()}" / "gpu-slots"


def _file_name(gpu: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in gpu)


def _checked_from(folder: Path) -> Path:
    """Where the folders checked for the pool begin: the temp dir for the default pool (both its
    levels are ours), else the folder's own parent (which the user chose)."""
    return Path(tempfile.gettempdir()) if folder == default_slots_dir() else folder.parent


@contextmanager
def hold_slot(folder: Path, gpus: Sequence[str], jobs_per_gpu: int, poll_s: float = 0.2,
              stopped: Callable[[], signal.Signals | None] = lambda: None) -> Iterator[Slot]:
    """Take the first free slot among `gpus` (their identities, in this process's cuda index order)
    x `jobs_per_gpu`, waiting while all are taken (a Stop when `stopped()` names the signal that
    asks it to); give it back on exit. UnsafeLockPath when `folder` is not ours alone."""
    folder = Path(folder)
    fix = ("GPU slots are not shared between users: use a folder only you can write (chmod go-w, "
           "if it is yours), or another one with launch.slots_dir=<folder>")
    with private_folder(folder, _checked_from(folder), fix) as folder_fd:
        handle, slot = _take_slot(folder, folder_fd, gpus, jobs_per_gpu, poll_s, stopped)
    with handle:
        yield slot


def _take_slot(folder: Path, folder_fd: int, gpus: Sequence[str], jobs_per_gpu: int,
               poll_s: float, stopped: Callable[[], signal.Signals | None]
               ) -> tuple[IO[str], Slot]:
    while True:
        for place in range(jobs_per_gpu):
            for index, gpu in enumerate(gpus):
                handle = try_lock(folder / f"{_file_name(gpu)}-{place}.lock", folder_fd=folder_fd)
                if handle is not None:
                    label(handle, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
                    return handle, Slot(index, place)
        sig = stopped()
        if sig is not None:
            raise by_signal(sig, "while it waited for a free GPU slot", saved=False)
        time.sleep(poll_s)


@contextmanager
def one_at_a_time(folder: Path, name: str = "startup") -> Iterator[None]:
    """Serialize a phase (loading data, first allocations) across the sweep's parallel jobs; the
    lock lies in `folder` (the sweep's .locks/), made 0700 and refused when it is a symbolic link
    or not ours alone."""
    folder = Path(folder)
    fix = "remove it: it holds only the sweep's locks, and is made anew"
    with private_folder(folder, folder.parent, fix) as folder_fd, \
            held(folder / f"{name}.lock", folder_fd=folder_fd):
        yield
