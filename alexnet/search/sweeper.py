"""The Optuna sweeper's work (hydra/sweeper=optuna): ask the study for trials, launch them with
the configured launcher, tell it how each run ended, until `n_trials` trials have finished.

The study lives in the sweep dir by default (`<sweep dir>/optuna.db`), so rerunning the same
command continues it: finished trials are not run again, and a trial an earlier start left
running (killed, Ctrl-C) is launched again as the same trial, in its own run dir (trial N is job
N), where the run resumes from its checkpoint. Each run reports its monitored score after every
epoch to its trial through the storage and stops, `pruned`, when the pruner says so; that works
with every launcher, as the run learns its study and trial from its overrides (`search.*`).

Trials go to the launcher `n_jobs` at a time and the next batch starts when the batch has ended
(as Hydra's own Optuna sweeper): with a pruner most of a batch ends early, but a slot freed by a
pruned trial waits for the batch's slowest trial."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from hydra.core.utils import JobReturn
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alexnet.config_checks import Refused
from alexnet.files import write_text_atomic
from alexnet.run.record import read_summary
from alexnet.run.status import Status
from alexnet.search.space import as_override, parse_space
from alexnet.search.study import PRUNER_ATTR, storage

log = logging.getLogger(__name__)

SEARCH_FILES = ("search.csv", "search.md")


def sweep(sweeper: Any, arguments: Sequence[str]) -> None:
    """The whole search; `sweeper` is the plugin (its settings and launcher)."""
    config: DictConfig = sweeper.config
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    objectives = _as_list(sweeper.objective)
    directions = _as_list(sweeper.direction)
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
    url = str(sweeper.storage)
    study = optuna.create_study(
        study_name=sweeper.study_name, storage=storage(url), load_if_exists=True,
        sampler=_sampler(sweeper.sampler, space), pruner=_built(sweeper.pruner),
        directions=[str(d) for d in directions])
    study.set_user_attr(PRUNER_ATTR, OmegaConf.to_container(config.hydra.sweeper.pruner,
                                                            resolve=True))
    shared = [f"search.study={sweeper.study_name}", f"search.storage={url}",
              f"search.monitor={objectives[0]}", f"search.prune={len(objectives) == 1}"]
    log.info("Optuna study %s in %s: %d trials, %d at a time, %s %s", sweeper.study_name, url,
             sweeper.n_trials, sweeper.n_jobs, "/".join(directions), "/".join(objectives))
    # Trials an earlier start left running: the same trials again, one at a time (their numbers
    # need not follow each other, and a job's number is its trial's).
    batches = [[t] for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    while True:
        for batch in batches:
            overrides = [[*fixed, *(as_override(k, v) for k, v in t.params.items()), *shared,
                          f"search.trial_id={t._trial_id}"] for t in batch]
            returns = sweeper.launcher.launch(overrides, initial_job_idx=batch[0].number)
            for trial, ret in zip(batch, returns, strict=True):
                _tell(study, trial, ret, objectives)
        finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        if finished >= sweeper.n_trials:
            break
        batches = [[study.ask(space) for _ in range(min(sweeper.n_jobs, sweeper.n_trials - finished))]]
    write_search_report(study, sweep_dir, fixed, objectives)


def _built(node: Any) -> Any:
    """A sampler or pruner: Hydra builds the sweeper's nested `_target_` nodes itself, except
    where the sweeper is made some other way (tests) and gives the config."""
    return instantiate(node) if OmegaConf.is_config(node) else node


def _sampler(node: Any, space: dict[str, Any]) -> optuna.samplers.BaseSampler:
    """The sampler; the grid sampler (a partial) gets the grid from the choices."""
    sampler = _built(node)
    if isinstance(sampler, functools.partial):
        grid = {key: list(d.choices) if hasattr(d, "choices") else _values(key, d)
                for key, d in space.items()}
        return sampler(search_space=grid)
    return sampler


def _values(key: str, distribution: Any) -> list[Any]:
    if isinstance(distribution, optuna.distributions.IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    raise ValueError(f"{key}: the grid sampler needs listed values (choice(...) or range(...)), "
                     "not an interval")


def _as_list(value: Any) -> list[str]:
    if OmegaConf.is_list(value) or isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _tell(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial, ret: JobReturn,
          objectives: list[str]) -> None:
    """Close the trial as its run ended: its objective values, PRUNED, or FAIL."""
    run_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    summary = read_summary(run_dir) or {}
    status = summary.get("status")
    number = trial.number
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
    best = study.best_trials if len(objectives) > 1 else [study.best_trial]
    lines = [f"# Search: study `{study.study_name}`", "",
             f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in
                                                  table["state"].value_counts().items()), ""]
    lines += ["## Best trial" if len(objectives) == 1 else "## Pareto front", ""]
    for trial in best:
        values = ", ".join(f"{n} {v:.4f}" for n, v in zip(objectives, trial.values, strict=True))
        command = " ".join(["python -m alexnet.train", *fixed,
                            *(as_override(k, v) for k, v in trial.params.items())])
        lines += [f"- trial {trial.number}: {values}", f"  `{command}`"]
    try:
        importances = optuna.importance.get_param_importances(study)
        lines += ["", "## Parameter importances", ""]
        lines += [f"- {name}: {value:.3f}" for name, value in importances.items()]
    except (RuntimeError, ValueError) as err:  # too few finished trials, a single parameter...
        lines += ["", f"(parameter importances: not computed: {err})"]
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if finished:
        from alexnet.search.plots import plot_study

        pictures = plot_study(study, sweep_dir, objectives)
        lines += ["", "Pictures: " + ", ".join(f"`{p.name}`" for p in pictures)]
    write_text_atomic(sweep_dir / "search.md", "\n".join(lines) + "\n")
