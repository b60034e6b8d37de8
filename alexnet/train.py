"""Train AlexNet on CIFAR-100 once (`python -m alexnet.train`) or sweep (`... -m a=1,2 b=x,y`).

Every run's one lifecycle: start, resume or skip its run dir, keep its record, place and train it
(a fused group together) and record its ending once, however it ends; the same command continues it.
Imports happen when a run starts, so `--help` and `--cfg` answer without loading torch."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alexnet import scores
from alexnet.configs import CONFIG_PATH, config_label
from alexnet.resume.stop import GracefulStop, Stop
from alexnet.scores import Status

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> scores.Values:
    """Returns the objective value(s) for sweepers; a stop signal after a sweep run's last safe
    point stops the sweep there (a submitit preemption then needs nothing)."""
    hydra_cfg = HydraConfig.get()
    with GracefulStop() as stop:
        values = run_jobs([(cfg, hydra_cfg)], stop)[0]
    if stop.signal in GracefulStop.SIGNALS and hydra_cfg.mode == RunMode.MULTIRUN:
        raise Stop(f"{stop.signal.name} as the run in {hydra_cfg.runtime.output_dir} ended (kept "
                   "as it ended)", exit_code=stop.exit_code, output_dir=_resumes(hydra_cfg))
    return values


def _resumes(hydra_cfg: DictConfig) -> str:
    """The dir the same command again continues."""
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return str(hydra_cfg.sweep.dir)
    return str(hydra_cfg.runtime.output_dir)


def run_jobs(jobs: Sequence[tuple[DictConfig, DictConfig]], stop: GracefulStop) -> list[scores.Values]:
    """Skips finished jobs and trains the rest in fused groups of the same point of training."""
    from alexnet.files import OutputError
    from alexnet.fit import Member
    from alexnet.resume.run_dir import RunDirConflict, plan
    from alexnet.run.record import RunRecord

    values: list[scores.Values | None] = [None] * len(jobs)
    members: list[tuple[int, Any, Any]] = []
    try:
        for index, (cfg, hydra_cfg) in enumerate(jobs):
            config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
            try:
                decision = plan(Path(hydra_cfg.runtime.output_dir), config)
            except RunDirConflict as err:  # (no output_dir: the same command would meet it again)
                raise Stop(str(err)) from None
            if decision.action == "skip" and decision.previous is not None:
                log.info("%s is already %s: not trained again", hydra_cfg.runtime.output_dir,
                         decision.previous["status"])
                _draw_missing(Path(hydra_cfg.runtime.output_dir))
                values[index] = scores.objective_values(decision.previous)
                continue
            record = RunRecord(Path(hydra_cfg.runtime.output_dir), config,
                               list(hydra_cfg.overrides.task), cfg.heartbeat_s,
                               previous=decision.previous)
            if decision.action == "recover" and _recovered(cfg, record, decision.epochs):
                values[index] = scores.objective_values(record.summary)
                decision.release()
                continue
            members.append((index, decision, Member(cfg, record, saved=decision.checkpoint,
                                                    hydra=hydra_cfg)))
        for group in _by_position(members):
            _train(group, stop)
    except OutputError as err:  # (a record the disk refused: every later run would fail the same way)
        raise Stop(str(err), status=Status.failed, output_dir=_resumes(jobs[0][1])) from err
    finally:
        for _, decision, member in members:  # (each run dir stays ours until its run has ended)
            if member.record.summary["status"] in scores.LIVE:  # (never reached, or stopped unrecorded)
                with contextlib.suppress(OutputError):
                    member.record.finish(Status.interrupted, sys.exc_info()[1])
            decision.release()
    for index, _, member in members:
        values[index] = scores.objective_values(member.record.summary)
    return values


def _recovered(cfg: DictConfig, record: Any, epochs: list[dict[str, Any]]) -> bool:
    """Rebuilds a damaged record from metrics.csv; False where that does not show how it ended."""
    config = record.summary["config"]
    status = (Status.diverged if not math.isfinite(float(epochs[-1].get("train_loss", "nan")))
              else Status.completed if len(epochs) >= cfg.epochs
              else Status.early_stopped if scores.should_stop(epochs, cfg.early_stop, config)
              else None)
    if status is None:
        log.warning("%s: its metrics.csv does not show how it ended: trained again from its "
                    "first epoch", record.run_dir)
        return False
    record.resumed_from(epochs)
    record.finish(status, stopped_epoch=len(epochs) if status != Status.completed else None)
    log.warning("%s put on record again from its metrics.csv: %s after %d epochs",
                record.run_dir, status, len(epochs))
    _draw_missing(record.run_dir)
    return True


def _draw_missing(run_dir: Path) -> None:
    """Redraws a finished run's missing pictures (its process ran out of memory drawing them, say)."""
    from alexnet.resume.checkpoint import CHECKPOINT_FILE, MODEL_FILE
    from alexnet.run.record import FILTERS_FILE, MISTAKES_FILE

    if all((run_dir / name).is_file() for name in (FILTERS_FILE, MISTAKES_FILE)) or not any(
            (run_dir / name).is_file() for name in (MODEL_FILE, CHECKPOINT_FILE)):
        return
    from alexnet.results.learned import redraw

    try:
        redraw(run_dir)
    except Exception as err:  # (pictures are never worth a run: said, and the sweep goes on)
        log.warning("%s: its pictures are not drawn (%s: %s); python -m alexnet.show_run %s "
                    "draws them", run_dir, type(err).__name__, err, run_dir)


def _by_position(members: list[tuple[int, Any, Any]]) -> list[list[tuple[int, Any, Any]]]:
    """Groups by epochs done and images into the next."""
    groups: dict[tuple[int, int], list[tuple[int, Any, Any]]] = {}
    for entry in members:
        saved = entry[2].saved or {}
        images = (saved.get("in_progress") or {}).get("images", 0)
        groups.setdefault((len(saved.get("epochs") or []), images), []).append(entry)
    return list(groups.values())


def _train(group: list[tuple[int, Any, Any]], stop: GracefulStop) -> None:
    """Records each run's ending once; in a sweep a failed run is recorded and the sweep goes on."""
    from alexnet.config_checks import validate
    from alexnet.data.cifar import DataError
    from alexnet.files import OutputError
    from alexnet.fit import fit
    from alexnet.launch.placement import placed
    from alexnet.tracking.guard import build_tracking

    hydra_cfg = group[0][2].hydra
    sweep_dir = str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    members = []
    for _, decision, member in group:
        try:
            if decision.unreadable is not None:
                raise decision.unreadable
            validate(member.cfg)
            members.append(member)
        except Exception as err:
            member.record.finish(Status.failed, err)
            if sweep_dir is None:
                raise Stop(str(err), status=Status.failed) from err
            log.error("run failed, sweep goes on: %s: %s", type(err).__name__, err)
    if not members:
        return
    for member in members:
        member.tracking = build_tracking(member.cfg.get("logger"), config_label(hydra_cfg),
                                         Path(sweep_dir) if sweep_dir else None)
    with contextlib.ExitStack() as finishing:
        for member in members:
            finishing.callback(member.tracking.finish, member.record)
        try:
            try:
                with placed(members[0].cfg, hydra_cfg.launcher, sweep_dir,
                            stopped=stop.requested) as placement:
                    fit(members, stop, placement)
            except OutputError as err:  # the disk refuses: every later run would fail the same way
                raise Stop(str(err), status=Status.failed, output_dir=_resumes(hydra_cfg)) from err
            except DataError as err:
                if sweep_dir is not None:
                    raise  # (the runs' data: recorded as their failure below, the sweep goes on)
                raise Stop(str(err), status=Status.failed) from err
        except Stop as ended:
            _put_on_record([m for m in members if m.status is None], ended, stop,
                           _resumes(hydra_cfg))
            raise
        except Exception as err:
            for member in members:
                if member.status is None:
                    member.record.finish(Status.failed, err)
            if sweep_dir is None:
                raise
            log.error("run failed, sweep goes on: %s: %s", type(err).__name__, err)
            return
    if sweep_dir is None:  # (a sweep ends with its table instead)
        member = members[0]
        if member.status == Status.diverged:
            raise Stop(f"the run diverged (its loss became NaN or infinite); its record is in "
                       f"{member.record.run_dir}")
        print(ending(member.record.summary, member.record.run_dir), file=sys.stderr)


def ending(summary: dict[str, Any], run_dir: Path) -> str:
    """A single run's last line: its status, objective and run dir."""
    names = scores.objectives(summary.get("config") or {})
    said = [f"{name} {value:.4f}" for name in names
            if (value := scores.value(summary, name)) is not None]
    return (f"{summary['status']}{': ' + ', '.join(said) if said else ''}; its record, metrics "
            f"and plots are in {run_dir}")


def _put_on_record(members: Sequence[Any], ended: Stop, stop: GracefulStop, resumes: str) -> None:
    """The one place a stop becomes the runs' record; a submitit stop is handed back for requeueing."""
    from alexnet.files import OutputError

    if ended.output_dir is None and ended.status == Status.interrupted:
        ended.output_dir = resumes

    def write() -> None:
        if ended.status is not None:
            for member in members:
                with contextlib.suppress(OutputError):  # (a full disk may refuse the record too)
                    member.record.finish(ended.status, ended)

    write()
    if ended.status == Status.interrupted:
        try:
            stop.hand_over()  # under submitit: it requeues the job, which resumes from here
        except Exception as not_requeued:  # e.g. requeued max_num_timeout times already
            ended.reason += f"; the job was not requeued ({not_requeued})"
            write()


def cli() -> None:
    """Hydra's entry point inside alexnet/cli.py, which ends every stop."""
    from alexnet.cli import run

    run(main)


if __name__ == "__main__":
    cli()
