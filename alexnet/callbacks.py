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
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from alexnet.configs import config_label
from alexnet.resume.stop import Stop, refused
from alexnet.scores import ENDED_WELL, Status

if TYPE_CHECKING:
    from alexnet.results.collect import Run

log = logging.getLogger(__name__)

STATUS_ORDER = tuple(Status)
TABLE_ROWS = 20  # the end-of-sweep table's rows at most (results.md has them all)


def sweep_varies(config: DictConfig, prefix: str) -> bool:
    """Whether the sweep (command line or hydra.sweeper.params) sweeps a key under `prefix`."""
    from alexnet.results.planned import sweep_overrides

    return any(o.is_sweep_override() and o.get_key_element().lstrip("+~").startswith(prefix)
               for o in sweep_overrides(config))


def report_sweep(sweep_dir: Path) -> list[Run] | None:
    """Aggregate the sweep and print its summary line (and the runs that did not succeed), its
    table for a person (compact: results.md has every column) and what each swept knob did;
    returns its runs (None when they could not be aggregated)."""
    from alexnet.results.report import aggregate

    try:
        runs = aggregate([sweep_dir], sweep_dir, compare_notebook=True).runs
    except Exception:  # the runs are on disk whatever happens here; say so and finish
        log.exception("aggregating %s failed; rerun python -m alexnet.aggregate %s",
                      sweep_dir, sweep_dir)
        return None
    counts = Counter(run.status for run in runs)
    order = [s for s in STATUS_ORDER if s in counts] + sorted(set(counts) - set(STATUS_ORDER))
    print(f"{len(runs)} run{'s' if len(runs) != 1 else ''}: "
          + ", ".join(f"{counts[s]} {s}" for s in order)
          + f"; results: {sweep_dir / 'results.csv'}", file=sys.stderr)
    for run in runs:
        if run.status not in ENDED_WELL:
            error = (run.summary.get("error") or {}).get("message", "")
            print(f"  {run.status}: {run.path} ({' '.join(run.overrides)})"
                  + (f": {error.splitlines()[0]}" if error else ""), file=sys.stderr)
    for part in (compact_table, effects_sentence):
        try:
            text = part(runs, sweep_dir)
        except Exception as err:  # (the files are written: only this printout is lost)
            log.warning("could not print the sweep's %s (%s: %s); see %s", part.__name__,
                        type(err).__name__, err, sweep_dir / "results.md")
            continue
        if text:
            print(text, file=sys.stderr)
    return runs


def succeeded(runs: list[Run] | None) -> bool:
    """Whether every planned run of the sweep ended well."""
    return runs is not None and all(run.status in ENDED_WELL for run in runs)


def compact_table(runs: list[Run], sweep_dir: Path) -> str:
    """The sweep's runs best first, as results.md ranks them, for a terminal: the run's folder, the
    keys that tell the runs apart, the selection score (blank where it does not count), the test
    accuracy where that is another metric, and the status."""
    import math

    from alexnet.results.collect import readable, varying_columns
    from alexnet.results.effects import NOT_KNOBS
    from alexnet.results.plots import label_keys
    from alexnet.results.report import ranked, results_table

    table = ranked(results_table(runs, relative_to=sweep_dir))
    keys = [k for k in label_keys(runs, varying_columns(runs)) if not k.startswith(NOT_KNOBS)]
    metrics = sorted(set(table["score_metric"].dropna()))
    score = metrics[0] if len(metrics) == 1 else "score"
    header = ["run", *keys, score, *(["score_metric"] if len(metrics) > 1 else []),
              *(["test_acc"] if metrics != ["test_acc"] else []), "status"]

    def cell(value: Any, a_score: bool = False) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{float(value):.4f}" if a_score else readable(value)

    rows = [[str(row["run_dir"]), *(cell(row[k]) for k in keys), cell(row["score"], a_score=True),
             *([cell(row["score_metric"])] if len(metrics) > 1 else []),
             *([cell(row["final_acc"], a_score=True)] if metrics != ["test_acc"] else []),
             str(row["status"])]
            for _, row in table.head(TABLE_ROWS).iterrows()]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
             for line in (header, *rows)]
    if len(table) > TABLE_ROWS:
        lines.append(f"... and {len(table) - TABLE_ROWS} more")
    lines.append(f"(best first by {score}; every column: {sweep_dir / 'results.md'})")
    return "\n".join(lines)


def effects_sentence(runs: list[Run], sweep_dir: Path) -> str:
    """What the swept knobs did, in one sentence (effects.md has the numbers); nothing when fewer
    than two runs' scores count or they differ in nothing (there is nothing to compare)."""
    from alexnet import scores
    from alexnet.results.collect import varying_columns
    from alexnet.results.effects import sweep_sentence

    counted = [run for run in runs if scores.selection_score(run.summary) is not None]
    if len(counted) < 2 or not varying_columns(counted):
        return ""
    return sweep_sentence(runs)


def keep_best_weights(runs: list[Run]) -> None:
    """checkpoint.keep=best: remove model.pt from every run of the sweep but its best (by the
    selection score, alexnet/scores.py); said in one line. Called once the sweep has ended, so no
    run loses its weights before the sweep knows it is not the best."""
    from alexnet import scores
    from alexnet.resume.checkpoint import MODEL_FILE

    best = scores.best([run.summary for run in runs])
    removed = 0
    for index, run in enumerate(runs):
        weights = run.path / MODEL_FILE
        if index != best and weights.is_file():
            removed += weights.stat().st_size
            weights.unlink()
    if removed:
        kept = f"{runs[best].path / MODEL_FILE}" if best is not None else "none (no run's scores count)"
        print(f"checkpoint.keep=best: kept {kept}; removed the other runs' weights "
              f"({removed / 1e6:.1f} MB)", file=sys.stderr)


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
        from alexnet.results.planned import original_arguments
        from alexnet.resume.stop import resume_command
        from alexnet.run.record import mark_abandoned

        sweep_dir = str(config.hydra.sweep.dir)
        arguments = original_arguments(Path(sweep_dir))
        again = (f"resume it from its last checkpoint with: {resume_command(arguments, sweep_dir, True)}"
                 if arguments is not None else
                 f"rerun the same command with hydra.sweep.dir={sweep_dir} to resume it")
        mark_abandoned(Path(died.run_dir), Status.failed, f"{died}; {again}")
        job_return.status = JobStatus.COMPLETED
        job_return.return_value = float("nan")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """results.csv/.md, summary and plots into the sweep dir, the summary line and table, the
        weights of all runs but the best removed (checkpoint.keep=best), the MLflow parent run
        closed with them; exit non-zero if any run did not succeed."""
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = report_sweep(sweep_dir)
        if runs and config.checkpoint.keep == "best":
            keep_best_weights(runs)
        ended_well = succeeded(runs)
        _track_sweep(config, lambda mlflow, settings: mlflow.finish_sweep_run(
            settings, sweep_dir, ended_well))
        if not ended_well:
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
