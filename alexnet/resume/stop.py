"""Stopping a run at a safe point: SIGTERM (SLURM preemption, `kill`, a time limit) and SIGINT
(Ctrl-C) only set a flag; the training loop sees it after the current step, saves a checkpoint,
and ends the run as `interrupted`. A second Ctrl-C stops at once. Under submitit, its preemption
signal (SIGUSR2) is handled the same way, and then handed to submitit, which requeues the job: the
requeued job resumes from the checkpoint just saved."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class SweepStopped(BaseException):  # noqa: N818 - like KeyboardInterrupt, it is not an error
    """Ends this run and every run after it in the sweep, the way Ctrl-C does: a signal to stop, a
    run dir that belongs to another sweep, a disk that refuses our files. A BaseException so that
    Hydra's per-job error handling does not swallow it; `python -m alexnet.train` turns it into a
    message and `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1, sweep_dir: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.sweep_dir = sweep_dir


class GracefulStop:
    """Context manager: while inside, SIGTERM and SIGINT set `requested` instead of killing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    # Signals caught only when a launcher already handles them (submitit: checkpoint and requeue);
    # after our checkpoint, hand_over() passes them on to that handler.
    LAUNCHER_SIGNALS = (signal.SIGUSR2,)

    def __init__(self) -> None:
        self.requested: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # handlers only work there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
            for sig in self.LAUNCHER_SIGNALS:
                if callable(signal.getsignal(sig)):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def hand_over(self) -> None:
        """Pass a launcher's signal on to the launcher's own handler (submitit requeues the job
        and exits); nothing for other signals."""
        handler = self._previous.get(self.requested) if self.requested else None
        if self.requested in self.LAUNCHER_SIGNALS and callable(handler):
            self.__exit__(None, None, None)
            handler(int(self.requested), None)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: do not wait for the safe point
        self.requested = signal.Signals(signum)

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by the signal: 128 + its number."""
        return 128 + int(self.requested or 0)
