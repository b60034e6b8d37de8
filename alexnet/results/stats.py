"""Seeds as replicates: runs differing only in `seed` form a group with n, mean, sd, a 95% Student-t
confidence interval of the mean and a 95% prediction interval of one more run, so differences can be set
against run-to-run noise. Which runs' scores count, and by which metric, is alexnet/scores.py's decision."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from alexnet import scores
from alexnet.results.collect import Run
from alexnet.scores import Status

SCORE = "score"  # the selection score: each run's value of the metric it is ranked by
# Other results-table columns -> (metric, epoch) in a run's record.
COLUMNS = {"final_acc": ("test_acc", "final"), "best_acc": ("test_acc", "best"),
           "final_top5": ("test_top5", "final"), "final_f1": ("test_f1", "final"),
           "final_val_acc": ("val_acc", "final"), "best_val_acc": ("val_acc", "best")}
SUMMARIZED = (SCORE, "final_acc", "best_acc", "final_top5", "final_f1")  # summary.csv's, per setting
CONFIDENCE = 0.95
FRACTIONS = ("_acc", "_top5", "_f1")  # fractions: an interval of them stops at 0 and 1
NO_SPREAD = 1e-12  # closer values are equal: a spread of float rounding is no spread


def metric_of(run: Run, column: str) -> str:
    """The metric behind a results-table column, for this run (`score`: the one it is ranked by)."""
    if column == SCORE:
        return scores.selection_metric(run.summary.get("config") or {})
    return COLUMNS[column][0]


def score(run: Run, column: str) -> float | None:
    """The run's value in `score` or a COLUMNS column; None where its scores do not count or it lacks it."""
    if column == SCORE:
        return scores.selection_score(run.summary)
    metric, epoch = COLUMNS[column]
    return scores.value(run.summary, metric, epoch) if scores.counts(run.summary) else None


def value_range(metric: str) -> tuple[float, float]:
    """Where values of `metric` can lie: [0, 1] for fractions, [0, inf) for losses and times."""
    return (0.0, 1.0) if metric.endswith(FRACTIONS) else (0.0, math.inf)


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float
    sd: float  # nan for n = 1
    low: float  # the 95% confidence interval of the mean; nan for n = 1 or no spread
    high: float
    predict_low: float  # the 95% prediction interval of one more run; nan likewise
    predict_high: float


def interval(values: Sequence[float], confidence: float = CONFIDENCE,
             bounds: tuple[float, float] = (-math.inf, math.inf)) -> Interval:
    """Student-t intervals, n - 1 df: of the mean, mean +- t*sd/sqrt(n); of one more value,
    mean +- t*sd*sqrt(1 + 1/n); both cut to `bounds`, the values' possible range."""
    values = [float(v) for v in values]
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    sd = float(np.std(values, ddof=1)) if n >= 2 else math.nan
    if n < 2 or sd <= NO_SPREAD:
        return Interval(n, mean, sd, math.nan, math.nan, math.nan, math.nan)
    low, high = _cut(stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n)), bounds)
    predict = _cut(stats.t.interval(confidence, n - 1, loc=mean, scale=sd * math.sqrt(1 + 1 / n)), bounds)
    return Interval(n, mean, sd, low, high, *predict)


def _cut(pair: tuple[float, float], bounds: tuple[float, float]) -> tuple[float, float]:
    return max(float(pair[0]), bounds[0]), min(float(pair[1]), bounds[1])


def column_interval(runs: Sequence[Run], column: str) -> Interval:
    """The interval of a column over the runs whose scores count, cut to its metric's range."""
    values = [v for v in (score(run, column) for run in runs) if v is not None]
    metrics = {metric_of(run, column) for run in runs}
    bounds = value_range(metrics.pop()) if len(metrics) == 1 else (-math.inf, math.inf)
    return interval(values, bounds=bounds)


def replicate_groups(runs: Sequence[Run], varying: Sequence[str]) -> dict[tuple[Any, ...], list[Run]]:
    """Runs keyed by their varying hyperparameters other than seed: a group differs only in seed."""
    keys = [column for column in varying if column != "seed"]
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(str(run.hyperparameters.get(k)) for k in keys), []).append(run)
    return groups


def summary_table(runs: Sequence[Run], varying: Sequence[str]) -> pd.DataFrame:
    """A row per group: settings, n, seeds, score metric, each score's mean, sd, 95% CI and 95% PI; ranked."""
    keys = [column for column in varying if column != "seed"]
    rows = []
    started = [run for run in runs if run.status != Status.not_started]  # planned runs have no scores
    for group in replicate_groups(started, varying).values():
        done = [run for run in group if scores.counts(run.summary)]
        row: dict[str, Any] = {k: group[0].hyperparameters.get(k) for k in keys}
        row |= {"n": len(done), "seeds": " ".join(str(run.hyperparameters.get("seed")) for run in done),
                "score_metric": " ".join(sorted({metric_of(run, SCORE) for run in group}))}
        for column in SUMMARIZED:
            summary = column_interval(done, column)
            row |= {f"{column}_mean": summary.mean, f"{column}_sd": summary.sd,
                    f"{column}_ci95_low": summary.low, f"{column}_ci95_high": summary.high,
                    f"{column}_pi95_low": summary.predict_low, f"{column}_pi95_high": summary.predict_high}
        rows.append(row)
    table = pd.DataFrame(rows)
    if not rows:
        return table
    lower = all(not scores.higher_is_better(m) for m in " ".join(table["score_metric"]).split())
    return table.sort_values("score_mean", ascending=lower, ignore_index=True, na_position="last")


@dataclass(frozen=True)
class Comparison:
    key: str
    values: tuple[str, str]  # the setting's two values: difference = first - second
    metric: str  # the metric compared (`score`: the runs' selection metric, named here)
    test: str  # "paired t-test" or "Welch t-test"
    n: tuple[int, int]
    difference: float
    low: float  # nan where the test cannot judge
    high: float
    p_value: float
    cannot_judge: str | None = None  # why no interval or p-value can be given

    @property
    def judged(self) -> bool:
        return self.cannot_judge is None


def compare_settings(runs: Sequence[Run], key: str, varying: Sequence[str],
                     metric: str = SCORE, pool: bool = False) -> Comparison:
    """Is `metric` different between the two values of `key`? Paired t-test where every run has a partner
    matching it in all else (seed included), else Welch's, refused (ValueError) while the sides also differ
    in another key than seed, unless `pool`; with no spread no test can judge, and the result says so."""
    done = [run for run in runs if score(run, metric) is not None]
    metrics = sorted({metric_of(run, metric) for run in done})
    if len(metrics) > 1:
        raise ValueError(f"the runs are ranked by different metrics ({', '.join(metrics)}): "
                         f"compare one of them with --metric ({', '.join(COLUMNS)})")
    by_value: dict[str, list[Run]] = {}
    for run in done:
        by_value.setdefault(str(run.hyperparameters.get(key)), []).append(run)
    if len(by_value) != 2:
        raise ValueError(f"{key} takes {len(by_value)} values among the runs whose scores count "
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
        b = [partners[match(run)] for run in a]
    else:
        confounded = [c for c in others if c != "seed"
                      and len({str(run.hyperparameters.get(c)) for run in [*a, *b]}) > 1]
        if confounded and not pool:
            raise ValueError(f"the runs do not pair up (same {', '.join(others)}), and besides {key} they "
                             f"differ in {', '.join(confounded)}: comparing them unpaired would credit "
                             f"{key} with those differences too. Compare runs that differ only in {key} "
                             "and seed (a sweep dir of such runs), or pass --pool to pool them anyway.")
    x = np.array([score(run, metric) for run in a], dtype=float)
    y = np.array([score(run, metric) for run in b], dtype=float)
    difference = float(x.mean() - y.mean())
    name = metrics[0] if metric == SCORE else metric
    common = dict(key=key, values=(first, second), metric=name, n=(len(a), len(b)),
                  difference=difference, test="paired t-test" if paired else "Welch t-test")
    spread = np.ptp(x - y) if paired else max(np.ptp(x), np.ptp(y))
    if spread <= NO_SPREAD:
        why = (f"every pair differs by exactly {difference:+.4f}" if paired else
               f"each side's runs all scored the same ({x[0]:.4f} and {y[0]:.4f})")
        return Comparison(**common, low=math.nan, high=math.nan, p_value=math.nan,
                          cannot_judge=f"{why}: with no spread between seeds there is no noise to "
                                       "judge the difference against (check that the runs differ "
                                       "in more than their names)")
    result = stats.ttest_rel(x, y) if paired else stats.ttest_ind(x, y, equal_var=False)
    low, high = result.confidence_interval(CONFIDENCE)
    return Comparison(**common, low=float(low), high=float(high), p_value=float(result.pvalue))
