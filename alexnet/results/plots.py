"""The pictures an aggregated sweep leaves beside results.csv."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from alexnet.files import write_atomic  # noqa: E402
from alexnet.results.collect import Run  # noqa: E402
from alexnet.results.stats import interval, replicate_groups, score  # noqa: E402
from alexnet.run.record import CONFUSION_FILE  # noqa: E402
from alexnet.run.status import SUCCEEDED, Status  # noqa: E402


def label_keys(runs: Sequence[Run], varying: Sequence[str]) -> list[str]:
    """The keys that tell runs apart. An experiment name stands for all it sets, so beside it
    only keys that vary among runs of the same experiment are kept."""
    if "experiment" not in varying:
        return list(varying)
    groups: dict[Any, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.hyperparameters.get("experiment"), []).append(run)
    within = [key for key in varying if key != "experiment" and any(
        len({str(r.hyperparameters.get(key)) for r in group}) > 1 for group in groups.values())]
    return ["experiment", *within]


def run_label(run: Run, keys: Sequence[str]) -> str:
    """What tells this run apart from the others, e.g. 'optimizer=adam batch_size=64'."""
    parts = [f"{key.rsplit('.', 1)[-1]}={run.hyperparameters.get(key)}" for key in keys]
    return " ".join(parts) or run.path.name


def learning_curves(runs: Sequence[Run], varying: Sequence[str], path: Path) -> None:
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 5))
    for run in runs:
        if run.metrics.empty:
            continue
        label = run_label(run, varying)
        acc_ax.plot(run.metrics["epoch"], run.metrics["test_acc"], marker="o", label=label)
        loss_ax.plot(run.metrics["epoch"], run.metrics["train_loss"], marker="o", label=label)
    acc_ax.set(title="Test accuracy", xlabel="epoch", ylabel="top-1 accuracy")
    for ax in (acc_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set(title="Train loss", xlabel="epoch", ylabel="cross-entropy")
    handles, labels = acc_ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize="small",
                   bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.05 + 0.025 * ((len(labels) + 1) // 2), 1, 1))
    write_atomic(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def final_scores(runs: Sequence[Run], varying: Sequence[str], path: Path) -> None:
    """Final accuracy and F1 per run; where seeds replicate a setting, per setting: the mean over
    its seeds with its 95% interval as an error bar."""
    groups = list(replicate_groups(runs, varying).values())
    replicated = any(len(group) > 1 for group in groups)
    if not replicated:
        groups = [[run] for run in runs]
    keys = [key for key in varying if key != "seed"] if replicated else list(varying)
    labels, means, errors = [], {"accuracy": [], "macro-F1": []}, {"accuracy": [], "macro-F1": []}
    for group in groups:
        done = [run for run in group if run.status in SUCCEEDED] or group
        labels.append(run_label(group[0], keys) + (f" (n={len(done)})" if replicated else ""))
        for name, column in (("accuracy", "final_acc"), ("macro-F1", "final_f1")):
            summary = interval([v for v in (score(r, column) for r in done) if v is not None]
                               or [float("nan")])
            means[name].append(summary.mean)
            errors[name].append(0.0 if math.isnan(summary.low) else summary.mean - summary.low)
    frame = pd.DataFrame(means, index=labels).astype(float)
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.45 * len(groups)))
    frame.iloc[::-1].plot.barh(ax=ax, xerr=pd.DataFrame(errors, index=labels).iloc[::-1]
                               if replicated else None, capsize=3)  # first on top
    title = "Final test scores per setting, mean over seeds (95% interval)" if replicated \
        else "Final test scores per run"
    ax.set(title=title, xlabel="score")
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def superclass_heatmap(run: Run, varying: Sequence[str], path: Path) -> None:
    """Row-normalized confusion over the 20 superclasses: where each superclass's images went."""
    counts = pd.read_csv(run.path / CONFUSION_FILE, index_col=0)
    recall = counts.div(counts.sum(axis=1).where(lambda s: s > 0), axis=0)
    fig, ax = plt.subplots(figsize=(10, 9))
    image = ax.imshow(recall.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(counts.columns)), counts.columns, rotation=90, fontsize="small")
    ax.set_yticks(range(len(counts.index)), counts.index, fontsize="small")
    ax.set(xlabel="predicted superclass", ylabel="true superclass",
           title=f"Best run: {run_label(run, varying)}")
    fig.colorbar(image, ax=ax, label="fraction of the true superclass")
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def draw_all(runs: Sequence[Run], varying: Sequence[str], out_dir: Path) -> list[Path]:
    """Learning curves, final scores, and the best run's superclass confusion; returns the files."""
    runs = [run for run in runs if run.status != Status.not_started]
    if not runs:
        return []
    varying = label_keys(runs, varying)
    written = [out_dir / "learning_curves.png", out_dir / "final_scores.png"]
    learning_curves(runs, varying, written[0])
    final_scores(runs, varying, written[1])
    scored = [r for r in runs if (r.summary.get("final") or {}).get("test_acc") is not None
              and (r.path / CONFUSION_FILE).is_file()]
    if scored:
        best = max(scored, key=lambda r: r.summary["final"]["test_acc"])
        written.append(out_dir / "confusion_superclass.png")
        superclass_heatmap(best, varying, written[-1])
    return written
