"""One guard over a run's trackers: a failing one is named once and dropped; training never stops for it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet.configs import NEEDS
from alexnet.run.record import RunRecord

log = logging.getLogger(__name__)


class RunTracker(Protocol):
    """What a `logger/` option's `_target_` builds from its keys plus `config_name` and `sweep_dir`."""

    name: str

    def start(self, record: RunRecord) -> None:
        """Open (or, on a resume, reopen) the run; record.epochs are the epochs already done."""

    def log_epoch(self, row: dict[str, Any]) -> None: ...

    def finish(self, record: RunRecord) -> None:
        """Close the run with record.summary's status and attach the run's files."""


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
    for name, settings in (logger or {}).items():
        try:
            trackers.append(instantiate(settings, config_name=config_name, sweep_dir=sweep_dir))
        except Exception as err:  # e.g. the package is not installed
            cause = err.__cause__ or err  # (Hydra wraps what the constructor raised)
            install = ("".join(f"; {need.command}" for need in NEEDS.get(("logger", name), ()))
                       if isinstance(cause, ImportError) else "")
            log.warning("%s tracking is unavailable (%s: %s); the run goes on without it%s", name,
                        type(cause).__name__, cause, install)
    return Tracking(trackers)
