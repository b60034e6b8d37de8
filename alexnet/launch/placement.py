"""Where a sweep's job runs: its device and CPU threads. Under a launcher that places GPU slots, each
job takes a slot of the machine-wide pool (GPUs x jobs_per_gpu, shared by every sweep), so jobs get
their own GPU while there are enough, then share."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig

from alexnet.files import OutputError
from alexnet.locks import held, label, private_folder, try_lock
from alexnet.results.planned import planned_jobs
from alexnet.resume.stop import by_signal
from alexnet.run.progress import Position

# The sweep's own locks (its jobs' start-up, one at a time): <sweep dir>/.locks/
LOCKS_DIR = ".locks"


@dataclass(frozen=True)
class Placement:
    device: str  # as config's `device`: auto, cpu, cuda, cuda:N
    threads: int | None = None  # torch threads; None leaves torch's default (all cores)
    slot: str | None = None  # the device slot held: "<GPU identity>#<place on it>"
    startup_lock: Path | None = None  # folder whose lock serializes the jobs' start-up


def gpu_count() -> int:
    import torch  # (not at import: composing a config needs no torch)

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_ids() -> list[str]:
    """GPUs by UUID in cuda index order: one name in every process, whatever CUDA_VISIBLE_DEVICES says."""
    import torch

    return [str(torch.cuda.get_device_properties(i).uuid) for i in range(gpu_count())]


def slots_for(jobs_per_gpu: int) -> int:
    """Jobs at once by default: GPUs x jobs_per_gpu, or 2 on a CPU."""
    gpus = gpu_count()
    return gpus * int(jobs_per_gpu) if gpus else 2


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def jobs_at_once(launcher: Any) -> int:
    """Jobs a launcher (by its config) runs at a time: our launchers' n_jobs (null: a GPU slot each,
    or 2 without a GPU), joblib's (negative: from the cores), submitit's array_parallelism; else 1."""
    get = (launcher or {}).get
    n_jobs = get("n_jobs")
    if n_jobs is None and places_gpu_slots(launcher):
        n_jobs = slots_for(int(get("jobs_per_gpu") or 1))
    if isinstance(n_jobs, int):
        return n_jobs if n_jobs > 0 else max(1, cores() + 1 + n_jobs)
    parallelism = get("array_parallelism")
    return int(parallelism) if isinstance(parallelism, int) and parallelism > 0 else 1


def threads_for(requested: int | None, launcher: DictConfig) -> int | None:
    """`torch_threads` if set; else submitit's cpus_per_task; else cores / joblib's n_jobs."""
    if requested is not None:
        return int(requested)
    if launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    jobs = launcher.get("n_jobs")
    if jobs is None or jobs == 1:
        return None
    jobs = cores() + 1 + jobs if jobs < 0 else jobs  # joblib: -1 = one job per core
    return max(1, cores() // max(1, jobs))


def launcher_class(launcher: DictConfig) -> type | None:
    """The class a launcher config builds, to ask what it can do (its class attributes)."""
    from hydra.utils import get_class

    try:
        return get_class(str(launcher.get("_target_", "")))
    except Exception:  # (not importable here: it declares nothing)
        return None


def places_gpu_slots(launcher: DictConfig) -> bool:
    """Whether the launcher's class says each job takes a GPU slot (`places_gpu_slots = True`)."""
    return bool(getattr(launcher_class(launcher), "places_gpu_slots", False))


@contextmanager
def placed(cfg: DictConfig, launcher: DictConfig, sweep_dir: Path | None, gpus: Sequence[str] | None = None,
           stopped: Callable[[], signal.Signals | None] = lambda: None) -> Iterator[Placement]:
    """The job's placement, holding its device slot (if any) until the job ends."""
    threads = threads_for(cfg.torch_threads, launcher)
    if sweep_dir is None or not places_gpu_slots(launcher):
        yield Placement(str(cfg.device), threads)
        return
    startup = Path(sweep_dir) / LOCKS_DIR
    gpus = gpu_ids() if gpus is None else list(gpus)
    if cfg.device != "auto" or not gpus:
        yield Placement(str(cfg.device), threads, startup_lock=startup)
        return
    folder = Path(cfg.launch.slots_dir) if cfg.launch.slots_dir else default_slots_dir()
    with hold_slot(folder, gpus, int(launcher.get("jobs_per_gpu") or 1), stopped=stopped) as slot:
        yield Placement(f"cuda:{slot.index}", threads, f"{gpus[slot.index]}#{slot.place}", startup)


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
              stopped: Callable[[], signal.Signals | None] = lambda: None) -> Iterator[Slot]:
    """Hold the first free GPU slot until exit, waiting while all are taken; UnsafeLockPath if not ours."""
    folder = Path(folder)
    fix = ("GPU slots are not shared between users: use a folder only you can write (chmod go-w, "
           "if it is yours), or another one with launch.slots_dir=<folder>")
    # Checked from the temp dir for the default pool (its folders are ours), else from the parent.
    above = Path(tempfile.gettempdir()) if folder == default_slots_dir() else folder.parent
    with private_folder(folder, above, fix) as folder_fd:
        handle, slot = _take_slot(folder, folder_fd, gpus, jobs_per_gpu, poll_s, stopped)
    with handle:
        yield slot


def _take_slot(folder: Path, folder_fd: int, gpus: Sequence[str], jobs_per_gpu: int, poll_s: float,
               stopped: Callable[[], signal.Signals | None]) -> tuple[IO[str], Slot]:
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
    """Serialize a phase (loading data, first allocations) across the sweep's parallel jobs."""
    folder = Path(folder)
    fix = "remove it: it holds only the sweep's locks, and is made anew"
    with private_folder(folder, folder.parent, fix) as folder_fd, \
            held(folder / f"{name}.lock", folder_fd=folder_fd):
        yield


log = logging.getLogger(__name__)

# Terminal lines held per process until it ends (even by kill -9): a worker keeps its line job after job.
_held: dict[Path, tuple[IO[str], int]] = {}


def this_job(hydra_cfg: DictConfig | None, epochs: int) -> Position:
    """The job's place in its multirun (`epochs` assumed for later runs not setting theirs); 1 of 1 alone."""
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return Position()
    run = int(hydra_cfg.job.num) + 1
    planned = planned_jobs(Path(str(hydra_cfg.sweep.dir)))
    n_trials = hydra_cfg.sweeper.get("n_trials")
    if planned is not None:
        runs: int | None = len(planned)
        later = tuple(_epochs_of(job, epochs) for job in planned[run:])
    elif isinstance(n_trials, int):
        runs = max(n_trials, run)
        later = (epochs,) * (runs - run)
    else:  # a sweeper that neither plans its jobs nor says how many it will run
        runs, later = None, ()
    return Position(run, runs, _at_once(hydra_cfg, runs), later)


def _epochs_of(job: list[str], default: int) -> int:
    for override in OverridesParser.create().parse_overrides(job):
        value = override.value()
        if override.get_key_element().lstrip("+~") == "epochs" and isinstance(value, int):
            return value
    return default


def _at_once(hydra_cfg: DictConfig, runs: int | None) -> int:
    count = jobs_at_once(hydra_cfg.get("launcher"))
    searching = hydra_cfg.sweeper.get("n_jobs")  # (a search's trials at a time)
    if isinstance(searching, int) and searching > 0:
        count = min(count, searching)
    return max(1, min(count, runs or count))


def terminal_line(position: Position, hydra_cfg: DictConfig | None) -> int | None:
    """The bar's own line below the cursor when jobs share the terminal; None: at the cursor, or no bar."""
    if position.at_once <= 1 or not sys.stderr.isatty():
        return None
    folder = Path(str(hydra_cfg.sweep.dir)) / LOCKS_DIR
    if folder not in _held:
        try:
            _held[folder] = take_line(folder)
        except OutputError as err:  # (a bar is no reason to stop a run)
            log.warning("no progress bar for this run: %s", err)
            return None
    return _held[folder][1]


def take_line(folder: Path) -> tuple[IO[str], int]:
    """The pool's first line no live process holds, held until the returned file is closed."""
    fix = "remove it: it holds only the sweep's locks, and is made anew"
    with private_folder(folder, folder.parent, fix) as folder_fd:
        line = 1
        while (handle := try_lock(folder / f"terminal-line-{line}.lock", folder_fd=folder_fd)) is None:
            line += 1
    label(handle, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return handle, line
