"""Seeds as replicates: grouping, intervals (against scipy), the settings comparison (through the
real CLI), and the summary and notebook tables the aggregator writes, all on the selection score
that alexnet/scores.py decides."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from alexnet.results.collect import Run, varying_columns
from alexnet.results.report import aggregate, notebook_table
from alexnet.results.stats import column_interval, compare_settings, interval, replicate_groups
from alexnet.run.record import RunRecord
from helpers import run_cli


def run(acc: float, status: str = "completed", notebook: dict | None = None, **hyper) -> Run:
    final = {"test_acc": acc, "test_f1": acc / 2, "test_top5": min(1.0, 3 * acc)}
    summary = {"status": status, "final": final, "best": final, "config": {}}
    return Run(path=Path("x"), summary=summary, hyperparameters=hyper, metrics=pd.DataFrame(),
               notebook=notebook)


def record(root: Path, name: str, config: dict, scores: dict, status: str = "completed") -> None:
    """A run's record as training leaves it: one epoch with these scores, then its end."""
    entry = RunRecord(root / name, config, [f"{k}={v}" for k, v in config.items()
                                            if not isinstance(v, dict)])
    entry.add_epoch({"epoch": 1, "train_loss": 4.0, "test_loss": 4.0, "test_top5": 0.5,
                     "test_f1": 0.05, "images_per_s": 100.0, **scores})
    entry.finish(status)


def sgd(seed: int, **more) -> dict:
    return {"optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}, "seed": seed, "epochs": 1, **more}


def test_intervals_are_scipys_t_intervals_for_the_mean_and_for_one_more_run():
    values = [0.31, 0.29, 0.35, 0.30]
    ours = interval(values)
    mean, sd = sum(values) / 4, stats.tstd(values)
    assert ours.n == 4 and math.isclose(ours.sd, sd)
    low, high = stats.t.interval(0.95, 3, loc=mean, scale=stats.sem(values))
    assert math.isclose(ours.low, low) and math.isclose(ours.high, high)
    # one more run: mean +- t * sd * sqrt(1 + 1/n), about twice as wide as the mean's at n = 3
    t = stats.t.ppf(0.975, 3)
    assert math.isclose(ours.predict_low, mean - t * sd * math.sqrt(1 + 1 / 4))
    assert math.isclose(ours.predict_high, mean + t * sd * math.sqrt(1 + 1 / 4))
    three = interval(values[:3])
    assert (three.predict_high - three.predict_low) / (three.high - three.low) == pytest.approx(2.0)
    single = interval([0.3])
    assert single.mean == 0.3 and math.isnan(single.low) and math.isnan(single.sd)
    assert math.isnan(single.predict_low)


def test_an_accuracys_interval_stops_at_zero():
    # the committed notebook_cpu_seeds table once said -0.0089 for AlexNet 2's accuracy
    runs = [run(acc) for acc in (0.039, 0.032, 0.011)]
    accuracy = column_interval(runs, "final_acc")
    unbounded = interval([0.039, 0.032, 0.011])
    assert unbounded.low < 0 and unbounded.predict_low < 0  # what the t interval alone says
    assert accuracy.low == 0.0 and accuracy.predict_low == 0.0
    assert accuracy.high == unbounded.high and accuracy.mean == unbounded.mean


def test_runs_that_differ_only_in_seed_group_and_any_other_difference_splits():
    runs = [run(0.1, optimizer="sgd", seed=s, batch_size=32) for s in (0, 1, 2)]
    runs += [run(0.2, optimizer="adam", seed=s, batch_size=32) for s in (0, 1)]
    runs += [run(0.3, optimizer="sgd", seed=0, batch_size=64)]
    groups = replicate_groups(runs, varying_columns(runs))
    assert sorted(len(g) for g in groups.values()) == [1, 2, 3]
    assert all(len({(r.hyperparameters["optimizer"], r.hyperparameters["batch_size"])
                    for r in g}) == 1 for g in groups.values())


def test_paired_and_welch_comparisons_match_scipy():
    a = [0.30, 0.32, 0.35]
    b = [0.28, 0.31, 0.30]
    runs = [run(v, normalize=True, seed=s) for s, v in enumerate(a)]
    runs += [run(v, normalize=False, seed=s) for s, v in enumerate(b)]
    paired = compare_settings(runs, "normalize", varying_columns(runs))
    assert paired.test == "paired t-test" and paired.values == ("True", "False")
    assert paired.metric == "test_acc"  # the selection score of runs without a validation split
    reference = stats.ttest_rel(a, b)
    assert math.isclose(paired.p_value, reference.pvalue)
    assert math.isclose(paired.low, reference.confidence_interval().low)
    assert math.isclose(paired.difference, sum(a) / 3 - sum(b) / 3)
    unpaired = runs[:3] + [run(v, normalize=False, seed=s + 10) for s, v in enumerate(b)]
    welch = compare_settings(unpaired, "normalize", varying_columns(unpaired))
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert welch.test == "Welch t-test" and math.isclose(welch.p_value, reference.pvalue)
    assert math.isclose(welch.low, reference.confidence_interval().low)
    with pytest.raises(ValueError, match="needs exactly two"):
        compare_settings(runs[:3], "normalize", ["normalize", "seed"])


def test_an_unpaired_comparison_of_runs_that_differ_in_more_than_seed_is_refused_unless_pooled():
    runs = [run(0.30 + 0.01 * s, normalize=True, seed=s, batch_size=32) for s in range(3)]
    runs += [run(0.20 + 0.01 * s, normalize=False, seed=s, batch_size=64) for s in range(2)]
    runs += [run(0.10, "diverged", normalize=False, seed=2, batch_size=64)]  # breaks the pairs
    with pytest.raises(ValueError, match="differ in batch_size.*--pool"):
        compare_settings(runs, "normalize", varying_columns(runs))
    pooled = compare_settings(runs, "normalize", varying_columns(runs), pool=True)
    assert pooled.test == "Welch t-test" and pooled.n == (3, 2)


def test_the_notebook_table_keeps_runs_at_other_scales_apart():
    notebook = {"run": "AlexNet 7", "f1": 0.45, "accuracy": 0.482}
    runs = [run(acc, notebook=notebook, experiment="alexnet7", seed=s,
                **{"data.train_subset": subset, "model.logit_relu": False})
            for s, (acc, subset) in enumerate([(0.1, 5000), (0.12, 5000), (0.4, None)])]
    table = notebook_table(runs)
    assert sorted(zip(table["train_subset"].fillna(0), table["n"], strict=True)) == [
        (0, 1), (5000, 2)]


def test_the_notebooks_single_run_is_judged_against_the_prediction_interval():
    notebook = {"run": "AlexNet 7", "f1": 0.45, "accuracy": 0.51}
    accuracies = [0.47, 0.48, 0.49]  # 0.51 lies outside their mean's interval, not a run's
    runs = [run(acc, notebook=notebook, experiment="alexnet7", seed=s, **{"model.logit_relu": True})
            for s, acc in enumerate(accuracies)]
    row = notebook_table(runs).iloc[0]
    summary = interval(accuracies)
    assert row["n"] == 3 and math.isclose(row["accuracy"], summary.mean)
    assert math.isclose(row["accuracy_ci95_high"], summary.high) and row["accuracy_ci95_high"] < 0.51
    assert math.isclose(row["accuracy_pi95_low"], summary.predict_low)
    assert row["accuracy_pi95_low"] < 0.51 < row["accuracy_pi95_high"]
    assert row["notebook_accuracy_in_pi95"]
    assert not row["notebook_f1_in_pi95"]  # our F1 here is half the accuracy: far from 0.45
    frozen = [run(0.009, notebook=notebook, experiment="alexnet8", seed=s) for s in range(3)]
    row = notebook_table(frozen).iloc[0]  # three identical runs: no spread to judge by
    assert pd.isna(row["accuracy_pi95_low"]) and row["notebook_accuracy_in_pi95"] is None


def test_the_summary_is_of_the_selection_score_and_counts_only_runs_whose_scores_count(tmp_path):
    held_out = {"data": {"val_split": 100}}
    for seed, (val, test) in enumerate([(0.30, 0.10), (0.32, 0.12), (0.34, 0.14)]):
        record(tmp_path, f"s{seed}", sgd(seed, **held_out), {"val_acc": val, "test_acc": test})
    record(tmp_path, "pruned", sgd(3, **held_out), {"val_acc": 0.9, "test_acc": 0.9}, "pruned")
    record(tmp_path, "failed", sgd(4, **held_out), {"val_acc": 0.9, "test_acc": 0.9}, "failed")
    aggregate([tmp_path], tmp_path, plots=False)
    row = pd.read_csv(tmp_path / "summary.csv").iloc[0]
    assert row["n"] == 3 and row["seeds"] == "0 1 2" and row["score_metric"] == "val_acc"
    assert math.isclose(row["score_mean"], 0.32) and math.isclose(row["final_acc_mean"], 0.12)
    assert math.isclose(row["score_pi95_high"], interval([0.30, 0.32, 0.34]).predict_high)
    shown = (tmp_path / "summary.md").read_text()
    assert "0.3200 [" in shown and "prediction interval" in shown


def compare(tmp_path: Path, *args: str):
    return run_cli("alexnet.compare", str(tmp_path), *args, cwd=tmp_path)


def test_compare_prints_the_paired_difference_its_interval_and_p_value(tmp_path):
    normalized, plain = [0.31, 0.35, 0.33], [0.30, 0.31, 0.32]
    for seed, (a, b) in enumerate(zip(normalized, plain, strict=True)):
        record(tmp_path, f"n{seed}", sgd(seed, augmentation={"normalize": True}), {"test_acc": a})
        record(tmp_path, f"p{seed}", sgd(seed, augmentation={"normalize": False}), {"test_acc": b})
    result = compare(tmp_path, "--by", "augmentation.normalize")
    assert result.returncode == 0, result.stderr
    reference = stats.ttest_rel(normalized, plain)
    low, high = reference.confidence_interval()
    assert result.stdout.strip() == (  # (p = 0.2, the interval reaching past the margin, 0.01)
        f"test_acc: augmentation.normalize=True minus augmentation.normalize=False = "
        f"{(sum(normalized) - sum(plain)) / 3:+.4f} (95% CI {low:+.4f} to {high:+.4f}), "
        f"paired t-test, n = 3 vs 3, p = {reference.pvalue:.3g}: no difference shown; the data "
        f"still allow up to ±{max(abs(low), abs(high)):.4f}")
    assert "no difference larger than ±0.1" in compare(tmp_path, "--by", "augmentation.normalize",
                                                       "--margin", "0.1").stdout


def test_compare_says_it_cannot_judge_differences_without_spread(tmp_path):
    # three pairs whose differences are all +0.015: a t-test would report p ~ 1e-33
    for seed, base in enumerate([0.30, 0.25, 0.41]):
        record(tmp_path, f"n{seed}", sgd(seed, augmentation={"normalize": True}),
               {"test_acc": base + 0.015})
        record(tmp_path, f"p{seed}", sgd(seed, augmentation={"normalize": False}), {"test_acc": base})
    result = compare(tmp_path, "--by", "augmentation.normalize")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "= +0.0150" in result.stdout and "cannot judge" in result.stdout
    assert "every pair differs by exactly +0.0150" in result.stdout
    assert not re.search(r"p = |95% CI", result.stdout)
    assert "Precision loss" not in result.stderr


def test_help_says_what_each_tool_does():
    for module, words in (("alexnet.compare", "Is the difference between two values"),
                          ("alexnet.aggregate", "estimated time left")):
        shown = run_cli(module, "--help", cwd=Path.cwd())
        assert shown.returncode == 0 and words in shown.stdout, shown.stdout
