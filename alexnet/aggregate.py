"""Gather finished, failed and running runs into one table: `python -m alexnet.aggregate [DIR ...]`.

Writes results.csv (a row per run), results.md (the same sorted by final accuracy) and plots
into the sweep directory, or --out. Also runs by itself at the end of every multirun."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alexnet.run_record import METRICS_FILE, RESULTS_FILE

log = logging.getLogger(__name__)

DEFAULT_SWEEPS = Path("outputs") / "sweeps"
# Config keys that describe a run but are not hyperparameters.
NOT_HYPERPARAMETERS = ("notebook.",)
# Hyperparameters first in the table, in this order, when they vary.
LEADING = ["experiment", "model.name", "augmentation.crop", "augmentation.flip",
           "augmentation.normalize", "optimizer", "optimizer.lr", "batch_size", "epochs",
           "model.logit_relu", "seed"]
METRIC_COLUMNS = ["final_acc", "best_acc", "best_epoch", "final_top5", "final_f1",
                  "final_train_loss", "final_test_loss", "epochs_done", "epochs_planned",
                  "wall_time_s", "images_per_s", "status", "overrides", "run_dir"]


@dataclass
class Run:
    """One run directory as read from disk."""

    path: Path
    summary: dict[str, Any]
    hyperparameters: dict[str, Any]
    metrics: pd.DataFrame
    notebook: dict[str, Any] | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class Collection:
    runs: list[Run]
    skipped: list[tuple[Path, str]]


def find_run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every directory under the roots that a run wrote (results.json or Hydra's .hydra/)."""
    found: set[Path] = set()
    for root in roots:
        for marker in [*root.rglob(RESULTS_FILE), *root.rglob(".hydra")]:
            found.add(marker.parent)
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in path.parts]


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys for the hyperparameters of a resolved config; the optimizer by its short name."""
    flat = pd.json_normalize(config, sep=".").iloc[0].to_dict()
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith(NOT_HYPERPARAMETERS):
            continue
        if key == "optimizer._target_":
            key, value = "optimizer", str(value).rsplit(".", 1)[-1].lower()
        out[key] = str(value) if isinstance(value, list) else value
    return out


def read_run(path: Path) -> Run:
    """Read one run; raises ValueError naming what is missing or unreadable."""
    results = path / RESULTS_FILE
    if not results.is_file():
        raise ValueError(f"no {RESULTS_FILE} (the run never started, or is not one of ours)")
    try:
        summary = json.loads(results.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{RESULTS_FILE} is not valid JSON ({err})") from err
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise ValueError(f"{RESULTS_FILE} lacks the resolved config")
    metrics_path = path / METRICS_FILE
    try:
        metrics = pd.read_csv(metrics_path) if metrics_path.is_file() else pd.DataFrame()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{METRICS_FILE} is unreadable ({err})") from err
    overrides_path = path / ".hydra" / "overrides.yaml"
    overrides = (list(OmegaConf.load(overrides_path)) if overrides_path.is_file()
                 else list(summary.get("overrides") or []))
    hyperparameters = flatten(summary["config"])
    experiment = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), None)
    if experiment is not None:
        hyperparameters["experiment"] = experiment
    return Run(path, summary, hyperparameters, metrics, summary["config"].get("notebook"),
               overrides)


def collect(roots: Sequence[Path]) -> Collection:
    runs, skipped = [], []
    for path in find_run_dirs(roots):
        try:
            runs.append(read_run(path))
        except (ValueError, OSError) as err:
            skipped.append((path, str(err)))
    return Collection(runs, skipped)


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
            "epochs_done": run.summary.get("epochs_done", len(run.metrics)),
            "epochs_planned": run.summary.get("epochs_planned"),
            "wall_time_s": run.summary.get("wall_time_s"), "images_per_s": speed,
            "status": run.summary.get("status", "unknown"),
            "overrides": " ".join(run.overrides), "run_dir": str(where),
        })
    return pd.DataFrame(rows, columns=[*columns, *METRIC_COLUMNS])


def notebook_table(runs: Sequence[Run]) -> pd.DataFrame:
    """The notebook's columns for every run of one of its experiments, beside what it reported."""
    rows = []
    for run in runs:
        if not run.notebook:
            continue
        h, final = run.hyperparameters, run.summary.get("final") or {}
        transforms = [name for name in ("crop", "flip") if h.get(f"augmentation.{name}")]
        row = {
            "run": run.notebook.get("run"),
            "transforms": "+".join(transforms) or "none",
            "normalization": bool(h.get("augmentation.normalize")),
            "batch_size": h.get("batch_size"), "lr": h.get("optimizer.lr"),
            "optimizer": h.get("optimizer"), "epochs": h.get("epochs"),
            "model": h.get("model.name"), "logit_relu": h.get("model.logit_relu"),
            "f1": final.get("test_f1"), "accuracy": final.get("test_acc"),
            "notebook_f1": run.notebook.get("f1"), "notebook_accuracy": run.notebook.get("accuracy"),
            "status": run.summary.get("status"),
        }
        row["f1_diff"] = _difference(row["f1"], row["notebook_f1"])
        row["accuracy_diff"] = _difference(row["accuracy"], row["notebook_accuracy"])
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["run", "logit_relu"], ignore_index=True) if rows else table


def _difference(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else ours - theirs


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


def newest_sweep(base: Path = DEFAULT_SWEEPS) -> Path:
    """The most recent sweep directory (outputs/sweeps/<date>/<time>)."""
    sweeps = sorted(p for p in base.glob("*/*") if p.is_dir())
    if not sweeps:
        raise FileNotFoundError(
            f"no sweep found under {base}/; run one with `python -m alexnet.train -m ...` or name "
            "the run directories: python -m alexnet.aggregate DIR [DIR ...]")
    return sweeps[-1]


def aggregate(roots: Sequence[Path], out_dir: Path, compare_notebook: bool = False,
              plots: bool = True) -> Collection:
    """Write results.csv, results.md (and notebook_comparison.*, plots) into out_dir."""
    from alexnet import plots as plotting  # matplotlib only when pictures are drawn

    collection = collect(roots)
    for path, reason in collection.skipped:
        log.warning("skipped %s: %s", path, reason)
    if not collection.runs:
        raise FileNotFoundError(f"no readable run under {', '.join(map(str, roots))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    table = results_table(collection.runs, relative_to=out_dir)
    table.to_csv(out_dir / "results.csv", index=False)
    ranked = table.sort_values("final_acc", ascending=False, na_position="last")
    (out_dir / "results.md").write_text(markdown(ranked.drop(columns=["overrides"])))
    comparison = notebook_table(collection.runs) if compare_notebook else pd.DataFrame()
    if not comparison.empty:
        comparison.to_csv(out_dir / "notebook_comparison.csv", index=False)
        (out_dir / "notebook_comparison.md").write_text(markdown(comparison))
    if plots:
        plotting.draw_all(collection.runs, varying_columns(collection.runs), out_dir)
    return collection


class AggregateOnMultirunEnd(Callback):
    """Hydra callback: aggregate the sweep directory when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            aggregate([sweep_dir], sweep_dir, compare_notebook=True)
            log.info("results: %s", sweep_dir / "results.csv")
        except Exception:  # the runs are on disk whatever happens here; say so and finish
            log.exception("aggregating %s failed; rerun python -m alexnet.aggregate %s",
                          sweep_dir, sweep_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexnet.aggregate", description=__doc__)
    parser.add_argument("dirs", nargs="*", type=Path,
                        help="sweep dirs, run dirs, or parents of many (default: newest sweep)")
    parser.add_argument("--out", type=Path, help="where to write (default: the single DIR)")
    parser.add_argument("--compare-notebook", action="store_true",
                        help="also print the notebook's table beside its reported F1/accuracy")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        roots = args.dirs or [newest_sweep()]
        missing = [str(d) for d in roots if not d.is_dir()]
        if missing:
            raise FileNotFoundError(f"not a directory: {', '.join(missing)}")
        out_dir = args.out or (roots[0] if len(roots) == 1 else None)
        if out_dir is None:
            raise FileNotFoundError("several DIRs given: say where to write with --out DIR")
        aggregate(roots, out_dir, args.compare_notebook, plots=not args.no_plots)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((out_dir / "results.md").read_text())
    if args.compare_notebook:
        comparison = out_dir / "notebook_comparison.md"
        print(comparison.read_text() if comparison.is_file() else
              "no run here is one of the notebook's experiments (experiment=alexnet1..alexnet8)")
    print(f"wrote {out_dir / 'results.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
