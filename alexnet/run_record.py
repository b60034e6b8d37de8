"""What one run leaves in its output directory: metrics.csv (a row per epoch, appended as it goes)
and results.json (status, final and best metrics, config), always replaced atomically."""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

METRICS_FILE = "metrics.csv"
RESULTS_FILE = "results.json"
CONFUSION_FILE = "confusion_superclass.csv"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temp file beside `path`, then rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunRecord:
    """Keeps metrics.csv and results.json of one run current, so a crash loses no finished epoch."""

    def __init__(self, run_dir: Path, config: dict[str, Any], overrides: list[str]) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.epochs: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {
            "status": "running",
            "error": None,
            "epochs_planned": config.get("epochs"),
            "epochs_done": 0,
            "final": None,
            "best": None,
            "wall_time_s": 0.0,
            "device": None,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "overrides": overrides,
            "config": config,
        }
        self._save()

    def set_device(self, description: str) -> None:
        self.summary["device"] = description
        self._save()

    def add_epoch(self, row: dict[str, Any]) -> None:
        """Append the epoch to metrics.csv and refresh results.json."""
        path = self.run_dir / METRICS_FILE
        new_file = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        self.epochs.append(row)
        self.summary.update(
            epochs_done=len(self.epochs),
            final=row,
            best=max(self.epochs, key=lambda r: r["test_acc"]),
        )
        self._save()

    def save_table(self, name: str, table: pd.DataFrame) -> None:
        """Write a CSV beside the metrics (temp file + rename)."""
        path = self.run_dir / name
        tmp = path.with_name(f".{name}.tmp")
        table.to_csv(tmp)
        os.replace(tmp, path)

    def finish(self, status: str, error: BaseException | None = None) -> None:
        """Close the record as completed, diverged, failed or interrupted."""
        self.summary["status"] = status
        if error is not None:
            self.summary["error"] = {
                "type": type(error).__name__,
                "message": str(error),
                "traceback": "".join(traceback.format_exception(error)),
            }
        self._save()

    def _save(self) -> None:
        self.summary["wall_time_s"] = round(time.time() - self.started, 3)
        write_json_atomic(self.run_dir / RESULTS_FILE, self.summary)
