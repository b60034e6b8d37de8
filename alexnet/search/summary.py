"""A search's results in its sweep dir: optimization_results.yaml (as the official plugin writes it),
search.csv (a row per trial) and search.md (best trial or Pareto front with rerun commands, importances)."""

from __future__ import annotations

import logging
import math
import shlex
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib
import optuna
import pandas as pd
from omegaconf import OmegaConf

from alexnet.files import write_atomic, write_text_atomic
from alexnet.search.space import Space
from alexnet.search.study import program
from alexnet.search.trial import LAST_STEP

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
IMPORTANCE_TRIALS = 20  # completed trials below which importances are marked unreliable


def write_results(study: optuna.Study, sweep_dir: Path, space: Space, names: list[str] | None) -> None:
    count = len(study.directions)
    optuna_names = ["value"] if count == 1 else [f"values_{i}" for i in range(count)]
    names = list(names or study.metric_names or optuna_names)
    every = study.get_trials(deepcopy=False)
    complete = [t for t in every if t.state == optuna.trial.TrialState.COMPLETE]
    best = (study.best_trials if len(names) > 1 else [study.best_trial]) if complete else []
    _write_official(study, sweep_dir, best)
    write_text_atomic(sweep_dir / "search.csv", _table(every, names).to_csv(index=False))
    states = Counter(t.state for t in every)
    lines = [f"# Search: study `{study.study_name}`", "", f"{len(every)} trials: " + ", ".join(
        f"{states[s]} {s.name.lower()}" for s in optuna.trial.TrialState if s in states), ""]
    lines += ["## Best trial" if len(names) == 1 else "## Pareto front", ""]
    if not best:
        lines.append("No trial has completed yet.")
    for trial in best:
        values = ", ".join(f"{n} {v:.4f}" for n, v in zip(names, trial.values, strict=True))
        rerun = " ".join([program(), *map(shlex.quote, space.fixed.values()),
                          *(shlex.quote(space.override(k, v)) for k, v in trial.params.items())])
        lines += [f"- trial {trial.number}: {values}", f"  `{rerun}`"]
    lines += _importances(study, names)
    if complete:
        pictures = plot_study(study, sweep_dir, names)
        lines += ["", "Pictures: " + ", ".join(f"`{p.name}`" for p in pictures)]
    write_text_atomic(sweep_dir / "search.md", "\n".join(lines) + "\n")


def _write_official(study: optuna.Study, sweep_dir: Path, best: list[Any]) -> None:
    if not best:
        log.warning("no trial completed: no %s", RESULTS_FILE)
        return
    if len(study.directions) == 1:
        results = {"name": "optuna", "best_params": best[0].params, "best_value": best[0].value}
        log.info("Best parameters: %s", best[0].params)
        log.info("Best value: %s", best[0].value)
    else:
        results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in best]}
        log.info("Number of Pareto solutions: %d", len(best))
        for trial in best:
            log.info("    Values: %s, Params: %s", trial.values, trial.params)
    write_text_atomic(sweep_dir / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(results)))


def _table(every: list[Any], names: list[str]) -> pd.DataFrame:
    """A row per trial: number, state, value(s), the last step its run reported, and parameters."""
    rows = []
    for trial in every:
        steps = list(trial.intermediate_values) or [trial.user_attrs.get(LAST_STEP)]
        last = max((s for s in steps if s is not None), default=None)
        values = trial.values or [math.nan] * len(names)
        rows.append({"trial": trial.number, "state": trial.state.name.lower(),
                     **dict(zip(names, values, strict=True)), "last_step": last, **trial.params})
    return pd.DataFrame(rows)


def _importances(study: optuna.Study, names: list[str]) -> list[str]:
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = [optuna.importance.get_param_importances(  # (seeded: the same study, the same figures)
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                target=None if len(names) == 1 else (lambda t, i=i: t.values[i])) for i in range(len(names))]
    except (RuntimeError, ValueError) as err:  # too few finished trials, a single parameter...
        return ["", f"(parameter importances: not computed: {err})"]
    lines = ["", "## Parameter importances", ""]
    if complete < IMPORTANCE_TRIALS:
        lines += [f"Unreliable: {complete} completed trials. Below {IMPORTANCE_TRIALS}, Optuna's "
                  "fANOVA ranked the knob that decided a test search first in at most 70% of "
                  "searches and gave a knob without effect a third of the importance "
                  "(benchmarks/importances.py).", ""]
    for name, importances in zip(names, found, strict=True):
        lines += [f"- {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in importances.items())]
    return lines


matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402


def plot_study(study: optuna.Study, sweep_dir: Path, objectives: list[str]) -> list[Path]:
    """search_history.png (or search_pareto.png) and search_epochs.png; the files written."""
    pictures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if len(objectives) == 1:
            pictures.append(("search_history.png", optuna_plots.plot_optimization_history(
                study, target_name=objectives[0])))
        else:
            pictures.append(("search_pareto.png", optuna_plots.plot_pareto_front(
                study, target_names=objectives)))
        if len(objectives) == 1 and any(t.intermediate_values for t in study.trials):
            steps = optuna_plots.plot_intermediate_values(study)
            steps.set_xlabel("step (alexnet: epoch)")
            steps.set_ylabel(f"{objectives[0]} (reported at each step)")
            pictures.append(("search_epochs.png", steps))
    for name, axes in pictures:
        figure = axes.figure if hasattr(axes, "figure") else axes
        write_atomic(sweep_dir / name, lambda f, fig=figure: fig.savefig(f, dpi=110, format="png"))
        plt.close(figure)
    return [sweep_dir / name for name, _ in pictures]
