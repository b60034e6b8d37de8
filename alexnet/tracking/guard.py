"""The trackers of one run behind one guard: a tracker that fails (store unreachable, database
locked, package missing) is named once in the log and dropped; training never stops for it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from alexnet.results.collect import dotted
from alexnet.results.record import RunRecord

log = logging.getLogger(__name__)


class RunTracker(Protocol):
    name: str

    def start(self, record: RunRecord) -> None:
        """Open (or, on a resume, reopen) the run; record.epochs are the epochs already done."""

    def log_epoch(self, row: dict[str, Any]) -> None: ...

    def finish(self, record: RunRecord) -> None:
        """Close the run with record.summary's status and attach the run's files."""


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of a resolved config, lists as text: what params/hparams can hold."""
    return {k: v if isinstance(v, bool | int | float | str) else str(v)
            for k, v in dotted(config).items()}


class Tracking:
    """Fans a run's events out to its trackers; any tracker error disables that tracker only."""

    def __init__(self, trackers: Sequence[RunTracker] = ()) -> None:
        self.trackers = list(trackers)

    def start(self, record: RunRecord) -> None:
        self._call("start", record)

    def log_epoch(self, row: dict[str, Any]) -> None:
        self._call("log_epoch", row)

    def finish(self, record: RunRecord) -> None:
        self._call("finish", record)

    def _call(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as err:  # whatever the tracker raises, the run goes on
                log.warning("%s tracking failed (%s: %s); the run goes on without it, its own "
                            "files are the record", tracker.name, type(err).__name__,
                            str(err).splitlines()[0] if str(err) else "")
                self.trackers.remove(tracker)


def build_tracking(logger: DictConfig | None, config_name: str, sweep_dir: Path | None) -> Tracking:
    """The trackers `logger` asks for; one that cannot even start is named once and left out."""
    trackers: list[RunTracker] = []
    for name in (logger or {}):
        try:
            if name == "mlflow":
                from alexnet.tracking.mlflow import MlflowTracker

                trackers.append(MlflowTracker(logger.mlflow, config_name, sweep_dir))
            elif name == "tensorboard":
                from alexnet.tracking.tensorboard import TensorBoardTracker

                trackers.append(TensorBoardTracker(logger.tensorboard))
        except Exception as err:  # e.g. the package is not installed
            log.warning("%s tracking is unavailable (%s: %s); the run goes on without it. Install "
                        'it with pip install -e ".[%s]"', name, type(err).__name__, err, name)
    return Tracking(trackers)
