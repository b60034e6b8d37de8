"""Stopping a run at a safe point: SIGTERM (SLURM preemption, `kill`, a time limit) and SIGINT
(Ctrl-C) only set a flag; the training loop sees it after the current step, saves a checkpoint,
and ends the run as `interrupted`. A second Ctrl-C stops at once. Under submitit, its preemption
signal (SIGUSR2) is handled the same way, and then handed to submitit, which requeues the job: the
requeued job resumes from the checkpoint just saved.

Jobs that run side by side in their own processes (hydra/launcher=parallel) also stop when their
sweep's stop file appears (`<sweep dir>/.stop`): the launcher writes it when it is signalled or
when one job stops the sweep, so every sibling reaches its own safe point instead of being killed
mid-epoch."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

STOP_FILE = ".stop"


class SweepStopped(BaseException):  # noqa: N818 - like KeyboardInterrupt, it is not an error
    """Ends this run and every run after it in the sweep, the way Ctrl-C does: a signal to stop, a
    run dir that belongs to another sweep, a disk that refuses our files. A BaseException so that
    Hydra's per-job error handling does not swallow it; `python -m alexnet.train` turns it into a
    message and `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1, sweep_dir: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.sweep_dir = sweep_dir


@dataclass(frozen=True)
class Stopped:
    """What a job that stopped the sweep hands back to its launcher instead of raising (joblib would
    kill the other jobs; submitit would leave no result)."""

    message: str
    exit_code: int


def request_sweep_stop(sweep_dir: Path, reason: str, exit_code: int) -> bool:
    """Ask every job of the sweep to stop at its next safe point. The first request stands: the
    file appears whole or not at all (written aside, then linked into place, which fails if it is
    there already). False when it could not be written (the disk refuses): the caller still knows."""
    path = Path(sweep_dir) / STOP_FILE
    text = json.dumps({"reason": reason, "exit_code": exit_code}) + "\n"
    try:
        fd, draft = tempfile.mkstemp(dir=sweep_dir, prefix=".stop.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.link(draft, path)
        finally:
            os.unlink(draft)
    except FileExistsError:
        return True
    except OSError:
        return False
    return True


def sweep_stop_request(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep's stop request ({"reason", "exit_code"}), or None while there is none."""
    try:
        return json.loads((Path(sweep_dir) / STOP_FILE).read_text())
    except (OSError, ValueError):  # absent, or being written: seen at the next look
        return None


def clear_sweep_stop(sweep_dir: Path) -> None:
    """A new start of the sweep (the same command again) begins without the old request."""
    (Path(sweep_dir) / STOP_FILE).unlink(missing_ok=True)


class GracefulStop:
    """Context manager: while inside, SIGTERM and SIGINT set `signal` instead of killing; with a
    `sweep_dir`, its stop file counts as a request too (looked at every `poll_s` at most).
    `on_signal(sig)` is called on the first signal (the parallel launcher tells its jobs)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    # Signals caught only when a launcher already handles them (submitit: checkpoint and requeue);
    # after our checkpoint, hand_over() passes them on to that handler.
    LAUNCHER_SIGNALS = (signal.SIGUSR2,)

    def __init__(self, sweep_dir: Path | None = None, poll_s: float = 0.25,
                 on_signal: Callable[[signal.Signals], None] | None = None) -> None:
        self.signal: signal.Signals | None = None
        self.sweep_dir = sweep_dir
        self.poll_s = poll_s
        self.on_signal = on_signal
        self._sweep_request: dict[str, Any] | None = None
        self._next_look = 0.0
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # handlers only work there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
            for sig in self.LAUNCHER_SIGNALS:
                if callable(signal.getsignal(sig)):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def reason(self) -> str | None:
        """Why the run must stop now ("SIGTERM", or the sweep's stop request), None to go on."""
        if self.signal is not None:
            return self.signal.name
        if self.sweep_dir is not None and self._sweep_request is None:
            now = time.monotonic()
            if now >= self._next_look:
                self._next_look = now + self.poll_s
                self._sweep_request = sweep_stop_request(self.sweep_dir)
        if self._sweep_request is not None:
            return f"the sweep's stop ({self._sweep_request.get('reason')})"
        return None

    def hand_over(self) -> None:
        """Pass a launcher's signal on to the launcher's own handler (submitit requeues the job
        and exits); nothing for other signals."""
        handler = self._previous.get(self.signal) if self.signal else None
        if self.signal in self.LAUNCHER_SIGNALS and callable(handler):
            self.__exit__(None, None, None)
            handler(int(self.signal), None)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: do not wait for the safe point
        first = self.signal is None
        self.signal = signal.Signals(signum)
        if first and self.on_signal is not None:
            self.on_signal(self.signal)

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by the signal: 128 + its number; else the
        sweep's stop request's code."""
        if self.signal is not None:
            return 128 + int(self.signal)
        return int((self._sweep_request or {}).get("exit_code", 1))
