"""A run's status, as results.json, the tables and the trackers say it. Values are the strings
results.json holds (a Status compares equal to its string)."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """In the order the summary line and tables list them."""

    completed = "completed"
    early_stopped = "early_stopped"  # its monitored score stopped improving
    failed = "failed"  # an error; the message is in results.json
    diverged = "diverged"  # its loss became NaN or infinite
    pruned = "pruned"  # stopped by its search's pruner (hydra/sweeper=optuna): hopeless
    interrupted = "interrupted"  # stopped at a safe point (or its job lost): resumes on rerun
    stale = "stale"  # says running, but nobody holds its lock or its heartbeat stopped
    running = "running"
    waiting = "waiting"  # started, waiting for its device (a GPU slot, its turn to load)
    not_started = "not_started"  # planned by its sweep, never begun (tables only)

    def __str__(self) -> str:
        return self.value


# Rerunning the sweep leaves these alone ...
FINISHED = (Status.completed, Status.diverged, Status.early_stopped, Status.pruned)
# ... in these a run succeeded: its scores count (statistics, comparisons) ...
SUCCEEDED = (Status.completed, Status.early_stopped)
# ... and a sweep whose runs all ended in these exits 0 (a pruned trial is a search working).
ENDED_WELL = (*SUCCEEDED, Status.pruned)
# A record in these says a process is on it (liveness.py checks whether it still is).
LIVE = (Status.waiting, Status.running)
