"""The pictures an aggregated sweep leaves beside results.csv, made not to mislead: a run whose scores do not
count (alexnet/scores.py) is drawn as such, never as a score, and the curves show the selection metric."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from alexnet import scores  # noqa: E402
from alexnet.files import write_atomic  # noqa: E402
from alexnet.results.collect import Run, own_keys, readable  # noqa: E402
from alexnet.results.stats import SCORE, column_interval, metric_of, replicate_groups  # noqa: E402
from alexnet.run.record import CONFUSION_FILE, FILTERS_FILE, MISTAKES_FILE, MISTAKES_TABLE  # noqa: E402
from alexnet.scores import Status  # noqa: E402

log = logging.getLogger(__name__)

LONG_LABEL = 60  # characters: longer legend entries go one to a line

NAMES = {"val_acc": "validation accuracy", "test_acc": "test accuracy", "val_f1": "validation macro-F1",
         "test_f1": "test macro-F1", "val_loss": "validation loss", "test_loss": "test loss",
         "val_top5": "validation top-5 accuracy", "test_top5": "test top-5 accuracy"}


def label_keys(runs: Sequence[Run], varying: Sequence[str]) -> list[str]:
    """Keys that tell runs apart, less followers; beside an experiment only keys varying within one."""
    varying = own_keys(runs, varying)
    if "experiment" not in varying:
        return varying
    groups: dict[Any, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.hyperparameters.get("experiment"), []).append(run)
    within = [key for key in varying if key != "experiment" and any(
        len({str(r.hyperparameters.get(key)) for r in group}) > 1 for group in groups.values())]
    return ["experiment", *within]


def run_label(run: Run, keys: Sequence[str]) -> str:
    """What tells this run apart from the others, e.g. 'optimizer=adam lr=0.00053'."""
    parts = [f"{key.rsplit('.', 1)[-1]}={readable(run.hyperparameters.get(key))}" for key in keys]
    return " ".join(parts) or run.path.name


def _ended(run: Run) -> str:
    """How a run whose scores do not count ended, for a legend: 'pruned at epoch 2'."""
    done = run.summary.get("epochs_done")
    return f"{run.status} at epoch {done}" if done else str(run.status)


def selected_metric(runs: Sequence[Run]) -> str:
    """The metric the runs are selected by, where they share one; else test_acc (said so)."""
    found = {metric_of(run, SCORE) for run in runs if run.summary.get("config")}
    return found.pop() if len(found) == 1 else "test_acc"


def save(fig: plt.Figure, path: Path) -> None:
    write_atomic(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def learning_curves(runs: Sequence[Run], varying: Sequence[str], path: Path) -> None:
    save(learning_curves_figure(runs, varying), path)


def learning_curves_figure(runs: Sequence[Run], varying: Sequence[str]) -> plt.Figure:
    """Per epoch, selection metric and train loss per run; uncounted runs dashed, their end in the legend."""
    metric = selected_metric(runs)
    fig, (score_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 5))
    for run in runs:
        if run.metrics.empty or metric not in run.metrics:
            continue
        counts = scores.counts(run.summary)
        label = run_label(run, varying) + ("" if counts else f" ({_ended(run)})")
        style = {"marker": "o"} if counts else {"marker": "x", "linestyle": "--", "alpha": 0.6}
        line, = score_ax.plot(run.metrics["epoch"], run.metrics[metric], label=label, **style)
        loss_ax.plot(run.metrics["epoch"], run.metrics["train_loss"], color=line.get_color(), **style)
    mixed = len({metric_of(run, SCORE) for run in runs if run.summary.get("config")}) > 1
    score_ax.set(title=f"{NAMES.get(metric, metric).capitalize()}"
                 + (" (the runs are selected by different metrics)" if mixed else " (the selection score)"),
                 xlabel="epoch", ylabel=metric)
    for ax in (score_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set(title="Train loss", xlabel="epoch", ylabel="cross-entropy")
    handles, labels = score_ax.get_legend_handles_labels()
    columns = 2 if max(map(len, labels), default=0) <= LONG_LABEL else 1
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize="small",
                   bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (-(-len(labels) // columns)), 1, 1))
    return fig


def final_scores(runs: Sequence[Run], varying: Sequence[str], path: Path) -> None:
    save(final_scores_figure(runs, varying), path)


def final_scores_figure(runs: Sequence[Run], varying: Sequence[str]) -> plt.Figure:
    """Selection score, final test accuracy and F1 per run, or per setting where seeds replicate: the mean of
    its counted seeds, its 95% CI as error bar. With no counted score, how it ended is written instead."""
    groups = list(replicate_groups(runs, varying).values())
    replicated = any(len(group) > 1 for group in groups)
    if not replicated:
        groups = [[run] for run in runs]
    keys = [key for key in varying if key != "seed"] if replicated else list(varying)
    metric = selected_metric(runs)
    columns = {"test accuracy": "final_acc", "test macro-F1": "final_f1"}
    if metric != "test_acc":
        columns = {f"{NAMES.get(metric, metric)} (selection)": SCORE, **columns}
    labels, ended = [], []
    means: dict[str, list[float]] = {name: [] for name in columns}
    errors: dict[str, list[float]] = {name: [] for name in columns}
    for group in groups:
        done = [run for run in group if scores.counts(run.summary)]
        labels.append(run_label(group[0], keys) + (f" (n={len(done)})" if replicated else ""))
        ended.append(None if done else ", ".join(
            f"{n} {s}" if replicated else s for s, n in Counter(_ended(r) for r in group).items()))
        for name, column in columns.items():
            summary = column_interval(done, column)
            means[name].append(summary.mean)
            errors[name].append(0.0 if math.isnan(summary.low) else summary.mean - summary.low)
    frame = pd.DataFrame(means, index=labels).astype(float)
    width = 7 + 0.09 * max(map(len, labels))  # room for the labels
    fig, ax = plt.subplots(figsize=(width, 1.5 + 0.45 * len(groups) * max(1, len(columns) - 1)))
    frame.iloc[::-1].plot.barh(ax=ax, xerr=pd.DataFrame(errors, index=labels).iloc[::-1]
                               if replicated else None, capsize=3)  # first on top
    for position, text in enumerate(reversed(ended)):
        if text:
            ax.text(0.002, position, f"no score: {text}", va="center", fontsize="small",
                    color="dimgray", style="italic")
    ax.set(title="Final scores per setting, mean over seeds (95% confidence interval)" if replicated
           else "Final scores per run", xlabel="score")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def superclass_heatmap(run: Run, varying: Sequence[str], path: Path) -> None:
    """Row-normalized confusion over the 20 superclasses: where each superclass's images went."""
    counts = pd.read_csv(run.path / CONFUSION_FILE, index_col=0)
    recall = counts.div(counts.sum(axis=1).where(lambda s: s > 0), axis=0)
    fig, ax = plt.subplots(figsize=(10, 9))
    image = ax.imshow(recall.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(counts.columns)), counts.columns, rotation=90, fontsize="small")
    ax.set_yticks(range(len(counts.index)), counts.index, fontsize="small")
    metric, value = metric_of(run, SCORE), scores.selection_score(run.summary)
    ax.set(xlabel="predicted superclass", ylabel="true superclass",
           title=f"Best run by {metric} ({value:.4f}): {run_label(run, varying)}\n"
                 "its last epoch's test images")
    fig.colorbar(image, ax=ax, label="fraction of the true superclass")
    fig.tight_layout()
    save(fig, path)


def best_run_pictures(best_run: Path | None, out_dir: Path) -> list[Path]:
    """The best run's pictures as best_*, copied, else drawn from its run dir; failing costs a warning, never
    the table, and removes earlier copies so no other run's are shown as the best's."""
    names = (FILTERS_FILE, MISTAKES_FILE, MISTAKES_TABLE)
    if best_run is not None and all((best_run / name).is_file() for name in names):
        for name in names:
            write_atomic(out_dir / f"best_{name}", lambda f, source=best_run / name:
                         f.write(source.read_bytes()))
        return [out_dir / f"best_{name}" for name in names]
    if best_run is not None:
        from alexnet.results.learned import redraw  # (torch: needed only here)

        try:
            return redraw(best_run, out_dir, prefix="best_")
        except Exception as err:  # (pictures never cost the table: out of memory included)
            log.warning("the best run's pictures are not drawn: %s", err)
    for name in names:
        (out_dir / f"best_{name}").unlink(missing_ok=True)
    return []


def draw_all(runs: Sequence[Run], varying: Sequence[str], out_dir: Path) -> list[Path]:
    """Learning curves, final scores and the best counted run's superclass confusion; returns the files."""
    runs = [run for run in runs if run.status != Status.not_started]
    if not runs:
        return []
    varying = label_keys(runs, varying)
    written = [out_dir / "learning_curves.png", out_dir / "final_scores.png"]
    learning_curves(runs, varying, written[0])
    final_scores(runs, varying, written[1])
    drawable = [run for run in runs if (run.path / CONFUSION_FILE).is_file()]
    best = scores.best([run.summary for run in drawable])
    heatmap = out_dir / "confusion_superclass.png"
    if best is not None:
        superclass_heatmap(drawable[best], varying, heatmap)
        written.append(heatmap)
    else:  # no run's scores count: an earlier best's picture would be shown as this sweep's
        heatmap.unlink(missing_ok=True)
    return written
