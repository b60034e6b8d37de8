"""Hydra callbacks (conf/config.yaml): refuse what cannot work before any folder is made, and end a
sweep with its table, a summary and an exit status that says whether every run succeeded."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alexnet.configs import config_label
from alexnet.results.planned import sweep_overrides
from alexnet.resume.stop import Stop, refused
from alexnet.scores import ENDED_WELL, Status

RESUMABLE = (Status.interrupted, Status.stale, Status.not_started)  # the same command goes on with them

if TYPE_CHECKING:
    from alexnet.results.collect import Run

log = logging.getLogger(__name__)

STATUS_ORDER = tuple(Status)
TABLE_ROWS = 20  # results.md has them all


def refuse_shared(folder: Path) -> None:
    """Refuses a folder others can write: they could plant links where our files go."""
    from alexnet.config_checks import ConfigError
    from alexnet.files import shared_folder

    problem = shared_folder(folder)
    if problem is not None:
        raise ConfigError(f"{problem}: they could plant links where our files go. Choose a "
                          "folder of your own with hydra.run.dir= / hydra.sweep.dir=")


def sweep_varies(config: DictConfig, prefix: str) -> bool:
    """From the command line or hydra.sweeper.params."""
    return any(o.is_sweep_override() and o.get_key_element().lstrip("+~").startswith(prefix)
               for o in sweep_overrides(config))


def report_sweep(sweep_dir: Path) -> list[Run] | None:
    """Aggregates the sweep and prints its summary, table and effects; None when aggregating fails."""
    from alexnet.results.report import aggregate

    try:
        runs = aggregate([sweep_dir], sweep_dir, compare_notebook=True).runs
    except Exception as err:  # the runs are on disk whatever happens here (out of memory too)
        log.error("aggregating %s failed (%s: %s); python -m alexnet.aggregate %s writes its "
                  "tables again", sweep_dir, type(err).__name__, err, sweep_dir)
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


def compact_table(runs: list[Run], sweep_dir: Path) -> str:
    """results.md's ranking, narrowed for a terminal to the keys that tell runs apart and the scores."""
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
    tied = list(table.loc[table["score"] == table["score"].iloc[0], "run_dir"]) if len(table) else []
    said = f"; runs {', '.join(map(str, tied))} tie for the best, the first is taken" if len(tied) > 1 else ""
    lines.append(f"(best first by {score}{said}; every column: {sweep_dir / 'results.md'})")
    return "\n".join(lines)


def effects_sentence(runs: list[Run], sweep_dir: Path) -> str:
    """Empty when there is nothing to compare; effects.md has the numbers."""
    from alexnet import scores
    from alexnet.results.collect import varying_columns
    from alexnet.results.effects import sweep_sentence

    counted = [run for run in runs if scores.selection_score(run.summary) is not None]
    if len(counted) < 2 or not varying_columns(counted):
        return ""
    return sweep_sentence(runs)


def keep_best_weights(runs: list[Run]) -> None:
    """checkpoint.keep=best, once the sweep has ended: no run loses its weights before it is not the best."""
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


class Checks(Callback):
    """Refuses what cannot work before any folder is made, and ends a sweep with its table."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuses before Hydra makes the run dir (and fetches data), so a refused run leaves no folder."""
        from alexnet.config_checks import ConfigError, validate
        from alexnet.data.cifar import DataError, fetch

        try:
            refuse_shared(Path(config.hydra.run.dir))
            validate(config)
            fetch(config.data.root, config.data.download)
        except (ConfigError, DataError) as err:
            raise refused(str(err)) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuses, once, what would fail every run; writes the planned jobs; opens the MLflow parent run."""
        from hydra.core.global_hydra import GlobalHydra

        from alexnet.config_checks import ConfigError, check_swept_keys, validate
        from alexnet.data.cifar import DataError, fetch
        from alexnet.hyperparameters import identity
        from alexnet.launch.placement import launcher_class
        from alexnet.results.planned import jobs_of, original_command, planned_jobs, write_planned

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            refuse_shared(sweep_dir)
            check_swept_keys(config, sweep_overrides(config))
            validate(config)
        except ConfigError as err:
            raise refused(str(err)) from None
        check = getattr(launcher_class(config.hydra.launcher), "check_settings", None)
        if check is not None:  # (SLURM's: before anything is read or submitted)
            check(OmegaConf.to_container(config.hydra.launcher, resolve=True))
        jobs = jobs_of(config, GlobalHydra.instance().config_loader())
        earlier = planned_jobs(sweep_dir)
        if earlier is not None and jobs is not None \
                and [identity(job) for job in earlier] != [identity(job) for job in jobs]:
            raise Stop(f"{sweep_dir} holds another sweep (it planned other jobs). To resume it, rerun the "
                       f"command it was made with:\n  {original_command(sweep_dir)}\nFor a new sweep, give a "
                       "new hydra.sweep.dir.", exit_code=2)
        if not sweep_varies(config, "data"):
            try:
                fetch(config.data.root, config.data.download)
            except DataError as err:
                raise refused(f"no run of this sweep can start: {err}") from None
        if jobs is not None:
            write_planned(sweep_dir, jobs)
        _track_sweep(config, lambda mlflow, settings: mlflow.start_sweep_run(
            settings, config_label(config.hydra), sweep_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Reports the sweep; a Stop resumes unfinished runs, else it exits non-zero unless all ended well."""
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = report_sweep(sweep_dir)
        if runs and config.checkpoint.keep == "best":
            keep_best_weights(runs)
        ended_well = runs is not None and all(run.status in ENDED_WELL for run in runs)
        _track_sweep(config, lambda mlflow, settings: mlflow.finish_sweep_run(
            settings, sweep_dir, ended_well))
        unfinished = [run for run in runs or [] if run.status in RESUMABLE]
        if unfinished:
            raise Stop(f"{len(unfinished)} run(s) did not finish ("
                       + ", ".join(sorted({str(run.status) for run in unfinished}))
                       + "): the same command again resumes them from their checkpoints",
                       output_dir=sweep_dir, reported=True)
        if not ended_well:
            raise SystemExit(1)


def _track_sweep(config: DictConfig, act: Callable[[ModuleType, DictConfig], None]) -> None:
    """Runs `act` when logger.mlflow is on; a tracking error is logged and the sweep goes on."""
    settings = (config.get("logger") or {}).get("mlflow")
    if settings is None:
        return
    try:
        from alexnet.tracking import mlflow

        act(mlflow, settings)
    except Exception as err:  # tracking never stops a sweep
        log.warning("mlflow tracking of the sweep failed (%s: %s); the runs go on",
                    type(err).__name__, err)
