"""What to do with the run dir Hydra hands a job: train from scratch, go on from its checkpoint,
or leave it alone because it already finished. This is what makes rerunning the same multirun
command with the same `hydra.sweep.dir` continue the sweep (Hydra cannot)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alexnet.results.liveness import effective_status
from alexnet.results.record import FINISHED, read_summary
from alexnet.resume import checkpoint


class RunDirConflict(ValueError):
    """The run dir belongs to another sweep or to a process still running it."""


@dataclass
class Plan:
    action: Literal["start", "resume", "skip"]
    previous: dict[str, Any] | None = None  # the earlier attempt's results.json
    checkpoint: dict[str, Any] | None = None  # its checkpoint.pt, for action == "resume"


def plan(run_dir: Path, overrides: list[str]) -> Plan:
    """Decide from the files in `run_dir`; raise RunDirConflict rather than mix two runs."""
    run_dir = Path(run_dir)
    try:
        previous = read_summary(run_dir)
    except ValueError as err:
        raise RunDirConflict(f"{err}. Move it away or use a new hydra.sweep.dir / hydra.run.dir."
                             ) from err
    if previous is not None:
        _check_same_job(run_dir, previous.get("overrides") or [], overrides, "results.json")
        status = effective_status(previous)
        if status in FINISHED:
            return Plan("skip", previous)
        if status == "running":
            age = time.time() - float(previous.get("heartbeat_at") or 0)
            raise RunDirConflict(
                f"{run_dir} is being trained right now by process {previous.get('pid')} on "
                f"{previous.get('host')} (heartbeat {age:.0f} s ago). Wait for it, or stop it "
                "first; two processes must not train one run.")
    path = run_dir / checkpoint.CHECKPOINT_FILE
    if not path.is_file():
        return Plan("start", previous)
    saved = checkpoint.load(path)
    _check_same_job(run_dir, saved.get("overrides") or [], overrides, checkpoint.CHECKPOINT_FILE)
    return Plan("resume", previous, saved)


def _check_same_job(run_dir: Path, recorded: list[str], assigned: list[str], source: str) -> None:
    if sorted(recorded) != sorted(assigned):
        raise RunDirConflict(
            f"{run_dir} holds another run: its {source} was made with overrides "
            f"{' '.join(recorded) or '(none)'}, but this job is {' '.join(assigned) or '(none)'}. "
            "Resuming needs the same command as the first time (the sweep's multirun.yaml lists "
            "it); to start a new sweep, give a new hydra.sweep.dir (or hydra.run.dir).")
