"""Effects of the swept knobs (effects.md / effects.csv): from a real 2 x 2 sweep with seeds,
checked against statsmodels' own ANOVA table on the same results; the notebook's experiments,
whose knobs change together; a grid without seeds; and the sentence a person reads."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd
import pytest
import statsmodels.formula.api as smf
from omegaconf import OmegaConf
from scipy import stats
from statsmodels.stats.anova import anova_lm

from alexnet import scores
from alexnet.configs import compose_config
from alexnet.results.collect import collect
from alexnet.results.effects import analyse, markdown, sentence
from alexnet.results.report import aggregate
from alexnet.run.record import RunRecord
from helpers import run_cli

TINY = ["model=alexnet_cifar", "epochs=1", "data.download=false", "progress=false",
        "data.train_subset=64", "data.test_subset=64"]


def record(root: Path, name: str, config: dict, score: float, overrides: list[str],
           status: str = "completed") -> None:
    """A run's record as training leaves it: one epoch scoring `score`, then its end."""
    entry = RunRecord(root / name, config, overrides)
    entry.add_epoch({"epoch": 1, "train_loss": 4.0, "test_loss": 4.0, "test_acc": score,
                     "test_top5": 0.5, "test_f1": 0.05, "images_per_s": 100.0})
    entry.finish(status)


def grid_config(optimizer: str, batch_size: int, seed: int) -> dict:
    target = {"sgd": "torch.optim.SGD", "adam": "torch.optim.Adam"}[optimizer]
    return {"optimizer": {"_target_": target, "lr": 0.005}, "batch_size": batch_size,
            "seed": seed, "epochs": 1}


def model_of(results: pd.DataFrame):
    """statsmodels' own fit of the grid, from results.csv: the reference the effects must match."""
    frame = results[results["score"].notna()].astype({"optimizer": str, "batch_size": str})
    return smf.ols("score ~ C(optimizer) * C(batch_size)", frame).fit(), frame


@pytest.fixture(scope="module")
def grid_sweep(learnable_cifar_root, tmp_path_factory) -> Path:
    """A real 2 x 2 sweep with two seeds through the CLI; the multirun callback aggregates it."""
    out = tmp_path_factory.mktemp("grid") / "sweep"
    result = run_cli("alexnet.train", "-m", "optimizer=sgd,adam", "batch_size=16,32", "seed=0,1",
                     *TINY, f"data.root={learnable_cifar_root}", f"hydra.sweep.dir={out}",
                     cwd=out.parent, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.xdist_group("test_effects:grid_sweep")
def test_a_2x2_grid_with_seeds_gives_both_main_effects_their_intervals_and_the_interaction(
        grid_sweep):
    shown = (grid_sweep / "effects.md").read_text()
    for heading in ("## optimizer", "## batch_size", "## Tests (F, type 2)"):
        assert heading in shown
    assert "| optimizer x batch_size |" in shown
    assert shown.count("[") >= 2  # an interval beside each main effect's difference
    assert "Effects on test_acc (8 runs, seeds as replicates, margin ±0.01)" in shown
    assert (grid_sweep / "effects.png").stat().st_size > 10_000


@pytest.mark.xdist_group("test_effects:grid_sweep")
def test_the_effects_agree_with_statsmodels_anova_table_on_the_same_results(grid_sweep):
    results = pd.read_csv(grid_sweep / "results.csv")
    fit, frame = model_of(results)
    reference = anova_lm(fit, typ=2)
    effects = pd.read_csv(grid_sweep / "effects.csv")
    tests = effects[effects["kind"] == "test"].set_index("factor")
    for ours, theirs in (("optimizer", "C(optimizer)"), ("batch_size", "C(batch_size)"),
                         ("optimizer x batch_size", "C(optimizer):C(batch_size)")):
        assert tests.loc[ours, "F"] == pytest.approx(reference.loc[theirs, "F"])
        assert tests.loc[ours, "p"] == pytest.approx(reference.loc[theirs, "PR(>F)"])
    # a balanced grid: a level's difference to the best is the difference of the two means, its
    # interval that difference +- t(residual df) * sqrt(residual mean square * (1/n + 1/n))
    residual = reference.loc["Residual"]
    spread = math.sqrt(residual["sum_sq"] / residual["df"] * (1 / 4 + 1 / 4))
    half = stats.t.ppf(0.975, residual["df"]) * spread
    levels = effects[effects["kind"] == "level"]
    for factor in ("optimizer", "batch_size"):
        rows = levels[levels["factor"] == factor].astype({"level": str}).set_index("level")
        means = frame.groupby(factor)["score"].mean()
        assert rows["mean"].to_dict() == pytest.approx(means.to_dict())
        best = rows.index[rows["best"]][0]
        other = next(level for level in rows.index if level != best)
        assert rows.loc[other, "difference"] == pytest.approx(means[other] - means[best])
        assert rows.loc[other, "ci95_low"] == pytest.approx(means[other] - means[best] - half)
        assert rows.loc[other, "ci95_high"] == pytest.approx(means[other] - means[best] + half)


def test_only_runs_whose_scores_count_enter_the_model_and_the_sentence_says_what_mattered(tmp_path):
    # optimizer: adam 0.10 above sgd; batch size: nothing but noise (the seeds' +-0.01)
    noise = {0: -0.01, 1: 0.01, 2: 0.0}
    for optimizer, batch_size, seed in itertools.product(("sgd", "adam"), (32, 64, 128), (0, 1, 2)):
        score = 0.30 + (0.10 if optimizer == "adam" else 0.0) + noise[(seed + batch_size) % 3]
        record(tmp_path, f"{optimizer}_{batch_size}_{seed}", grid_config(optimizer, batch_size, seed),
               score, [f"optimizer={optimizer}", f"batch_size={batch_size}", f"seed={seed}"])
    record(tmp_path, "failed", grid_config("sgd", 32, 3), 0.99, ["optimizer=sgd", "seed=3"], "failed")
    record(tmp_path, "pruned", grid_config("adam", 32, 3), 0.0, ["optimizer=adam", "seed=3"], "pruned")
    effects = analyse(collect([tmp_path]).runs)
    assert effects.counted == 18 and effects.left_out == {"failed": 1, "pruned": 1}
    sgd = next(level for level in effects.of("optimizer") if level.level == "sgd")
    assert sgd.n == 9 and sgd.mean == pytest.approx(0.30)  # the failed run's 0.99 is not in it
    said = sentence(effects)
    assert said.startswith("Effects on test_acc (18 runs, seeds as replicates, margin ±0.01): ")
    # residual mean square 1e-4 (each setting's seeds: -0.01, 0, +0.01) on 18 - 6 = 12 df
    half = stats.t.ppf(0.975, 12) * math.sqrt(1e-4 * (1 / 9 + 1 / 9))
    assert "optimizer mattered (p = " in said
    assert f"adam - sgd = +0.1000 [95% CI {0.1 - half:+.4f}, {0.1 + half:+.4f}]" in said
    # no difference shown, and the data still allow one a little larger than the margin: no
    # "did not matter" (the intervals, +-t(12) x sqrt(1e-4 x 2/6), reach past 0.01)
    reach = stats.t.ppf(0.975, 12) * math.sqrt(1e-4 * (1 / 6 + 1 / 6))
    assert "batch_size: no difference shown (p = " in said
    assert f"the data still allow differences up to ±{reach:.4f}" in said
    assert "did not matter" not in said
    assert "no interaction between optimizer and batch_size shown (p = " in said


def test_a_grid_without_seeds_shows_the_means_alone(tmp_path):
    for index, (optimizer, batch_size) in enumerate(itertools.product(("sgd", "adam"), (32, 64))):
        record(tmp_path, str(index), grid_config(optimizer, batch_size, 0), 0.1 * (index + 1),
               [f"optimizer={optimizer}", f"batch_size={batch_size}"])
    aggregate([tmp_path], tmp_path, plots=False)
    shown = (tmp_path / "effects.md").read_text()
    assert "each setting ran once (no seeds)" in shown and "no interval can be given" in shown
    assert "optimizer=adam 0.3500, optimizer=sgd 0.1500" in shown  # (0.3 + 0.4) / 2, (0.1 + 0.2) / 2
    assert "[" not in shown and "## Tests" not in shown
    levels = pd.read_csv(tmp_path / "effects.csv").query("kind == 'level'")
    assert levels["ci95_low"].isna().all() and levels["mean"].notna().all()


def test_the_notebooks_experiments_name_the_knobs_they_confound(tmp_path):
    means = {1: 0.037, 2: 0.027, 3: 0.017, 4: 0.024, 5: 0.020, 6: 0.037, 7: 0.056, 8: 0.009}
    for number, mean in means.items():
        config = OmegaConf.to_container(compose_config(f"experiment=alexnet{number}"), resolve=True)
        for seed, noise in enumerate((-0.004, 0.0, 0.004)):
            record(tmp_path, f"{number}_{seed}", {**config, "seed": seed}, mean + noise,
                   [f"experiment=alexnet{number}", f"seed={seed}"])
    aggregate([tmp_path], tmp_path, plots=False)
    shown = (tmp_path / "effects.md").read_text()
    assert ("- augmentation.normalize, optimizer.lr, batch_size and epochs: some of their changes "
            "always come together in the runs") in shown
    assert "| True | 12 | " in shown and "confounded with optimizer.lr, batch_size and epochs" in shown
    effects = analyse(collect([tmp_path]).runs)
    assert effects.confounded == [("augmentation.normalize", "optimizer.lr", "batch_size", "epochs")]
    assert effects.term("augmentation.normalize") is None  # no F test of what cannot be told apart
    # the optimizer is told apart by runs 7 and 8 alone, which differ in nothing else
    adam = next(level for level in effects.of("optimizer") if level.level == "adam")
    assert adam.difference == pytest.approx(means[8] - means[7])
    best = next(level for level in effects.of("experiment") if level.best)
    assert best.level == "alexnet7" and "best experiment: alexnet7" in sentence(effects)


def test_a_search_gives_no_knob_an_effect_and_names_what_went_with_what(tmp_path):
    """Eight trials of a search whose score depends on lr alone, where batch 64 happened to get
    the good learning rates: a linear model that dropped lr credited batch_size with its effect
    ("batch_size mattered (p = 1.4e-08)"). No knob gets an effect; the sentence says why and shows
    which learning rates each batch size had. A grid typed by hand keeps its levels."""
    lrs = [0.000112345678, 0.000412345678, 0.00112345678, 0.00312345678,  # batch 32
           0.0112345678, 0.0312345678, 0.0512345678, 0.0912345678]  # batch 64
    for index, lr in enumerate(lrs):
        batch_size = 32 if index < 4 else 64
        config = {"optimizer": {"_target_": "torch.optim.SGD", "lr": lr}, "batch_size": batch_size,
                  "seed": 0, "epochs": 1}
        score = 0.1 + 0.1 * math.log10(lr / 1e-4)  # lr alone decides
        record(tmp_path / "search", str(index), config, score,
               [f"optimizer.lr={lr!r}", f"batch_size={batch_size}"])
    effects = analyse(collect([tmp_path / "search"]).runs)
    assert effects.continuous == ["optimizer.lr"] and effects.factors == ["batch_size"]
    said = sentence(effects)
    assert "mattered" not in said and "did not matter" not in said and "CI" not in said, said
    assert said.startswith("A search, not a grid: optimizer.lr took a different value in every "
                           "run"), said
    assert "so no knob's own effect is given" in said and "search.md ranks the knobs" in said
    means = [sum(0.1 + 0.1 * math.log10(lr / 1e-4) for lr in half) / 4 for half in (lrs[:4], lrs[4:])]
    assert f"32 {means[0]:.4f} (n=4; optimizer.lr 0.000112 to 0.00312)" in said, said
    assert f"64 {means[1]:.4f} (n=4; optimizer.lr 0.0112 to 0.0912)" in said, said
    shown = markdown(effects)
    assert f"| 64 | 4 | {means[1]:.4f} | 0.0112 to 0.0912 |" in shown and "## Tests" not in shown

    for index, lr in enumerate((0.1, 0.01, 0.001, 0.0001, 0.00001)):
        config = {"optimizer": {"_target_": "torch.optim.SGD", "lr": lr}, "seed": 0, "epochs": 1}
        record(tmp_path / "grid", str(index), config, 0.1 + 0.02 * index, [f"optimizer.lr={lr}"])
    grid = analyse(collect([tmp_path / "grid"]).runs)
    assert grid.factors == ["optimizer.lr"] and not grid.continuous
    assert "optimizer.lr=1e-05 0.1800" in sentence(grid), sentence(grid)
    assert "seeds as replicates" not in sentence(grid) + markdown(grid)  # (it had none)
    assert "| 0.1 | 1 | 0.1000 | -0.0800 |  |" in markdown(grid)  # the difference, no interval


def test_a_verdict_never_says_more_than_the_intervals(tmp_path):
    """Three seeds a level: a wide spread leaves 'no difference shown' and says how large a
    difference the data still allow; a tight one inside the margin says 'no effect larger than
    the margin'; equal means are shown as a tie."""
    for name, spread in (("wide", 0.08), ("tight", 0.001)):
        for batch_size, seed in itertools.product((32, 64), (0, 1, 2)):
            score = 0.30 + spread * (seed - 1) + (0.0005 if batch_size == 64 else 0.0)
            record(tmp_path / name, f"{batch_size}_{seed}", grid_config("sgd", batch_size, seed),
                   score, [f"batch_size={batch_size}", f"seed={seed}"])
    wide = sentence(analyse(collect([tmp_path / "wide"]).runs))
    assert "batch_size: no difference shown (p = " in wide and "still allow differences up to ±0.1" \
        in wide and "did not matter" not in wide, wide
    tight = sentence(analyse(collect([tmp_path / "tight"]).runs, margin=0.01))
    assert "batch_size: no effect larger than ±0.01 (p = " in tight, tight
    for batch_size, seed in itertools.product((32, 64), (0, 1)):
        record(tmp_path / "tie", f"{batch_size}_{seed}", grid_config("sgd", batch_size, seed),
               0.3 + 0.01 * seed, [f"batch_size={batch_size}", f"seed={seed}"])
    shown = markdown(analyse(collect([tmp_path / "tie"]).runs))
    assert "| 32 | 2 | 0.3050 | (best) |" in shown and "| 0.0000 (tied with the best) |" in shown
    for name, spread_32 in (("in_job_order", 0.01), ("best_run", 0.03)):  # equal means, 64 first
        for number, (batch_size, seed) in enumerate(itertools.product((64, 32), (0, 1))):
            spread = spread_32 if batch_size == 32 else 0.01
            record(tmp_path / name, str(number), grid_config("sgd", batch_size, seed),
                   0.305 + spread * (seed - 0.5), [f"batch_size={batch_size}", f"seed={seed}"])
        runs = collect([tmp_path / name]).runs
        table_best = runs[scores.best([r.summary for r in runs])].summary["config"]["batch_size"]
        assert table_best == (64 if name == "in_job_order" else 32)  # (job order; the 0.32 run)
        assert f"| {table_best} | 2 | 0.3050 | (best) |" in markdown(analyse(runs))  # the table's pick
