"""The Optuna sweeper's work (hydra/sweeper=optuna): ask the study for trials, launch them with
the configured launcher, tell it how each run ended, until `n_trials` trials have finished.

The study lives in the sweep dir by default (`<sweep dir>/optuna.db`), so rerunning the same
command continues it: finished trials are not run again, and a trial an earlier start left
running (killed, Ctrl-C) is launched again as the same trial, in its own run dir (trial N is job
N), where the run resumes from its checkpoint. Each run reports its monitored score after every
epoch to its trial through the storage and stops, `pruned`, when the pruner says so; that works
with every launcher, as the run learns its study and trial from its overrides (`search.*`).

With `hydra/launcher=parallel`, a trial is asked for when a worker is free, knowing every trial
that has ended, and starts at once: no batch barrier. Launchers that take a list of jobs and
return when all have ended (basic, slurm, submitit_local) get trials `n_jobs` at a time, as Hydra's
own Optuna sweeper does: a slot freed by a pruned trial waits for its batch's slowest trial."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import shlex
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from hydra.core.utils import JobReturn
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alexnet.config_checks import Refused
from alexnet.files import write_text_atomic
from alexnet.locks import try_lock
from alexnet.run.record import read_summary
from alexnet.run.status import Status
from alexnet.search.space import as_override, parse_space
from alexnet.search.study import PRUNER_ATTR, storage

log = logging.getLogger(__name__)

SEARCH_FILES = ("search.csv", "search.md")


def sweep(sweeper: Any, arguments: Sequence[str]) -> None:
    """The whole search; `sweeper` is the plugin (its settings and launcher). One start of it at a
    time per sweep dir (a lock), since each start reruns the trials it finds running."""
    config: DictConfig = sweeper.config
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = try_lock(sweep_dir / SEARCH_LOCK)
    if lock is None:
        raise Refused(f"another start of this search is running (it holds {sweep_dir / SEARCH_LOCK})"
                      ": wait for it, or stop it first")
    with lock:
        _search(sweeper, config, sweep_dir, arguments)


def _search(sweeper: Any, config: DictConfig, sweep_dir: Path, arguments: Sequence[str]) -> None:
    objectives, directions = _as_list(sweeper.objective), _as_list(sweeper.direction)
    space, fixed = _checked_space(sweeper, config, arguments, objectives, directions)
    url = str(sweeper.storage)
    sampler, grid_size = _sampler(sweeper.sampler, space)
    study = optuna.create_study(
        study_name=sweeper.study_name, storage=storage(url), load_if_exists=True,
        sampler=sampler, pruner=_built(sweeper.pruner), directions=directions)
    _same_search(study, space, objectives, directions)
    study.set_user_attr(PRUNER_ATTR, OmegaConf.to_container(config.hydra.sweeper.pruner,
                                                            resolve=True))
    prune = len(objectives) == 1 and objectives[0].startswith(EPOCH_METRICS)
    if not prune:
        log.warning("no pruning: it needs one objective that every epoch reports (%s)",
                    ", ".join(f"{p}*" for p in EPOCH_METRICS))
    shared = [f"search.study={sweeper.study_name}", f"search.storage={url}",
              f"search.monitor={objectives[0]}", f"search.prune={prune}"]
    n_trials = min(sweeper.n_trials, grid_size or sweeper.n_trials)
    log.info("Optuna study %s in %s: %d trials, %s at a time, %s %s", sweeper.study_name, url,
             n_trials, sweeper.n_jobs or "as many as the launcher runs", "/".join(directions),
             "/".join(objectives))
    # Trials an earlier start left running go first, as the same trials (a job's number is its
    # trial's); then new ones, asked one at a time when a slot is free.
    trials = study.get_trials(deepcopy=False)
    rerun = sorted((t for t in trials if t.state == optuna.trial.TrialState.RUNNING),
                   key=lambda t: t.number)
    to_ask = max(0, n_trials - sum(t.state.is_finished() for t in trials) - len(rerun))

    def jobs(chosen: Iterable[Any]) -> Iterator[tuple[int, list[str]]]:
        for trial in chosen:
            yield trial.number, [*fixed, *(as_override(k, v) for k, v in trial.params.items()),
                                 *shared, f"search.trial_id={trial._trial_id}"]

    asked = (study.ask(space) for _ in range(to_ask))  # (lazily: when a slot is free)
    launcher = sweeper.launcher
    if hasattr(launcher, "run_each"):
        ended = launcher.run_each(jobs(itertools.chain(rerun, asked)), at_most=sweeper.n_jobs)
    else:  # the reruns' batches end before the first new trial is asked for
        size = sweeper.n_jobs or _batch_size(launcher)
        ended = (done for part in (_in_batches(launcher, jobs(rerun), size),
                                   _in_batches(launcher, jobs(asked), size)) for done in part)
    with contextlib.closing(ended):  # (an error here stops the launcher's running jobs cleanly)
        for number, ret in ended:
            _tell(study, number, ret, objectives)
    write_search_report(study, sweep_dir, fixed, objectives)


SEARCH_LOCK = ".search.lock"
EPOCH_METRICS = ("val_", "test_", "train_")  # metrics.csv's per-epoch scores


def _checked_space(sweeper: Any, config: DictConfig, arguments: Sequence[str],
                   objectives: list[str], directions: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The search space and fixed overrides; Refused for settings no trial could use."""
    if sweeper.n_jobs is not None and int(sweeper.n_jobs) < 1:
        raise Refused(f"hydra.sweeper.n_jobs={sweeper.n_jobs}: give the trials to run at a time "
                      "(1 or more), or null for as many as the launcher runs")
    if len(directions) != len(objectives):
        raise Refused(f"hydra.sweeper.direction has {len(directions)} values and "
                      f"hydra.sweeper.objective {len(objectives)}: give one direction each")
    params = [f"{key}={value}" for key, value in (sweeper.params or {}).items()]
    try:
        space, fixed = parse_space([*params, *arguments])
    except ValueError as err:
        raise Refused(str(err)) from None
    if not space:
        raise Refused("nothing to search: give hydra.sweeper.params or overrides such as "
                      "'optimizer.lr=tag(log, interval(1e-4, 0.1))'")
    val_split = OmegaConf.select(config, "data.val_split")
    if any(o.startswith("val_") for o in objectives) and val_split is None \
            and "data.val_split" not in space:
        raise Refused(f"hydra.sweeper.objective={','.join(objectives)} is scored on a validation "
                      "split: add data.val_split=N (e.g. data.val_split=500), so that the search "
                      "does not select on the test set")
    return space, fixed


def _same_search(study: optuna.Study, space: dict[str, Any], objectives: list[str],
                 directions: list[str]) -> None:
    """A study continues only the search it was made for."""
    this = {"space": {k: repr(v) for k, v in space.items()}, "objectives": objectives,
            "directions": directions}
    before = study.user_attrs.get("search")
    if before is None:
        study.set_user_attr("search", this)
    elif before != this:
        raise Refused(f"study {study.study_name} holds another search ({before}); this one is "
                      f"{this}. Rerun the command that made it, or give a new hydra.sweep.dir")


def _in_batches(launcher: Any, jobs: Iterable[tuple[int, list[str]]], size: int
                ) -> Iterator[tuple[int, JobReturn]]:
    """For launchers that take a list of jobs and return when all have ended (basic, SLURM,
    submitit): `size` jobs at a time, whose numbers follow each other (Hydra numbers a batch's jobs
    from its first); the next batch waits for the slowest job of the one before."""
    batch: list[tuple[int, list[str]]] = []

    def launched() -> list[tuple[int, JobReturn]]:
        returns = launcher.launch([overrides for _, overrides in batch],
                                  initial_job_idx=batch[0][0])
        numbers = [number for number, _ in batch]
        batch.clear()
        return list(zip(numbers, returns, strict=True))

    for number, overrides in jobs:
        if batch and batch[-1][0] + 1 != number:
            yield from launched()
        batch.append((number, overrides))
        if len(batch) == size:
            yield from launched()
    if batch:
        yield from launched()


def _batch_size(launcher: Any) -> int:
    """Trials at a time where hydra.sweeper.n_jobs is null: as many as the launcher runs at once
    (Hydra's joblib launcher: its n_jobs; SLURM: its array_parallelism), else one (the basic
    launcher runs one job at a time; submitit_local would start every job of a batch at once)."""
    if getattr(launcher, "joblib", None) is not None:
        from joblib import effective_n_jobs  # (there with the joblib launcher only)

        return effective_n_jobs(launcher.joblib.get("n_jobs"))
    if getattr(launcher, "_EXECUTOR", None) == "slurm":  # (hydra-submitit-launcher's mark)
        return int(launcher.params.get("array_parallelism") or 1)
    return 1


def _built(node: Any) -> Any:
    """A sampler or pruner: Hydra builds the sweeper's nested `_target_` nodes itself, except
    where the sweeper is made some other way (tests) and gives the config."""
    return instantiate(node) if OmegaConf.is_config(node) else node


def _sampler(node: Any, space: dict[str, Any]) -> tuple[optuna.samplers.BaseSampler, int | None]:
    """The sampler, and for the grid sampler (a partial, given the grid from the choices) the
    number of points in its grid."""
    sampler = _built(node)
    if not isinstance(sampler, functools.partial):
        return sampler, None
    try:
        grid = {key: list(d.choices) if hasattr(d, "choices") else _values(key, d)
                for key, d in space.items()}
    except ValueError as err:
        raise Refused(str(err)) from None
    return sampler(search_space=grid), math.prod(len(values) for values in grid.values())


def _values(key: str, distribution: Any) -> list[Any]:
    if isinstance(distribution, optuna.distributions.IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    raise ValueError(f"{key}: the grid sampler needs listed values (choice(...) or range(...)), "
                     "not an interval")


def _as_list(value: Any) -> list[str]:
    if OmegaConf.is_list(value) or isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _tell(study: optuna.Study, number: int, ret: JobReturn, objectives: list[str]) -> None:
    """Close the trial as its run ended: its objective values, PRUNED, or FAIL."""
    run_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    summary = read_summary(run_dir) or {}
    status = summary.get("status")
    if study.get_trials(deepcopy=False)[number].state.is_finished():
        return  # (told already: another start of an earlier search ran it)
    try:
        _close(study, number, status, summary, objectives)
    except RuntimeError as err:  # the grid sampler stops its study at its last point
        if "stop" not in str(err):
            raise


def _close(study: optuna.Study, number: int, status: Any, summary: dict[str, Any],
           objectives: list[str]) -> None:
    if status == Status.pruned:
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
        return
    values = [objective_value(summary, name) for name in objectives]
    if status in (Status.completed, Status.early_stopped) and all(map(math.isfinite, values)):
        study.tell(number, values)
    else:
        log.warning("trial %d: its run ended %s; the trial FAILED", number, status)
        study.tell(number, state=optuna.trial.TrialState.FAIL)


def objective_value(summary: dict[str, Any], name: str) -> float:
    """`name` from the run's final epoch (val_acc, test_loss, ...) or its record (wall_time_s)."""
    value = (summary.get("final") or {}).get(name, summary.get(name))
    return float(value) if isinstance(value, int | float) else float("nan")


def write_search_report(study: optuna.Study, sweep_dir: Path, fixed: list[str],
                        objectives: list[str]) -> None:
    """search.csv (a row per trial) and search.md (the best trial, or the Pareto front, with the
    command that reruns it, and the parameters' importances), with the study's pictures."""
    rows = [{"trial": t.number, "state": t.state.name.lower(),
             **{name: (t.values or [math.nan] * len(objectives))[i]
                for i, name in enumerate(objectives)},
             "epochs": len(t.intermediate_values), **t.params}
            for t in study.get_trials(deepcopy=False)]
    table = pd.DataFrame(rows)
    write_text_atomic(sweep_dir / "search.csv", table.to_csv(index=False))
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    best = (study.best_trials if len(objectives) > 1 else [study.best_trial]) if complete else []
    lines = [f"# Search: study `{study.study_name}`", "",
             f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in
                                                  table["state"].value_counts().items()), ""]
    lines += ["## Best trial" if len(objectives) == 1 else "## Pareto front", ""]
    if not best:
        lines.append("No trial has completed yet.")
    for trial in best:
        values = ", ".join(f"{n} {v:.4f}" for n, v in zip(objectives, trial.values, strict=True))
        command = " ".join(["python -m alexnet.train", *map(shlex.quote, fixed),
                            *(shlex.quote(as_override(k, v)) for k, v in trial.params.items())])
        lines += [f"- trial {trial.number}: {values}", f"  `{command}`"]
    try:
        importances = optuna.importance.get_param_importances(study)
        lines += ["", "## Parameter importances", ""]
        lines += [f"- {name}: {value:.3f}" for name, value in importances.items()]
    except (RuntimeError, ValueError) as err:  # too few finished trials, a single parameter...
        lines += ["", f"(parameter importances: not computed: {err})"]
    if complete:
        from alexnet.search.plots import plot_study

        pictures = plot_study(study, sweep_dir, objectives)
        lines += ["", "Pictures: " + ", ".join(f"`{p.name}`" for p in pictures)]
    write_text_atomic(sweep_dir / "search.md", "\n".join(lines) + "\n")
