"""What a run leaves in its output dir: metrics.csv (appended per epoch) and results.json (status,
metrics, config, who runs it), replaced atomically so a kill never leaves a torn record."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from alexnet import scores
from alexnet.files import append_line, write_text_atomic
from alexnet.locks import is_locked
from alexnet.scores import LIVE, Status

METRICS_FILE = "metrics.csv"
RESULTS_FILE = "results.json"
CONFUSION_FILE = "confusion_superclass.csv"
# What the network learned, drawn when the run finishes (alexnet/results/learned.py):
FILTERS_FILE = "filters.png"  # its first convolution's kernels
MISTAKES_FILE = "mistakes.png"  # the test images its last evaluation got most confidently wrong
MISTAKES_TABLE = "mistakes.csv"  # ... and which they are, to redraw them from


def _now_iso(seconds: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """results.json and friends: a reader sees the old file or the new one, never half a file."""
    write_text_atomic(path, json.dumps(payload, indent=2, allow_nan=True) + "\n")


class DamagedRecord(ValueError):
    """results.json cannot be read (cut short by a disk or copy fault, or not a file)."""


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """results.json, or None without one; DamagedRecord when unreadable, ValueError when not ours."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.exists() and not path.is_symlink():
        return None
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise DamagedRecord(f"{path} is damaged ({type(err).__name__}: {err})") from err
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise ValueError(f"{path} lacks the resolved config: not a run record of alexnet-sweeps")
    return summary


def epochs_on_record(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows (each epoch the run finished), or none where it cannot be read."""
    try:
        return pd.read_csv(Path(run_dir) / METRICS_FILE).to_dict("records")
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return []


def mark_abandoned(run_dir: Path, status: Status, reason: str) -> dict[str, Any] | None:
    """Close a still-live record whose process is known to be gone; the record (None: none readable)."""
    try:
        summary = read_summary(run_dir)
    except ValueError:
        return None
    if summary is not None and summary.get("status") in LIVE:
        summary.update(status=status, error={"type": "JobEnded", "message": reason, "traceback": ""})
        write_json_atomic(Path(run_dir) / RESULTS_FILE, summary)
    return summary


class RunRecord:
    """Keeps metrics.csv and results.json current, so a crash loses no finished epoch; beats a heartbeat."""

    def __init__(self, run_dir: Path, config: dict[str, Any], overrides: list[str],
                 heartbeat_s: float = 30.0, previous: dict[str, Any] | None = None) -> None:
        """`previous`: an earlier attempt's record, whose wall time, attempts and epochs carry over."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.heartbeat_s = heartbeat_s
        self.started = time.time()
        self.epochs: list[dict[str, Any]] = []
        self._writing = threading.Lock()
        self._finished = threading.Event()
        previous = previous or {}
        self._earlier_wall_time = float(previous.get("wall_time_s") or 0.0)
        self.summary: dict[str, Any] = {
            "status": Status.waiting,
            "error": None,
            "epochs_planned": config.get("epochs"),
            "epochs_done": previous.get("epochs_done", 0),
            "stopped_epoch": None,
            "final": previous.get("final"),
            "best": previous.get("best"),
            "wall_time_s": 0.0,
            "device": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "boot_id": boot_id(),
            "slurm_job": slurm_job(),
            "heartbeat_s": heartbeat_s,
            "heartbeat_at": self.started,
            "started_at": previous.get("started_at") or _now_iso(self.started),
            "attempts": [*previous.get("attempts", []), {"started_at": _now_iso(self.started),
                                                          "start_unix": self.started,
                                                          "resumed_from_epoch": None}],
            "overrides": overrides,
            "tracking": dict(previous.get("tracking") or {}),  # ids in MLflow etc., kept on resume
            "config": config,
        }
        self._save()
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()

    def set_device(self, description: str, **details: Any) -> None:
        """The run has its device: it is `running` from now on."""
        with self._writing:
            self.summary.update(status=Status.running, device=description, **details)
        self._save()

    def resumed_from(self, epochs: list[dict[str, Any]] | None) -> None:
        """Rewrite metrics.csv to hold exactly `epochs`, so a half-done epoch appears once, when redone."""
        with self._writing:
            self.summary["attempts"][-1]["resumed_from_epoch"] = None if epochs is None else len(epochs)
        epochs = self.epochs = list(epochs or [])
        path = self.run_dir / METRICS_FILE
        if epochs:
            write_text_atomic(path, _csv(epochs, header=True))
        else:
            path.unlink(missing_ok=True)
        self._refresh_scores()
        self._save()

    def add_epoch(self, row: dict[str, Any]) -> None:
        """Append the epoch to metrics.csv; rewritten whole when its columns change (a newer version)."""
        path = self.run_dir / METRICS_FILE
        columns = _columns([*self.epochs, row])  # the file's, in the file's order
        if self.epochs and columns != _columns(self.epochs):
            write_text_atomic(path, _csv([*self.epochs, row], header=True))
        else:
            append_line(path, _csv([row], header=not path.exists(), columns=columns))
        self.epochs.append(row)
        self._refresh_scores()
        self._save()

    def _beat(self) -> None:
        """Tell readers this run is alive, every heartbeat_s until it is finished."""
        while not self._finished.wait(max(self.heartbeat_s, 1.0)):
            with contextlib.suppress(OSError):  # a full disk: the run's own thread says so
                self._save()

    def save_table(self, name: str, table: pd.DataFrame) -> None:
        write_text_atomic(self.run_dir / name, table.to_csv())

    def finish(self, status: Status, error: BaseException | None = None,
               stopped_epoch: int | None = None) -> None:
        """Close the record as completed, early_stopped, diverged, failed or interrupted."""
        self._finished.set()
        with self._writing:
            self.summary.update(status=status, stopped_epoch=stopped_epoch)
            if error is not None:
                self.summary["error"] = {"type": type(error).__name__, "message": str(error),
                                         "traceback": "".join(traceback.format_exception(error))}
        self._save()

    def _refresh_scores(self) -> None:
        with self._writing:
            metric = scores.selection_metric(self.summary["config"])
            self.summary.update(epochs_done=len(self.epochs), final=self.epochs[-1] if self.epochs else None,
                                best=scores.best_epoch(self.epochs, metric))

    def _save(self) -> None:
        with self._writing:  # the heartbeat thread and the run's own thread take turns
            now = time.time()
            self.summary["heartbeat_at"] = now
            self.summary["wall_time_s"] = round(self._earlier_wall_time + now - self.started, 3)
            write_json_atomic(self.run_dir / RESULTS_FILE, self.summary)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of the rows, in the order they first appear."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _csv(rows: list[dict[str, Any]], header: bool, columns: list[str] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns or _columns(rows), lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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
    return isinstance(heartbeat, int | float) and now - heartbeat <= stale_after(summary, stale_after_s)


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
