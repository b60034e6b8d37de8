"""Seeds as replicates: grouping, intervals (against scipy), the settings comparison, and the
summary and notebook tables the aggregator writes."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from alexnet.compare import main as compare_main
from alexnet.results.collect import Run
from alexnet.results.report import aggregate, notebook_table, varying_columns
from alexnet.results.stats import compare_settings, interval, replicate_groups
from alexnet.run.record import RunRecord


def run(acc: float, status: str = "completed", notebook: dict | None = None, **hyper) -> Run:
    final = {"test_acc": acc, "test_f1": acc / 2, "test_top5": min(1.0, 3 * acc)}
    summary = {"status": status, "final": final, "best": final}
    return Run(path=Path("x"), summary=summary, hyperparameters=hyper, metrics=pd.DataFrame(),
               notebook=notebook)


def test_interval_is_students_t_as_scipy_computes_it():
    values = [0.31, 0.29, 0.35, 0.30]
    ours = interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4,
                                 scale=stats.sem(values))
    assert ours.n == 4 and math.isclose(ours.sd, stats.tstd(values))
    assert math.isclose(ours.low, low) and math.isclose(ours.high, high)
    single = interval([0.3])
    assert single.mean == 0.3 and math.isnan(single.low) and math.isnan(single.sd)


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
    assert math.isclose(paired.p_value, stats.ttest_rel(a, b).pvalue)
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


def test_notebook_table_shows_the_mean_interval_and_whether_the_notebook_lies_inside():
    notebook = {"run": "AlexNet 7", "f1": 0.45, "accuracy": 0.482}
    runs = [run(acc, notebook=notebook, experiment="alexnet7", seed=s, **{"model.logit_relu": True})
            for s, acc in enumerate([0.47, 0.49, 0.50])]
    table = notebook_table(runs)
    row = table.iloc[0]
    assert row["n"] == 3 and math.isclose(row["accuracy"], (0.47 + 0.49 + 0.50) / 3)
    assert row["accuracy_ci95_low"] < 0.482 < row["accuracy_ci95_high"]
    assert row["notebook_accuracy_inside"]
    assert not row["notebook_f1_inside"]  # our F1 here is half the accuracy: far from 0.45


def test_aggregate_writes_a_summary_with_one_row_per_setting(tmp_path):
    config = {"optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}, "seed": 0, "epochs": 1}
    for index, (optimizer, seed) in enumerate((o, s) for o in ("SGD", "Adam") for s in (0, 1, 2)):
        cfg = {**config, "seed": seed, "optimizer": {"_target_": f"torch.optim.{optimizer}"}}
        record = RunRecord(tmp_path / str(index), cfg, [f"seed={seed}"])
        record.add_epoch({"epoch": 1, "train_loss": 4.0, "test_loss": 4.0,
                          "test_acc": [0.1, 0.2, 0.3, 0.35, 0.5, 0.4][index], "test_top5": 0.5,
                          "test_f1": 0.05,
                          "images_per_s": 100.0})
        record.finish("completed")
    aggregate([tmp_path], tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(summary["optimizer"]) == ["adam", "sgd"] and list(summary["n"]) == [3, 3]
    assert math.isclose(summary.set_index("optimizer").loc["sgd", "final_acc_mean"], 0.2)
    assert "[" in (tmp_path / "summary.md").read_text()  # mean [low, high]
    assert compare_main([str(tmp_path), "--by", "optimizer"]) == 0
