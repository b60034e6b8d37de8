"""Hydra callbacks of every multirun (conf/config.yaml, hydra.callbacks): check the data once
before any job starts, put a job whose process died on record, and end with the sweep's table, a
summary and an exit status that says whether every run succeeded."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from alexnet.configs import config_label
from alexnet.resume.stop import Stop, refused
from alexnet.run.status import ENDED_WELL, Status

log = logging.getLogger(__name__)

STATUS_ORDER = tuple(Status)


def sweep_varies(config: DictConfig, prefix: str) -> bool:
    """Whether the sweep (command line or hydra.sweeper.params) sweeps a key under `prefix`."""
    from alexnet.results.planned import sweep_overrides

    return any(o.is_sweep_override() and o.get_key_element().lstrip("+~").startswith(prefix)
               for o in sweep_overrides(config))


def report_sweep(sweep_dir: Path) -> bool:
    """Aggregate the sweep, print its summary line (and the runs that did not succeed); returns
    whether every planned run succeeded."""
    from alexnet.results.report import aggregate

    try:
        runs = aggregate([sweep_dir], sweep_dir, compare_notebook=True).runs
    except Exception:  # the runs are on disk whatever happens here; say so and finish
        log.exception("aggregating %s failed; rerun python -m alexnet.aggregate %s",
                      sweep_dir, sweep_dir)
        return False
    counts = Counter(run.status for run in runs)
    order = [s for s in STATUS_ORDER if s in counts] + sorted(set(counts) - set(STATUS_ORDER))
    print(f"{len(runs)} runs: " + ", ".join(f"{counts[s]} {s}" for s in order)
          + f"; results: {sweep_dir / 'results.csv'}", file=sys.stderr)
    for run in runs:
        if run.status not in ENDED_WELL:
            error = (run.summary.get("error") or {}).get("message", "")
            print(f"  {run.status}: {run.path} ({' '.join(run.overrides)})"
                  + (f": {error.splitlines()[0]}" if error else ""), file=sys.stderr)
    return all(run.status in ENDED_WELL for run in runs)


class SweepCallback(Callback):
    """What every multirun does before its first job and after its last."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse launcher settings that cannot work (hydra/launcher=slurm); refuse a sweep dir that
        holds another sweep (Hydra would overwrite its multirun.yaml
        and mix the runs); stop a sweep whose data set every run would find missing or corrupt,
        with the data error, instead of failing each run in turn (skipped when the sweep varies
        data.*: then each run reports its own; with data.download on, the data is fetched here
        once, so parallel jobs do not all download it); write the planned jobs; clear an earlier
        start's stop request; open the sweep's MLflow parent run."""
        from hydra.core.global_hydra import GlobalHydra

        from alexnet.data.cifar import DataError, load_cifar100
        from alexnet.hyperparameters import identity
        from alexnet.results.planned import jobs_of, original_command, planned_jobs, write_planned

        _check_launcher(config.hydra.launcher)
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = jobs_of(config, GlobalHydra.instance().config_loader())
        earlier = planned_jobs(sweep_dir)
        if earlier is not None and jobs is not None \
                and [identity(job) for job in earlier] != [identity(job) for job in jobs]:
            raise Stop(
                f"{sweep_dir} holds another sweep (it planned other jobs). To resume it, rerun the "
                f"command it was made with:\n  {original_command(sweep_dir)}\nFor a new sweep, "
                "give a new hydra.sweep.dir.", exit_code=2)
        if not sweep_varies(config, "data"):
            try:
                load_cifar100(config.data.root, config.data.download, train_subset=1,
                              test_subset=1)
            except DataError as err:
                raise refused(f"no run of this sweep can start: {err}") from None
        if jobs is not None:
            write_planned(sweep_dir, jobs)
        _track_sweep(config, lambda mlflow, settings: mlflow.start_sweep_run(
            settings, config_label(config.hydra), sweep_dir))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A job whose process died (hydra/launcher=parallel: out of memory, kill -9) is a failed
        run like any other: its record says how it ended, and its return is the NaN of a failed
        run, so that the sweep goes on to its table. Other jobs' ends: nothing to do here."""
        from alexnet.launch.parallel import JobDied

        if job_return.status != JobStatus.FAILED:
            return
        died = _error_of(job_return)
        if not isinstance(died, JobDied):
            return
        from alexnet.run.record import mark_abandoned

        mark_abandoned(Path(died.run_dir), Status.failed,
                       f"{died}. Rerun the same command to resume it from its last checkpoint.")
        job_return.status = JobStatus.COMPLETED
        job_return.return_value = float("nan")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """results.csv/.md, summary and plots into the sweep dir, the summary line, the MLflow
        parent run closed with them; exit non-zero if any run did not succeed."""
        sweep_dir = Path(config.hydra.sweep.dir)
        succeeded = report_sweep(sweep_dir)
        _track_sweep(config, lambda mlflow, settings: mlflow.finish_sweep_run(
            settings, sweep_dir, succeeded))
        if not succeeded:
            raise SystemExit(1)


def _check_launcher(launcher: DictConfig) -> None:
    """The launcher's settings, checked before anything is read or submitted, where the launcher
    says it can (our SLURM launcher: `check_settings`)."""
    from omegaconf import OmegaConf

    from alexnet.launch.placement import launcher_class

    check = getattr(launcher_class(launcher), "check_settings", None)
    if check is not None:
        check(OmegaConf.to_container(launcher, resolve=True))


def _error_of(job_return: JobReturn) -> BaseException | None:
    """The error a FAILED job ended with (JobReturn.return_value raises it, after writing to stderr
    that the job failed: this reads it quietly)."""
    from alexnet.hydra_internals import job_error

    return job_error(job_return)


def _track_sweep(config: DictConfig, act: Callable[[ModuleType, DictConfig], None]) -> None:
    """act(alexnet.tracking.mlflow, settings) on the sweep's MLflow parent run when logger.mlflow
    is on; a tracking error is logged once and the sweep goes on."""
    settings = (config.get("logger") or {}).get("mlflow")
    if settings is None:
        return
    try:
        from alexnet.tracking import mlflow

        act(mlflow, settings)
    except Exception as err:  # tracking never stops a sweep
        log.warning("mlflow tracking of the sweep failed (%s: %s); the runs go on",
                    type(err).__name__, err)
