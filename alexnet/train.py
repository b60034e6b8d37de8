"""Train AlexNet on CIFAR-100 once (`python -m alexnet.train`) or sweep (`... -m a=1,2 b=x,y`).

This is Hydra's entry point and a run's orchestration: decide what to do with the run dir Hydra
hands the job (start, resume from its checkpoint, or leave a finished run alone), keep its record,
place it (device, threads, GPU slot), train it (alexnet/fit.py), and put its ending on record
once, however it ends. Rerunning a command with the same `hydra.sweep.dir` (or `hydra.run.dir`)
continues it. The command line around it is alexnet/cli.py. Only what a run needs is imported
when it starts, so `--help` and `--cfg` answer without loading torch."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alexnet import scores
from alexnet.configs import CONFIG_PATH, config_label
from alexnet.resume.stop import GracefulStop, Stop, refused
from alexnet.scores import Status

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> float | list[float]:
    """One run; returns its final objective value (a list for several objectives, NaN where the
    run has none) for sweepers. Stop signals are taken from its first line to its last, never
    killing the process half-way: one that comes while the run is planned stops it at its first
    safe point; in a sweep, one that comes after the run's last safe point stops the sweep there
    (a submitit preemption or time limit then needs nothing: the run is done)."""
    with GracefulStop() as stop:
        values = _start(cfg, stop)
    hydra_cfg = HydraConfig.get()
    if stop.signal in GracefulStop.SIGNALS and hydra_cfg.mode == RunMode.MULTIRUN:
        raise Stop(f"{stop.signal.name} as the run in {hydra_cfg.runtime.output_dir} ended (kept "
                   "as it ended)", exit_code=stop.exit_code, output_dir=_resumes(hydra_cfg))
    return values


def _start(cfg: DictConfig, stop: GracefulStop) -> float | list[float]:
    """Decide what to do with the run dir (start, resume, leave a finished run alone), then
    train."""
    from alexnet.config_checks import ConfigError, validate
    from alexnet.data.cifar import DataError, check_present
    from alexnet.resume.run_dir import RunDirConflict, plan

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    sweep_dir = str(hydra_cfg.sweep.dir) if multirun else None
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if not multirun:  # a sweep records a refused job as failed and goes on; a single run says no
        try:
            validate(cfg)
            check_present(cfg.data.root, cfg.data.download)
        except (ConfigError, DataError) as err:
            raise refused(str(err), output_dir=run_dir) from None
    try:
        decision = plan(run_dir, config)
    except RunDirConflict as err:  # (no output_dir: the same command again would meet it again)
        raise Stop(str(err)) from None
    if decision.action == "skip" and decision.previous is not None:
        log.info("%s is already %s: not trained again", run_dir, decision.previous["status"])
        return objective_values(decision.previous)
    with finally_call(decision.release):  # the run dir stays ours until its run has ended
        return _run(cfg, config, hydra_cfg, decision, run_dir, sweep_dir, stop)


def _resumes(hydra_cfg: DictConfig) -> str:
    """What the same command again continues: the sweep dir, or a single run's dir."""
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return str(hydra_cfg.sweep.dir)
    return str(hydra_cfg.runtime.output_dir)


def _run(cfg: DictConfig, config: dict[str, Any], hydra_cfg: DictConfig, decision: Any,
         run_dir: Path, sweep_dir: str | None, stop: GracefulStop) -> float | list[float]:
    """Train the run the plan decided on, and put its ending on record, once."""
    from alexnet.config_checks import validate
    from alexnet.data.cifar import DataError
    from alexnet.files import OutputError
    from alexnet.fit import fit
    from alexnet.launch.placement import placed
    from alexnet.run.record import RunRecord
    from alexnet.tracking.guard import Tracking, build_tracking

    record = RunRecord(run_dir, config, list(hydra_cfg.overrides.task), cfg.heartbeat_s,
                       previous=decision.previous)
    tracking = Tracking()
    resumes = _resumes(hydra_cfg)
    with finally_call(lambda: tracking.finish(record)):
        try:
            try:
                if decision.unreadable is not None:
                    raise decision.unreadable
                tracking = build_tracking(cfg.get("logger"), config_label(hydra_cfg),
                                          Path(sweep_dir) if sweep_dir else None)
                validate(cfg)
                with placed(cfg, hydra_cfg.launcher, sweep_dir,
                            stopped=stop.requested) as placement:
                    status = fit(cfg, record, stop, decision.checkpoint, placement, tracking)
            except OutputError as err:  # the disk refuses: every later run would fail the same way
                raise Stop(str(err), status=Status.failed, output_dir=resumes) from err
            except DataError as err:
                if sweep_dir is not None:
                    raise  # (one run's data: recorded as its failure below, the sweep goes on)
                raise Stop(str(err), status=Status.failed) from err
        except Stop as ended:
            _put_on_record(record, ended, stop, resumes)
            raise
        except Exception as err:
            record.finish(Status.failed, err)
            if sweep_dir is None:
                raise
            # In a sweep one bad run must not stop the others: it is on record, move on.
            log.error("run failed, sweep goes on: %s: %s", type(err).__name__, err)
            return objective_values(record.summary)
    if status == Status.diverged and sweep_dir is None:
        raise Stop(f"the run diverged (its loss became NaN or infinite); its record is in "
                   f"{run_dir}")
    if sweep_dir is None:  # (a sweep ends with its table instead)
        print(ending(record.summary, run_dir), file=sys.stderr)
    return objective_values(record.summary)


def ending(summary: dict[str, Any], run_dir: Path) -> str:
    """A single run's last line: how it ended, its objective, and where all of it is."""
    names = scores.objectives(summary.get("config") or {})
    said = [f"{name} {value:.4f}" for name in names
            if (value := scores.value(summary, name)) is not None]
    return (f"{summary['status']}{': ' + ', '.join(said) if said else ''}; its record, metrics "
            f"and plots are in {run_dir}")


def _put_on_record(record: Any, ended: Stop, stop: GracefulStop, resumes: str) -> None:
    """The one place a stop becomes the run's record: its status and message; a stop signalled by
    submitit (a preemption, a time limit) is then handed to submitit, which requeues the job."""
    from alexnet.files import OutputError

    if ended.output_dir is None and ended.status == Status.interrupted:
        ended.output_dir = resumes

    def write() -> None:
        if ended.status is not None:
            with contextlib.suppress(OutputError):  # (a full disk may refuse the record too)
                record.finish(ended.status, ended)

    write()
    if ended.status == Status.interrupted:
        try:
            stop.hand_over()  # under submitit: it requeues the job, which resumes from here
        except Exception as not_requeued:  # e.g. requeued max_num_timeout times already
            ended.reason += f"; the job was not requeued ({not_requeued})"
            write()


def objective_values(summary: dict[str, Any]) -> float | list[float]:
    """What a run returns to a sweeper: its final objective value, or a list of them; NaN where
    its scores do not count (alexnet/scores.py: a run that failed, diverged or was stopped) or it
    has none."""
    names = scores.objectives(summary.get("config") or {})
    values = [scores.value(summary, name) if scores.counts(summary) else None for name in names]
    values = [math.nan if v is None else v for v in values]
    return values[0] if len(values) == 1 else values


@contextlib.contextmanager
def finally_call(function: Callable[..., Any], *args: Any) -> Iterator[None]:
    """Call function(*args) when the block ends, however it ends (the trackers' last word, the run
    dir's lock released)."""
    try:
        yield
    finally:
        function(*args)


def cli() -> None:
    """`python -m alexnet.train` and `alexnet-train`: Hydra's entry point inside the command line
    that ends every stop with its message and exit status (alexnet/cli.py)."""
    from alexnet.cli import run

    run(main)


if __name__ == "__main__":
    cli()
