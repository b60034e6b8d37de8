"""Turn many runs into one table: results.csv (a row per run, planned ones included), results.md
(the same ranked by final accuracy), the notebook comparison, and plots."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from alexnet.files import write_text_atomic
from alexnet.results import plots as plotting
from alexnet.results.collect import Collection, Run, collect
from alexnet.results.planned import MULTIRUN_FILE
from alexnet.results.stats import SCORES, interval, score, summary_table
from alexnet.run.status import SUCCEEDED, Status

log = logging.getLogger(__name__)

DEFAULT_SWEEPS = Path("outputs") / "sweeps"
# Hyperparameters first in the table, in this order, when they vary.
LEADING = ["experiment", "model.name", "augmentation.crop", "augmentation.flip",
           "augmentation.normalize", "optimizer", "optimizer.lr", "batch_size", "epochs",
           "model.logit_relu", "seed"]
# What sets the scale of a run: never pooled as repeats, even where None stands for "all".
SCALE = ("model.name", "data.train_subset", "data.test_subset")
METRIC_COLUMNS = ["final_acc", "best_acc", "best_epoch", "final_top5", "final_f1",
                  "final_train_loss", "final_test_loss", "epochs_done", "epochs_planned",
                  "wall_time_s", "images_per_s", "status", "overrides", "run_dir"]
# ... and, where runs had a validation split (data.val_split), its scores after the test loss
VAL_COLUMNS = ["final_val_acc", "best_val_acc"]


def varying_columns(runs: Sequence[Run]) -> list[str]:
    """Hyperparameters whose value differs between runs: leading ones first, then the rest."""
    # A key only some runs have (momentum beside Adam) varies only if its present values differ.
    table = pd.DataFrame([r.hyperparameters for r in runs])
    varying = [c for c in table.columns if table[c].dropna().astype(str).nunique() > 1]
    return [c for c in LEADING if c in varying] + sorted(c for c in varying if c not in LEADING)


def results_table(runs: Sequence[Run], relative_to: Path | None = None) -> pd.DataFrame:
    """A row per run: the varying hyperparameters, then final/best metrics and status."""
    columns = varying_columns(runs)
    rows = []
    for run in runs:
        final = run.summary.get("final") or {}
        best = run.summary.get("best") or {}
        speed = run.metrics["images_per_s"].mean() if "images_per_s" in run.metrics else None
        where = run.path
        if relative_to is not None and run.path.is_relative_to(relative_to):
            where = run.path.relative_to(relative_to)
        rows.append({
            **{c: run.hyperparameters.get(c) for c in columns},
            "final_acc": final.get("test_acc"), "best_acc": best.get("test_acc"),
            "best_epoch": best.get("epoch"), "final_top5": final.get("test_top5"),
            "final_f1": final.get("test_f1"), "final_train_loss": final.get("train_loss"),
            "final_test_loss": final.get("test_loss"),
            **({"final_val_acc": final.get("val_acc"), "best_val_acc": best.get("val_acc")}
               if "val_acc" in final else {}),
            "epochs_done": run.summary.get("epochs_done", len(run.metrics)),
            "epochs_planned": run.summary.get("epochs_planned"),
            "wall_time_s": run.summary.get("wall_time_s"), "images_per_s": speed,
            "status": run.status,
            "overrides": " ".join(run.overrides), "run_dir": str(where),
        })
    at = METRIC_COLUMNS.index("final_test_loss") + 1
    val = VAL_COLUMNS if any("final_val_acc" in row for row in rows) else []
    return pd.DataFrame(rows, columns=[*columns, *METRIC_COLUMNS[:at], *val, *METRIC_COLUMNS[at:]])


def notebook_table(runs: Sequence[Run]) -> pd.DataFrame:
    """The notebook's columns for each of its experiments we ran, beside what it reported. Runs of
    one experiment that differ only in seed are replicates: their mean, a 95% interval (n > 1) and
    whether the notebook's single value lies inside it. Runs of one experiment at another scale
    (model, data subsets, or any other hyperparameter) are a row of their own."""
    others = sorted({*varying_columns(runs), *SCALE} - {"seed", "experiment"})
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        if run.notebook and run.status != Status.not_started:
            key = (run.notebook.get("run"), run.hyperparameters.get("model.logit_relu"),
                   *(str(run.hyperparameters.get(c)) for c in others))
            groups.setdefault(key, []).append(run)
    rows = []
    for (name, logit_relu, *_), group in groups.items():
        h, notebook = group[0].hyperparameters, group[0].notebook or {}
        transforms = [t for t in ("crop", "flip") if h.get(f"augmentation.{t}")]
        row: dict[str, Any] = {
            "run": name, "transforms": "+".join(transforms) or "none",
            "normalization": bool(h.get("augmentation.normalize")),
            "batch_size": h.get("batch_size"), "lr": h.get("optimizer.lr"),
            "optimizer": h.get("optimizer"), "epochs": h.get("epochs"),
            "model": h.get("model.name"), "logit_relu": logit_relu,
            "train_subset": h.get("data.train_subset"), "test_subset": h.get("data.test_subset"),
        }
        done = [run for run in group if run.status in SUCCEEDED]
        row["n"] = len(done)
        for ours, column in (("f1", "final_f1"), ("accuracy", "final_acc")):
            summary = interval([score(r, column) for r in done if score(r, column) is not None])
            theirs = notebook.get(ours)
            inside = (None if math.isnan(summary.low) or theirs is None
                      else bool(summary.low <= theirs <= summary.high))
            row |= {ours: summary.mean, f"{ours}_ci95_low": summary.low,
                    f"{ours}_ci95_high": summary.high, f"notebook_{ours}": theirs,
                    f"{ours}_diff": _difference(summary.mean, theirs),
                    f"notebook_{ours}_inside": inside}
        row["status"] = " ".join(sorted({run.status for run in group}))
        rows.append(row)
    table = pd.DataFrame(rows)
    order = ["run", "logit_relu", "model", "train_subset"]
    return table.sort_values(order, ignore_index=True, na_position="first") if rows else table


def _difference(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or math.isnan(ours):
        return None
    return ours - theirs


def markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table; floats to 4 significant digits, missing values blank."""
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def compact_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """summary.csv for reading: each score as `mean [95% interval]` (the interval needs n > 1)."""
    table = summary.loc[:, :"seeds"].copy() if not summary.empty else summary
    for column in SCORES:
        if f"{column}_mean" not in summary:
            continue
        table[column] = [
            "" if pd.isna(mean) else f"{mean:.4f}" if pd.isna(low) else
            f"{mean:.4f} [{low:.4f}, {high:.4f}]"
            for mean, low, high in zip(summary[f"{column}_mean"], summary[f"{column}_ci95_low"],
                                       summary[f"{column}_ci95_high"], strict=True)]
    return table


def newest_sweep(base: Path = DEFAULT_SWEEPS) -> Path:
    """The sweep under `base` started last: the folder of the newest multirun.yaml (Hydra writes
    one per sweep start), wherever hydra.sweep.dir put it (dated or named)."""
    starts = [p for p in base.rglob(MULTIRUN_FILE) if p.is_file()] if base.is_dir() else []
    if not starts:
        raise FileNotFoundError(
            f"no sweep found under {base}/; run one with `python -m alexnet.train -m ...` or name "
            "the sweep or run directories: python -m alexnet.aggregate DIR [DIR ...]")
    return max(starts, key=lambda p: p.stat().st_mtime_ns).parent


def aggregate(roots: Sequence[Path], out_dir: Path, compare_notebook: bool = False,
              plots: bool = True, stale_after_s: float | None = None) -> Collection:
    """Write results.csv, results.md, summary.csv/.md (replicates over seeds), and
    notebook_comparison.* and plots, into out_dir, each file replaced whole (a reader never sees
    half a table)."""
    collection = collect(roots, stale_after_s)
    for path, reason in collection.skipped:
        log.warning("skipped %s: %s", path, reason)
    if not collection.runs:
        raise FileNotFoundError(f"no readable run under {', '.join(map(str, roots))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    table = results_table(collection.runs, relative_to=out_dir)
    write_text_atomic(out_dir / "results.csv", table.to_csv(index=False))
    ranked = table.sort_values("final_acc", ascending=False, na_position="last")
    write_text_atomic(out_dir / "results.md", markdown(ranked.drop(columns=["overrides"])))
    summary = summary_table(collection.runs, varying_columns(collection.runs))
    write_text_atomic(out_dir / "summary.csv", summary.to_csv(index=False))
    write_text_atomic(out_dir / "summary.md", markdown(compact_summary(summary)))
    comparison = notebook_table(collection.runs) if compare_notebook else pd.DataFrame()
    if not comparison.empty:
        write_text_atomic(out_dir / "notebook_comparison.csv", comparison.to_csv(index=False))
        write_text_atomic(out_dir / "notebook_comparison.md", markdown(comparison))
    if plots:
        plotting.draw_all(collection.runs, varying_columns(collection.runs), out_dir)
    return collection
