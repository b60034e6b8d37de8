"""A study's pictures beside search.md: how the objective improved over the trials (or the Pareto
front, for several objectives) and every trial's step-by-step values (epochs, for alexnet), pruned
ones ending early."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from alexnet.files import write_atomic  # noqa: E402


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
    written = []
    for name, axes in pictures:
        figure = axes.figure if hasattr(axes, "figure") else axes
        write_atomic(sweep_dir / name, lambda f, fig=figure: fig.savefig(f, dpi=110, format="png"))
        plt.close(figure)
        written.append(sweep_dir / name)
    return written
