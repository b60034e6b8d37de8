"""Many runs into one table: results.csv (a row per run, planned ones included), results.md (ranked by
selection score), summary.* (seeds as replicates), effects.*, the notebook comparison, and plots."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from alexnet import scores
from alexnet.files import write_text_atomic
from alexnet.results import effects as effect_analysis
from alexnet.results import effects_plot
from alexnet.results import plots as plotting
from alexnet.results.collect import Collection, Run, collect, varying_columns
from alexnet.results.planned import MULTIRUN_FILE
from alexnet.results.stats import NO_SPREAD, SUMMARIZED, column_interval, summary_table
from alexnet.scores import Status

log = logging.getLogger(__name__)

DEFAULT_SWEEPS = Path("outputs") / "sweeps"
SCALE = ("model.name", "data.train_subset", "data.test_subset")  # never pooled, even where None is "all"
METRIC_COLUMNS = ["score", "score_metric", "final_acc", "best_acc", "best_epoch", "final_top5",
                  "final_f1", "final_train_loss", "final_test_loss", "epochs_done", "epochs_planned",
                  "wall_time_s", "images_per_s", "status", "overrides", "run_dir"]
VAL_COLUMNS = ["final_val_acc", "best_val_acc"]  # with a validation split, after the test loss
RANKING_NOTE = ("Ranked by `score`, each run's selection score: the final value of its "
                "`score_metric` (val_acc where it holds out a validation split, else test_acc). It "
                "is blank where the run's scores do not count (failed, diverged, pruned, unfinished); "
                "the test scores beside it are shown as the run left them.")


def results_table(runs: Sequence[Run], relative_to: Path | None = None) -> pd.DataFrame:
    """A row per run: varying settings, selection score (blank if it does not count), metrics, status."""
    columns = varying_columns(runs)
    rows = []
    for run in runs:
        summary = run.summary
        speed = run.metrics["images_per_s"].mean() if "images_per_s" in run.metrics else None
        inside = relative_to is not None and run.path.is_relative_to(relative_to)
        rows.append({
            **{c: run.hyperparameters.get(c) for c in columns},
            "score": scores.selection_score(summary),
            "score_metric": scores.selection_metric(summary["config"]) if summary.get("config") else None,
            "final_acc": scores.value(summary, "test_acc"),
            "best_acc": scores.value(summary, "test_acc", "best"),
            "best_epoch": (summary.get("best") or {}).get("epoch"),
            "final_top5": scores.value(summary, "test_top5"), "final_f1": scores.value(summary, "test_f1"),
            "final_train_loss": scores.value(summary, "train_loss"),
            "final_test_loss": scores.value(summary, "test_loss"),
            **({"final_val_acc": scores.value(summary, "val_acc"),
                "best_val_acc": scores.value(summary, "val_acc", "best")}
               if "val_acc" in (summary.get("final") or {}) else {}),
            "epochs_done": summary.get("epochs_done", len(run.metrics)),
            "epochs_planned": summary.get("epochs_planned"),
            "wall_time_s": summary.get("wall_time_s"), "images_per_s": speed, "status": run.status,
            "overrides": " ".join(run.overrides),
            "run_dir": str(run.path.relative_to(relative_to) if inside else run.path),
        })
    at = METRIC_COLUMNS.index("final_test_loss") + 1
    val = VAL_COLUMNS if any("final_val_acc" in row for row in rows) else []
    return pd.DataFrame(rows, columns=[*columns, *METRIC_COLUMNS[:at], *val, *METRIC_COLUMNS[at:]])


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Best selection score first (lower for a loss); runs whose scores do not count last, in table order."""
    sign = [1.0 if scores.higher_is_better(m) else -1.0 for m in table["score_metric"].fillna("")]
    key = pd.Series(pd.to_numeric(table["score"], errors="coerce").to_numpy() * sign, index=table.index)
    return table.loc[key.sort_values(ascending=False, na_position="last", kind="stable").index]


def notebook_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Each notebook experiment we ran beside what it reported: our seeds' mean, 95% CI and 95% prediction
    interval of one more run, which judges the notebook's single run; another scale is a row of its own."""
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
        done = [run for run in group if scores.counts(run.summary)]
        row: dict[str, Any] = {
            "run": name, "transforms": "+".join(transforms) or "none",
            "normalization": bool(h.get("augmentation.normalize")), "batch_size": h.get("batch_size"),
            "lr": h.get("optimizer.lr"), "optimizer": h.get("optimizer"), "epochs": h.get("epochs"),
            "model": h.get("model.name"), "logit_relu": logit_relu,
            "train_subset": h.get("data.train_subset"), "test_subset": h.get("data.test_subset"),
            "n": len(done),
        }
        for ours, column in (("f1", "final_f1"), ("accuracy", "final_acc")):
            summary = column_interval(done, column)
            theirs = notebook.get(ours)
            inside = (None if math.isnan(summary.predict_low) or theirs is None
                      else bool(summary.predict_low <= theirs <= summary.predict_high))
            difference = None if theirs is None or math.isnan(summary.mean) else summary.mean - theirs
            row |= {ours: summary.mean, f"{ours}_ci95_low": summary.low, f"{ours}_ci95_high": summary.high,
                    f"{ours}_pi95_low": summary.predict_low, f"{ours}_pi95_high": summary.predict_high,
                    f"notebook_{ours}": theirs, f"{ours}_diff": difference,
                    f"notebook_{ours}_in_pi95": inside}
        row["status"] = " ".join(sorted({run.status for run in group}))
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["run", "logit_relu", "model", "train_subset"], ignore_index=True,
                             na_position="first") if rows else table


def markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table; floats to 4 significant digits, missing values blank."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.4g}"
        return "" if value is None else str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def compact_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Each score as `mean [95% CI of the mean]` (the CI needs n > 1 and some spread between runs)."""
    if summary.empty:
        return summary
    table = summary.loc[:, :"score_metric"].copy()
    for column in SUMMARIZED:
        table[column] = [
            "" if pd.isna(mean) else f"{mean:.4f} (all {n} equal)" if n > 1 and sd <= NO_SPREAD else
            f"{mean:.4f}" if pd.isna(low) else f"{mean:.4f} [{low:.4f}, {high:.4f}]"
            for mean, sd, low, high, n in zip(
                summary[f"{column}_mean"], summary[f"{column}_sd"], summary[f"{column}_ci95_low"],
                summary[f"{column}_ci95_high"], summary["n"], strict=True)]
    return table


def newest_sweep(base: Path = DEFAULT_SWEEPS) -> Path:
    """The folder of the newest multirun.yaml under `base` (one per sweep start), dated or named."""
    starts = [p for p in base.rglob(MULTIRUN_FILE) if p.is_file()] if base.is_dir() else []
    if not starts:
        raise FileNotFoundError(
            f"no sweep found under {base}/; run one with `python -m alexnet.train -m ...` or name "
            "the sweep or run directories: python -m alexnet.aggregate DIR [DIR ...]")
    return max(starts, key=lambda p: p.stat().st_mtime_ns).parent


NOTEBOOK_NOTE = ("Our mean over the runs whose scores count (n), with the 95% confidence interval of "
                 "that mean (ci95) and the 95% prediction interval of one more run (pi95), both "
                 "Student t, cut to 0..1. The notebook's value is a single run: `notebook_*_in_pi95` "
                 "says whether it lies inside the prediction interval (blank for n < 2, or where our "
                 "runs all scored alike).")
SUMMARY_NOTE = ("A row per setting (runs that differ only in seed); n counts the runs whose scores "
                "count. Each score: mean [95% confidence interval of the mean] (Student t, cut to "
                "0..1); summary.csv also has each sd and the 95% prediction interval (pi95) of one "
                "more run. `score` is the selection score (`score_metric`).")


def aggregate(roots: Sequence[Path], out_dir: Path, compare_notebook: bool = False, plots: bool = True,
              stale_after_s: float | None = None, margin: float | None = None) -> Collection:
    """Write the tables and plots into out_dir, each replaced whole (a reader never sees half a table)."""
    collection = collect(roots, stale_after_s)
    for path, reason in collection.skipped:
        log.warning("skipped %s: %s", path, reason)
    if not collection.runs:
        raise FileNotFoundError(f"no readable run under {', '.join(map(str, roots))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    table = results_table(collection.runs, relative_to=out_dir)
    write_text_atomic(out_dir / "results.csv", table.to_csv(index=False))
    write_text_atomic(out_dir / "results.md",
                      RANKING_NOTE + "\n\n" + markdown(ranked(table).drop(columns=["overrides"])))
    summary = summary_table(collection.runs, varying_columns(collection.runs))
    write_text_atomic(out_dir / "summary.csv", summary.to_csv(index=False))
    write_text_atomic(out_dir / "summary.md", SUMMARY_NOTE + "\n\n" + markdown(compact_summary(summary)))
    effects = effect_analysis.analyse(collection.runs, effect_analysis.margin_of(collection.runs)
                                      if margin is None else margin)
    write_text_atomic(out_dir / "effects.csv", effect_analysis.table(effects).to_csv(index=False))
    write_text_atomic(out_dir / "effects.md", effect_analysis.markdown(effects))
    comparison = notebook_table(collection.runs) if compare_notebook else pd.DataFrame()
    if not comparison.empty:
        write_text_atomic(out_dir / "notebook_comparison.csv", comparison.to_csv(index=False))
        write_text_atomic(out_dir / "notebook_comparison.md", NOTEBOOK_NOTE + "\n\n" + markdown(comparison))
    if plots:
        plotting.draw_all(collection.runs, varying_columns(collection.runs), out_dir)
        effects_plot.draw(effects, out_dir / effects_plot.FILE)
        best = scores.best([run.summary for run in collection.runs])  # its pictures beside the table
        plotting.best_run_pictures(None if best is None else collection.runs[best].path, out_dir)
    return collection
