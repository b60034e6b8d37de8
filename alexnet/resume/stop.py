"""Stopping, in one vocabulary: `Stop` says what stopped, why, the run's status and the exit code.
`GracefulStop` turns SIGTERM, SIGINT and SIGHUP into a flag the training loop checks at its safe
points (save, then Stop); a second Ctrl-C stops at once; submitit's SIGUSR2 is handed on to requeue."""

from __future__ import annotations

import logging
import math
import shlex
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from alexnet import scores
from alexnet.scores import Status

REFUSED = 2  # the exit status of a refused setting, as argparse's


class Stop(BaseException):  # noqa: N818 - like KeyboardInterrupt, an ending rather than an error
    """The run, or the whole command, ends early on purpose; pickles whole (jobs hand it to their launcher).
    A BaseException, so Hydra's per-job error handling lets it through to the command line."""

    def __init__(self, reason: str, *, status: Status | None = None, exit_code: int = 1,
                 output_dir: str | Path | None = None, reported: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.exit_code = exit_code
        self.output_dir = None if output_dir is None else str(output_dir)
        self.reported = reported  # the sweep's table was printed just before it

    def __str__(self) -> str:
        return self.reason

    @property
    def refused(self) -> bool:
        """A setting refused before anything ran (the command says `error:`, not `stopped:`)."""
        return self.exit_code == REFUSED


class JobLost(RuntimeError):
    """A job whose process ended without recording its end; its run is `interrupted`, its trial open."""

    def __float__(self) -> float:  # (what a sweeper that does not know it reads: no value)
        return math.nan


def lost(run_dir: str | Path, how: str, job: int | None = None) -> JobLost | float | list[float]:
    """The one rule for a lost job on any launcher: a still-live record becomes interrupted and reruns
    resume it (said); one whose end was recorded before its process died gives its objective."""
    from alexnet.run.record import mark_abandoned

    summary = mark_abandoned(Path(run_dir), Status.interrupted, how)
    if summary is not None and summary.get("status") in scores.FINISHED:
        return scores.objective_values(summary)
    gone = JobLost(f"{run_dir}: {how}; the same command again resumes it from its checkpoint")
    logging.getLogger(__name__).error("job #%s lost: %s", job, gone)
    return gone


def refused(reason: str) -> Stop:
    """A setting (or a data folder) that no run could use, refused before any folder is made."""
    return Stop(reason, exit_code=REFUSED)


def by_signal(sig: signal.Signals, where: str, *, saved: bool, output_dir: str | Path | None = None) -> Stop:
    """A signal seen at a run's safe point: `where` it stopped, and whether its checkpoint was saved."""
    kept = "its checkpoint is saved" if saved else "nothing of it was lost"
    return Stop(f"{sig.name} {where}; {kept}", status=Status.interrupted,
                exit_code=128 + int(sig), output_dir=output_dir)


def resume_command(argv: list[str], output_dir: str, multirun: bool) -> str:
    """`argv` again with `output_dir` named (a dated default folder would start anew)."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    kept = [a for a in argv if not a.lstrip("+").startswith(f"{key}=")]
    return " ".join(["python -m alexnet.train", *map(shlex.quote, [*kept, f"{key}={output_dir}"])])


class GracefulStop:
    """While inside, stop signals set `signal` instead of killing; `on_signal` runs on the first one."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    # Caught only when a launcher handles them (submitit requeues); hand_over() passes them on after.
    LAUNCHER_SIGNALS = (signal.SIGUSR2,)

    def __init__(self, on_signal: Callable[[signal.Signals], None] | None = None) -> None:
        self.signal: signal.Signals | None = None
        self.twice: Stop | None = None  # what a second Ctrl-C raised (it stops at once)
        self.on_signal = on_signal
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # handlers only work there
            for sig in self.SIGNALS:
                if sig == signal.SIGHUP and signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # (nohup: a hang-up stops nothing)
                self._previous[sig] = signal.signal(sig, self._handle)
            for sig in self.LAUNCHER_SIGNALS:
                if callable(signal.getsignal(sig)):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def requested(self) -> signal.Signals | None:
        """The signal that asks the run to stop, or None to go on (asked at every safe point)."""
        return self.signal

    def hand_over(self) -> None:
        """Pass a launcher's signal on to its own handler (submitit requeues the job and exits)."""
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
            self.twice = Stop("interrupted twice (Ctrl-C): stopped at once; finished runs and "
                              "saved checkpoints are kept", status=Status.interrupted,
                              exit_code=128 + signal.SIGINT)
            raise self.twice
        if self.signal is not None:
            return  # (the first signal stands: a Ctrl-C that the launcher also passes on)
        self.signal = signal.Signals(signum)
        if self.on_signal is not None:
            self.on_signal(self.signal)

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by the signal: 128 + its number."""
        return 128 + int(self.signal) if self.signal is not None else 1
