"""Whether a job's run dir starts, resumes from its checkpoint or is skipped as finished: what lets a
rerun with the same hydra.sweep.dir continue the sweep. The deciding job holds the run dir's lock
until its run ends, so two processes never train one run, and a dead holder frees it at once."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from alexnet.files import OutputError
from alexnet.hyperparameters import differences, hyperparameters
from alexnet.locks import is_locked, label, try_lock
from alexnet.resume import checkpoint
from alexnet.run.record import (
    RUN_LOCK,
    DamagedRecord,
    epochs_on_record,
    heartbeat_fresh,
    read_summary,
    same_kernel,
    slurm_job,
)
from alexnet.scores import FINISHED, LIVE

log = logging.getLogger(__name__)
# A reader (the aggregator) may hold the run dir's lock for an instant.
LOCK_WAIT_S = 2.0


class RunDirConflict(ValueError):
    """The run dir belongs to another sweep or to a process still running it."""


@dataclass
class Plan:
    action: Literal["start", "resume", "skip", "recover"]
    previous: dict[str, Any] | None = None  # the earlier attempt's results.json
    checkpoint: dict[str, Any] | None = None  # its checkpoint, for action == "resume"
    unreadable: checkpoint.CheckpointError | None = None  # why the checkpoints could not be used
    lock: IO[str] | None = None  # the run dir's lock, held by this process; close() releases it
    epochs: list[dict[str, Any]] | None = None  # "recover": a damaged record's epochs, on file

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def plan(run_dir: Path, config: dict[str, Any]) -> Plan:
    """Decide for the run of resolved `config`, holding its lock unless skipped; RunDirConflict, never mixing.
    Unreadable checkpoints give "start" with `unreadable` set: the caller records the run as failed."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:  # created 0600, never through a symbolic link: others may write in some run dirs
        lock = try_lock(run_dir / RUN_LOCK, wait_s=LOCK_WAIT_S)
    except OutputError as err:  # (UnsafeLockPath: a planted link, another user's file)
        raise RunDirConflict(str(err)) from None
    if lock is None:
        raise RunDirConflict(f"{run_dir} is being trained right now by another process (it holds "
                             f"{run_dir / RUN_LOCK}). Wait for it, or stop it first; two processes "
                             "must not train one run.")
    try:
        decision = _decide(run_dir, hyperparameters(config))
    except BaseException:
        lock.close()
        raise
    if decision.action == "skip":
        lock.close()
    else:
        label(lock, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        decision.lock = lock
    return decision


def _decide(run_dir: Path, wanted: dict[str, Any]) -> Plan:
    damaged = False
    try:
        previous = read_summary(run_dir)
    except DamagedRecord as err:
        log.warning("%s; the run goes on from what its folder still holds (its checkpoint, else "
                    "its metrics.csv)", err)
        previous, damaged = None, True
    except ValueError as err:
        raise RunDirConflict(f"{err}. Move it away or use a new hydra.sweep.dir / hydra.run.dir.") from err
    if previous is not None:
        _check_same_run(run_dir, hyperparameters(previous["config"]), wanted, "results.json",
                        previous.get("overrides") or [])
        status = previous.get("status")
        if status in FINISHED:
            return Plan("skip", previous)
        # We hold the lock: only a writer blind to our locks could train it, while its heartbeat is fresh.
        locks_work = is_locked(run_dir / RUN_LOCK) is not None  # (True: ours, through the plan's)
        if status in LIVE and not (locks_work and same_kernel(previous)) \
                and heartbeat_fresh(previous) and not _requeue_of(previous):
            age = time.time() - float(previous.get("heartbeat_at") or 0)
            raise RunDirConflict(f"{run_dir} is being trained right now by process {previous.get('pid')} on "
                                 f"{previous.get('host')} (heartbeat {age:.0f} s ago, without a lock this "
                                 "host can see). Wait for it, or stop it first; two processes must not "
                                 "train one run.")
    try:
        saved = checkpoint.load_latest(run_dir)
    except checkpoint.CheckpointError as err:
        return Plan("start", previous, unreadable=err)
    if saved is None:
        epochs = epochs_on_record(run_dir) if damaged else []
        return Plan("recover", epochs=epochs) if epochs else Plan("start", previous)
    if "hyperparameters" in saved:  # (checkpoints of earlier versions: results.json said it)
        _check_same_run(run_dir, saved["hyperparameters"], wanted, checkpoint.CHECKPOINT_FILE,
                        (previous or {}).get("overrides") or [])
    return Plan("resume", previous, saved)


def _requeue_of(previous: dict[str, Any]) -> bool:
    """Whether we are a SLURM requeue of `previous`'s job: SLURM starts it only once the old one ended."""
    job = slurm_job()
    return job is not None and previous.get("slurm_job") == job


def _check_same_run(run_dir: Path, recorded: dict[str, Any], wanted: dict[str, Any], source: str,
                    recorded_overrides: list[str]) -> None:
    """RunDirConflict when a hyperparameter of the composed config differs (a changed default too)."""
    changed = differences(recorded, wanted)
    if changed:
        command = " ".join(["python -m alexnet.train", *recorded_overrides])
        raise RunDirConflict(f"{run_dir} holds another run: its {source} was made with other settings "
                             f"({'; '.join(changed)}). Resuming needs the same settings as the first time: "
                             f"{command} (add -m and the sweep's other values for a sweep; its "
                             "multirun.yaml lists them). To start anew, give a new hydra.sweep.dir "
                             "(or hydra.run.dir).")
