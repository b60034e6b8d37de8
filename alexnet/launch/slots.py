"""A machine-wide pool of device slots: lock files in one folder per machine (`launch.slots_dir`),
one per GPU and place on it, named by the GPU's identity (its UUID), not by the index a process
sees, which CUDA_VISIBLE_DEVICES renumbers. Every sweep on the machine draws from the same pool,
so two sweeps started side by side spread over the GPUs instead of both starting on GPU 0. A job
takes the first free slot, first places on every GPU then second places, and holds it until it
ends; the kernel drops the lock of a process that dies (even by SIGKILL), so a killed job never
keeps its slot."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alexnet.locks import label, try_lock


class SlotWaitStopped(Exception):  # noqa: N818 - a state: the job stopped while it waited
    """A stop was requested while the job waited for a free slot."""


@dataclass(frozen=True)
class Slot:
    index: int  # among this process's visible GPUs: the job's device is cuda:<index>
    place: int  # 0 for the first job on that GPU, 1 for the second...


def default_slots_dir() -> Path:
    """One folder per user and machine, when `launch.slots_dir` is null."""
    return Path(tempfile.gettempdir()) / f"alexnet-sweeps-{os.getuid()}" / "gpu-slots"


def _file_name(gpu: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in gpu)


@contextmanager
def hold_slot(folder: Path, gpus: Sequence[str], jobs_per_gpu: int, poll_s: float = 0.2,
              stopped: Callable[[], bool] = lambda: False) -> Iterator[Slot]:
    """Take the first free slot among `gpus` (their identities, in this process's cuda index order)
    x `jobs_per_gpu`, waiting while all are taken (SlotWaitStopped when `stopped()` says so); give
    it back on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for place in range(jobs_per_gpu):
            for index, gpu in enumerate(gpus):
                handle = try_lock(folder / f"{_file_name(gpu)}-{place}.lock")
                if handle is None:
                    continue
                label(handle, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
                try:
                    yield Slot(index, place)
                finally:
                    handle.close()
                return
        if stopped():
            raise SlotWaitStopped("stopped while waiting for a free GPU slot")
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
