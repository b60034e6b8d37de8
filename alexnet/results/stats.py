"""Seeds as replicates: runs whose hyperparameters differ only in `seed` form a group, summarized
by n, mean, standard deviation and a 95% Student-t confidence interval of each score, so that a
difference between settings can be set against the run-to-run noise."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats

from alexnet.results.collect import Run
from alexnet.run.status import SUCCEEDED, Status

# results-table column -> where its value comes from in a run's results.json
SCORES = {"final_acc": ("final", "test_acc"), "best_acc": ("best", "test_acc"),
          "final_top5": ("final", "test_top5"), "final_f1": ("final", "test_f1")}
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float
    sd: float  # nan for n = 1
    low: float  # the 95% confidence interval of the mean; nan for n = 1
    high: float


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval: mean +- t(1 - (1 - confidence) / 2, n - 1) * sd / sqrt(n)."""
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return Interval(n, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


def score(run: Run, column: str) -> float | None:
    section, key = SCORES[column]
    return (run.summary.get(section) or {}).get(key)


def replicate_groups(runs: Sequence[Run], varying: Sequence[str]) -> dict[tuple[Any, ...], list[Run]]:
    """Runs keyed by their varying hyperparameters other than seed: a group differs only in seed."""
    keys = [column for column in varying if column != "seed"]
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(str(run.hyperparameters.get(k)) for k in keys), []).append(run)
    return groups


def summary_table(runs: Sequence[Run], varying: Sequence[str]) -> pd.DataFrame:
    """A row per group: its hyperparameters, n (runs that finished), seeds, and for each score its
    mean, sd and 95% interval."""
    keys = [column for column in varying if column != "seed"]
    rows = []
    started = [run for run in runs if run.status != Status.not_started]  # planned runs have no scores
    for group in replicate_groups(started, varying).values():
        done = [run for run in group if run.status in SUCCEEDED]
        row: dict[str, Any] = {k: group[0].hyperparameters.get(k) for k in keys}
        row["n"] = len(done)
        row["seeds"] = " ".join(str(run.hyperparameters.get("seed")) for run in done)
        for column in SCORES:
            summary = interval([score(run, column) for run in done if score(run, column) is not None])
            row |= {f"{column}_mean": summary.mean, f"{column}_sd": summary.sd,
                    f"{column}_ci95_low": summary.low, f"{column}_ci95_high": summary.high}
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("final_acc_mean", ascending=False, ignore_index=True) if rows else table


@dataclass(frozen=True)
class Comparison:
    key: str
    values: tuple[str, str]  # the setting's two values: difference = first - second
    metric: str
    test: str  # "paired t-test" or "Welch t-test"
    n: tuple[int, int]
    difference: float
    low: float
    high: float
    p_value: float


def compare_settings(runs: Sequence[Run], key: str, varying: Sequence[str],
                     metric: str = "final_acc", pool: bool = False) -> Comparison:
    """Is `metric` different between the two values of `key`? A paired t-test when every run of
    one value has a partner of the other that matches it in every other hyperparameter (seed
    included), else Welch's t-test, which treats each side's runs as repeats of one setting: so
    it is refused (ValueError naming them) while the runs also differ in another hyperparameter
    than seed, unless `pool`. The mean difference with its 95% interval and p-value."""
    done = [run for run in runs if run.status in SUCCEEDED and score(run, metric) is not None]
    by_value: dict[str, list[Run]] = {}
    for run in done:
        by_value.setdefault(str(run.hyperparameters.get(key)), []).append(run)
    if len(by_value) != 2:
        raise ValueError(f"{key} takes {len(by_value)} values among the finished runs "
                         f"({', '.join(sorted(by_value)) or 'none'}); comparing needs exactly two")
    (first, a), (second, b) = sorted(by_value.items(), reverse=True)
    if min(len(a), len(b)) < 2:
        raise ValueError(f"{key}={first} has {len(a)} finished runs and {key}={second} {len(b)}: "
                         "a test needs at least 2 each (add seeds: seed=0,1,2)")
    others = [c for c in varying if c not in (key, "experiment")]

    def match(run: Run) -> tuple[str, ...]:
        return tuple(str(run.hyperparameters.get(c)) for c in others)

    partners = {match(run): run for run in b}
    paired = len(a) == len(b) == len(partners) and all(match(run) in partners for run in a)
    if paired:
        differences = [score(run, metric) - score(partners[match(run)], metric) for run in a]
        result = stats.ttest_rel([score(r, metric) for r in a],
                                 [score(partners[match(r)], metric) for r in a])
        summary = interval(differences)
        low, high, difference = summary.low, summary.high, summary.mean
    else:
        confounded = [c for c in others if c != "seed"
                      and len({str(run.hyperparameters.get(c)) for run in [*a, *b]}) > 1]
        if confounded and not pool:
            raise ValueError(
                f"the runs do not pair up (same {', '.join(others)}), and besides {key} they "
                f"differ in {', '.join(confounded)}: comparing them unpaired would credit {key} "
                f"with those differences too. Compare runs that differ only in {key} and seed "
                "(a sweep dir of such runs), or pass --pool to pool them anyway.")
        result = stats.ttest_ind([score(r, metric) for r in a], [score(r, metric) for r in b],
                                 equal_var=False)
        low, high = result.confidence_interval(CONFIDENCE)
        difference = (sum(score(r, metric) for r in a) / len(a)
                      - sum(score(r, metric) for r in b) / len(b))
    return Comparison(key, (first, second), metric, "paired t-test" if paired else "Welch t-test",
                      (len(a), len(b)), difference, float(low), float(high), float(result.pvalue))
