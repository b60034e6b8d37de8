"""`python -m alexnet.train`'s command line around Hydra's entry point: every stop, a Ctrl-C included,
ends here once, with no traceback: the sweep's table updated, one line saying why, the command that
resumes it and its exit status. A choice needing a missing package is refused before Hydra starts."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode

from alexnet.configs import CONFIG_MODULE, refusal
from alexnet.resume.stop import Stop, refused, resume_command

MULTIRUN_FLAGS = ("-m", "--multirun")
SHOWING_FLAGS = ("-c", "--cfg", "-i", "--info")


def run(entry_point: Callable[[], Any]) -> None:
    """Runs Hydra's `entry_point` on sys.argv, ending every stop here."""
    argv = sys.argv[1:]
    multirun = bool(set(MULTIRUN_FLAGS) & set(argv))
    for sig in (signal.SIGTERM, signal.SIGHUP):  # (a run's safe points take them while it trains)
        if signal.getsignal(sig) is not signal.SIG_IGN:  # (nohup: a hang-up stops nothing)
            signal.signal(sig, _stop_here)
    try:
        missing = refusal(argv, CONFIG_MODULE)
        if missing is not None:  # (Hydra would fail composing it, not saying what to install)
            raise refused(missing)
        sys.argv[1:] = multirun_config_request(argv)
        entry_point()
    except Stop as stop:
        _end(stop, argv, multirun)
    except KeyboardInterrupt:  # a Ctrl-C outside any run's safe point: all saved is kept
        _end(Stop("interrupted (Ctrl-C); finished runs and saved checkpoints are kept",
                  exit_code=128 + signal.SIGINT, output_dir=_sweep_under_way()), argv, multirun)
    except BrokenPipeError:  # whoever read our output left (`--help | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no error at exit's flush)
        sys.exit(1)


def _stop_here(signum: int, frame: Any) -> None:
    """SIGTERM/SIGHUP outside a run's safe point stops as a Ctrl-C does, not without a word."""
    raise Stop(f"{signal.Signals(signum).name}; finished runs and saved checkpoints are kept",
               exit_code=128 + signum, output_dir=_sweep_under_way())


def _sweep_under_way() -> str | None:
    """The begun multirun's sweep dir, which a stop between its runs resumes."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    sweep_dir = str(HydraConfig.get().sweep.dir)
    return sweep_dir if Path(sweep_dir).is_dir() else None


def _end(stop: Stop, argv: list[str], multirun: bool) -> None:
    """Says how the command ended and exits; further stop signals are ignored: it is ending."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if stop.refused:
        print(f"error: {stop.reason}", file=sys.stderr)
        sys.exit(stop.exit_code)
    if multirun and stop.output_dir is not None and Path(stop.output_dir).is_dir() and not stop.reported:
        from alexnet.callbacks import report_sweep

        report_sweep(Path(stop.output_dir))
    print(f"stopped: {stop.reason}", file=sys.stderr)
    if stop.output_dir is not None:
        print(f"Resume it with:\n  {resume_command(argv, stop.output_dir, multirun)}", file=sys.stderr)
    sys.exit(stop.exit_code)


def multirun_config_request(argv: list[str]) -> list[str]:
    """Hydra refuses `-m` beside `--cfg`/`--info`, yet that asks what a sweep runs: show it without `-m`."""
    showing = any(a in SHOWING_FLAGS or a.startswith(("--cfg=", "--info=")) for a in argv)
    if not (showing and set(MULTIRUN_FLAGS) & set(argv)):
        return argv
    if _sweeps_values(argv):
        raise refused("--cfg shows one config, and this command sweeps over values: give one "
                      "value of each (or a sweep= preset) to see its config, or drop --cfg")
    return ["hydra.mode=MULTIRUN", *(a for a in argv if a not in MULTIRUN_FLAGS)]


def _sweeps_values(argv: list[str]) -> bool:
    """`a=1,2`, `glob(...)`, `range(...)`."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # Hydra will say what is wrong with it
        return False
    return any(o.is_sweep_override() for o in parsed)
