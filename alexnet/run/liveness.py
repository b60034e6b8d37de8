"""Whether a run that says `running` (or `waiting`) is alive: a record outlives its process. Where the
run dir's lock can be seen (same kernel, shared locks) it answers; else the heartbeat decides (a
host without shared locks, or another user's 0600 lock file)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from alexnet.locks import is_locked
from alexnet.scores import LIVE, Status

RUN_LOCK = ".lock"  # in the run dir, held by its trainer
# A run on another machine is stale after this many heartbeats without a beat.
MISSED_BEATS = 5
DEFAULT_HEARTBEAT_S = 30.0


def boot_id() -> str | None:
    """This kernel's boot id, shared by every process and container on it (which share flock locks)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def slurm_job() -> str | None:
    """This process's SLURM job (array job and task), which a requeued job keeps; None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def stale_after(summary: dict[str, Any], override_s: float | None = None) -> float:
    """How old a heartbeat may be before its run counts as gone (default: MISSED_BEATS beats)."""
    if override_s is not None:
        return override_s
    return MISSED_BEATS * float(summary.get("heartbeat_s") or DEFAULT_HEARTBEAT_S)


def same_kernel(summary: dict[str, Any]) -> bool:
    """Whether the record was written on this kernel, where its writer's lock would show."""
    return summary.get("boot_id") is not None and summary.get("boot_id") == boot_id()


def heartbeat_fresh(summary: dict[str, Any], stale_after_s: float | None = None,
                    now: float | None = None) -> bool:
    heartbeat = summary.get("heartbeat_at")
    now = time.time() if now is None else now
    return isinstance(heartbeat, int | float) and now - heartbeat <= stale_after(summary,
                                                                                stale_after_s)


def effective_status(summary: dict[str, Any], run_dir: Path | None = None,
                     stale_after_s: float | None = None, now: float | None = None) -> str:
    """The recorded status, except a live one is `stale` when nobody holds the run dir's lock and
    either the record is from this kernel (its lock would show) or its heartbeat is stale."""
    status = summary.get("status", "unknown")
    if status not in LIVE:
        return status
    if run_dir is not None:
        held = is_locked(Path(run_dir) / RUN_LOCK)
        if held:
            return status
        if held is not None and same_kernel(summary):  # (None: cannot tell, ask the heartbeat)
            return Status.stale
    return status if heartbeat_fresh(summary, stale_after_s, now) else Status.stale
