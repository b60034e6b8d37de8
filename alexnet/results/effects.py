"""Effects of the swept knobs on the selection score, saying no more than the runs show: one OLS model over
the counted runs (knobs as factors, a full grid's two-way interactions too, seeds as replicates) gives each
level's difference to the best with a 95% interval, and each knob an F test and a verdict. Knobs that always
change together are named confounded, with no number; a search (knobs drawn together) is only described."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import patsy
import statsmodels.formula.api as smf
from scipy.linalg import null_space
from statsmodels.stats.anova import anova_lm

from alexnet import scores
from alexnet.results.collect import Run, natural_order, own_keys, readable, varying_columns
from alexnet.results.stats import CONFIDENCE, NO_SPREAD, SCORE, metric_of

ALPHA = 1 - CONFIDENCE
LABEL = "experiment"  # a name for a bundle of knobs, not a knob
NOT_KNOBS = ("search.",)  # a search's trial bookkeeping, not how a run trains
SPELLED_OUT = 3  # knobs whose means the sentence spells out beside the experiments' (rest: effects.md)
TOLERANCE = 1e-8  # smaller is zero in the estimability checks (the design holds 0/1 entries)
CONTINUOUS_FROM = 3  # this many full-precision floats (drawn, not typed), none repeated: drawn per run
DRAWN_DIGITS = 8  # significant digits of a float's repr from which it was drawn, not typed
MARGIN = 0.01  # equivalence margin: one accuracy point, about the reference runs' seed-to-seed sd


@dataclass(frozen=True)
class Level:
    """One level of a knob (or one experiment): its runs' mean and how it compares to the best."""

    factor: str
    level: Any  # the knob's value (or the experiment's name)
    n: int
    mean: float  # the mean selection score of its runs
    best: bool = False
    difference: float = math.nan  # this level minus the best level (the model's, with seeds)
    low: float = math.nan  # its 95% interval
    high: float = math.nan
    confounded_with: tuple[str, ...] = ()  # what its difference cannot be told apart from
    drawn: tuple[tuple[str, float, float], ...] = ()  # a search: each drawn knob's range here

    @property
    def tied(self) -> bool:
        """Not the best, yet no different from it."""
        return not self.best and abs(self.difference) <= NO_SPREAD


@dataclass(frozen=True)
class Term:
    """An F test of a knob or a two-way interaction."""

    factors: tuple[str, ...]
    df: float
    f_value: float
    p_value: float

    @property
    def name(self) -> str:
        return " x ".join(self.factors)

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


@dataclass
class Effects:
    metric: str | None  # the selection metric of the runs in the model
    counted: int  # runs in the model
    left_out: dict[str, int]  # status -> runs whose scores do not count
    factors: list[str]
    levels: list[Level] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    confounded: list[tuple[str, ...]] = field(default_factory=list)
    label: str | None = None  # "experiment" where the runs name their settings
    replicated: bool = False  # some setting ran with two seeds or more
    residual_df: float = math.nan
    formula: str = ""
    no_interval: str | None = None  # why no interval can be given
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)  # each setting's n and mean
    continuous: list[str] = field(default_factory=list)  # drawn anew for every run: a search
    margin: float = MARGIN

    def of(self, factor: str) -> list[Level]:
        return [level for level in self.levels if level.factor == factor]

    def term(self, *factors: str) -> Term | None:
        return next((t for t in self.terms if t.factors == factors), None)

    @property
    def higher_is_better(self) -> bool:
        return self.metric is None or scores.higher_is_better(self.metric)


def knobs(runs: Sequence[Run]) -> list[str]:
    """The varied keys, less seed (a replicate), experiment (a bundle), search bookkeeping and followers."""
    varying = [k for k in varying_columns(runs) if k not in ("seed", LABEL) and not k.startswith(NOT_KNOBS)]
    return own_keys(runs, varying)


def analyse(runs: Sequence[Run], margin: float = MARGIN) -> Effects:
    counted = [r for r in runs if scores.selection_score(r.summary) is not None]
    left_out = dict(Counter(str(r.status) for r in runs if scores.selection_score(r.summary) is None))
    metrics = sorted({metric_of(r, SCORE) for r in counted})
    if len(metrics) > 1:
        return Effects(None, len(counted), left_out, [], margin=margin, no_interval=(
            f"the runs are ranked by different metrics ({', '.join(metrics)}); aggregate runs of "
            "one objective together"))
    metric = metrics[0] if metrics else None
    varied = knobs(counted) if len(counted) > 1 else []
    continuous = [k for k in varied if _continuous([r.hyperparameters.get(k) for r in counted])]
    factors = [k for k in varied if k not in continuous]
    label = LABEL if len({str(r.hyperparameters.get(LABEL)) for r in counted}) > 1 else None
    effects = Effects(metric, len(counted), left_out, factors, label=label, continuous=continuous,
                      margin=margin)
    if not counted:
        effects.no_interval = "no run's scores count"
        return effects
    frame, values = _frame(counted, factors)
    if continuous:  # a search: described, never modelled
        effects.no_interval = "a search's knobs were drawn together, not crossed"
        effects.levels = [lv for f in factors for lv in _described(f, values[f], frame, counted,
                                                                    continuous, effects)]
        return effects
    names = {f: f"f{i}" for i, f in enumerate(factors)}
    keys = list(names.values())
    frame = frame.assign(job=range(len(frame))).groupby(  # (runs alike in every key, seed included,
        [*keys, "seed", LABEL], observed=True, as_index=False, dropna=False).agg(  # are one run)
        score=("score", "mean"), job=("job", "min"))  # (job: the first run's place, to break ties)
    effects.cells = (frame.groupby(keys, observed=True)["score"].agg(["size", "mean"])
                     .rename(columns={"size": "n"}).reset_index().rename(
                         columns={v: k for k, v in names.items()}) if keys else
                     pd.DataFrame({"n": [len(frame)], "mean": [frame["score"].mean()]}))
    effects.replicated = bool((effects.cells["n"] > 1).any())
    main = [f"C({names[f]})" for f in factors]
    pairs = [(a, b) for i, a in enumerate(factors) for b in factors[i + 1:]]
    full_grid = bool(factors) and len(effects.cells) == math.prod(frame[names[f]].nunique() for f in factors)
    interactions = [f"C({names[a]}):C({names[b]})" for a, b in pairs] if full_grid else []
    rhs = " + ".join(main + interactions) or "1"
    design = patsy.dmatrix(rhs, frame, return_type="dataframe")
    if interactions and len(frame) - np.linalg.matrix_rank(design.to_numpy()) <= 0:
        interactions = []  # a grid without seeds: interactions would leave no noise to test on
        rhs = " + ".join(main) or "1"
        design = patsy.dmatrix(rhs, frame, return_type="dataframe")
    model = _Design(design, names, frame)
    named = [f"C({f})" for f in factors] + [f"C({a}):C({b})" for a, b in pairs if interactions]
    effects.formula = f"{metric} ~ " + (" + ".join(named) or "1")
    fit = _fit(rhs, frame, design, effects)
    for factor in factors:
        effects.levels += _levels(factor, values[factor], frame, model, effects.higher_is_better, fit)
    if label:
        effects.levels += _experiments(frame, model, fit, effects.higher_is_better)
    effects.confounded = _confounded_sets(factors, model)
    if fit is not None:
        effects.terms = _terms(factors, pairs if interactions else [], model, fit)
    return effects


def _continuous(values: Sequence[Any]) -> bool:
    """Whether a knob's values were drawn anew for every run (see CONTINUOUS_FROM)."""
    if not all(isinstance(v, float) for v in values):
        return False
    drawn = any(_significant_digits(v) >= DRAWN_DIGITS for v in values)
    return drawn and len(values) >= CONTINUOUS_FROM and len(set(values)) == len(values)


def _significant_digits(value: float) -> int:
    """How many significant digits the shortest repr of `value` has (0.0031 has 2)."""
    mantissa = repr(value).split("e")[0]
    return len(mantissa.replace("-", "").replace(".", "").strip("0"))


def _described(factor: str, values: dict[str, Any], frame: pd.DataFrame, runs: Sequence[Run],
               continuous: Sequence[str], effects: Effects) -> list[Level]:
    """A search's knob: each level's n, mean and drawn ranges; no difference (it is the drawn knobs' too)."""
    column = frame[f"f{effects.factors.index(factor)}"]
    out = []
    for level in [lv for lv in column.cat.categories if (column == lv).any()]:
        rows = [run for run, here in zip(runs, column == level, strict=True) if here]
        drawn = tuple((knob, min(r.hyperparameters[knob] for r in rows),
                       max(r.hyperparameters[knob] for r in rows)) for knob in continuous)
        out.append(Level(factor, values[level], len(rows),
                         float(frame.loc[column == level, "score"].mean()), drawn=drawn))
    return out


class _Design:
    """The design matrix's columns per knob and what its row space can estimate."""

    def __init__(self, design: pd.DataFrame, names: dict[str, str], frame: pd.DataFrame) -> None:
        self.info = design.design_info
        self.names = names
        self.cells = settings(frame, names)
        self.rows = self.matrix(self.cells)
        self.null = null_space(self.rows)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(patsy.build_design_matrices([self.info], frame)[0])

    def columns(self, factor: str) -> list[int]:
        """The design's columns for the knob: its main effect and its interactions."""
        name = f"C({self.names[factor]})"
        return [i for term, span in self.info.term_name_slices.items()
                if name in term.split(":") for i in range(span.start, span.stop)]

    def estimable(self, contrast: np.ndarray, null: np.ndarray | None = None) -> bool:
        null = self.null if null is None else null
        return null.size == 0 or float(np.abs(contrast @ null).max()) < TOLERANCE

    def mean_row(self, factor: str, level: Any) -> np.ndarray:
        """The design row of the level's mean over every observed setting (a full grid's marginal mean)."""
        cells = self.cells.copy()
        cells[self.names[factor]] = pd.Categorical([level] * len(cells),
                                                   categories=cells[self.names[factor]].cat.categories)
        return self.matrix(cells).mean(axis=0)

    def partners(self, contrast: np.ndarray, factor: str) -> tuple[str, ...]:
        """Knobs without any one of which `contrast` is estimable; else all sharing a dependency with it."""
        others = [f for f in self.names if f != factor]
        found = []
        for other in others:
            keep = [i for i in range(self.rows.shape[1]) if i not in self.columns(other)]
            if self.estimable(contrast[keep], null_space(self.rows[:, keep])):
                found.append(other)
        if found:
            return tuple(found)
        linked = [v for v in self.null.T if abs(contrast @ v) > TOLERANCE]
        return tuple(o for o in others
                     if any(np.abs(v[self.columns(o)]).max() > TOLERANCE for v in linked))


def settings(frame: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    return frame.drop_duplicates(subset=list(names.values())) if names else frame.iloc[:1]


def _frame(runs: Sequence[Run], factors: Sequence[str]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Each run's score, seed, experiment and knobs (categoricals f0, f1, ...); each knob's level values."""
    frame = pd.DataFrame({"score": [scores.selection_score(r.summary) for r in runs],
                          "seed": [str(r.hyperparameters.get("seed")) for r in runs],
                          LABEL: [str(r.hyperparameters.get(LABEL)) for r in runs]})
    values = {}
    for i, factor in enumerate(factors):
        found = [r.hyperparameters.get(factor) for r in runs]
        values[factor] = {str(v): v for v in natural_order(found)}
        frame[f"f{i}"] = pd.Categorical([str(v) for v in found], categories=list(values[factor]))
    return frame, values


def _fit(rhs: str, frame: pd.DataFrame, design: pd.DataFrame, effects: Effects) -> Any:
    """The OLS fit, or None (saying why) when it cannot give intervals."""
    if not effects.replicated:
        effects.no_interval = "each setting ran once (no seeds): there is no noise to judge against"
        return None
    with warnings.catch_warnings():  # a confounded design is rank-deficient: handled above
        warnings.filterwarnings("ignore", message="The design matrix is rank-deficient")
        fit = smf.ols(f"score ~ {rhs}", frame).fit()
    if list(fit.model.exog_names) != list(design.columns):
        raise RuntimeError(f"statsmodels built other columns ({fit.model.exog_names}) than the "
                           f"design ({list(design.columns)})")
    effects.residual_df = float(fit.df_resid)
    if fit.df_resid < 1:
        effects.no_interval = "the model leaves no degrees of freedom for the noise"
        return None
    if fit.ssr <= NO_SPREAD ** 2 * len(frame):
        effects.no_interval = "every setting's seeds scored exactly alike: there is no noise to judge against"
        return None
    return fit


def _contrast(fit: Any, row: np.ndarray) -> tuple[float, float, float]:
    result = fit.t_test(row)
    low, high = np.asarray(result.conf_int(alpha=ALPHA)).ravel()
    return float(np.ravel(result.effect)[0]), float(low), float(high)


def _levels(factor: str, values: dict[str, Any], frame: pd.DataFrame, model: _Design,
            higher: bool, fit: Any) -> list[Level]:
    """Each level's mean and its difference to the best (first of equals) or what it is confounded with."""
    column = frame[model.names[factor]]
    levels = [level for level in column.cat.categories if (column == level).any()]
    sign = 1.0 if higher else -1.0
    raw = {level: frame.loc[column == level, "score"] for level in levels}
    rows = {level: model.mean_row(factor, level) for level in levels}
    ranked = [lv for lv in _by_best_run(frame, model.names[factor], higher) if lv in raw]
    best = _first_best(ranked, lambda level: sign * raw[level].mean())
    if fit is not None:  # the best by the model, among the levels it can set beside the leader
        candidates = [lv for lv in ranked if model.estimable(rows[lv] - rows[best])]
        best = _first_best(candidates, lambda lv: sign * float((rows[lv] - rows[best]) @ fit.params))
    out = []
    for level in levels:
        found: dict[str, Any] = {"factor": factor, "level": values[level], "n": len(raw[level]),
                                 "mean": float(raw[level].mean()), "best": level == best}
        difference = rows[level] - rows[best]
        if level != best and not model.estimable(difference):
            found["confounded_with"] = model.partners(difference, factor)
        elif level != best and fit is not None:
            found["difference"], found["low"], found["high"] = _contrast(fit, difference)
        elif level != best:
            found["difference"] = float(raw[level].mean() - raw[best].mean())
        out.append(Level(**found))
    return out


def _by_best_run(frame: pd.DataFrame, column: str, higher: bool) -> list[Any]:
    """The column's values in the order of their best runs as the table ranks them (ties: job order),
    so tied levels yield to the level of the table's best run."""
    return list(dict.fromkeys(frame.assign(key=frame["score"] * (-1 if higher else 1)).sort_values(
        ["key", "job"], kind="stable")[column]))


def _first_best(levels: Sequence[Any], score: Any) -> Any:
    """The best level, the first of those that tie with it (in _by_best_run's order, as the table)."""
    values = {level: score(level) for level in levels}
    top = max(values.values())
    return next(level for level in levels if values[level] >= top - NO_SPREAD)


def _experiments(frame: pd.DataFrame, model: _Design, fit: Any, higher: bool) -> list[Level]:
    """Each experiment as the model's mean of its settings, against the best experiment."""
    names = natural_order(list(frame[LABEL]))
    rows = {name: model.matrix(settings(frame[frame[LABEL] == name], model.names)).mean(axis=0)
            for name in names}
    raw = {name: frame.loc[frame[LABEL] == name, "score"] for name in names}
    sign = 1.0 if higher else -1.0
    best = _first_best(_by_best_run(frame, LABEL, higher),
                       lambda name: sign * (float(rows[name] @ fit.params) if fit is not None
                                            else raw[name].mean()))
    out = []
    for name in names:
        found: dict[str, Any] = {"factor": LABEL, "level": name, "n": len(raw[name]),
                                 "mean": float(raw[name].mean()), "best": name == best}
        if fit is not None and name != best:
            found["difference"], found["low"], found["high"] = _contrast(fit, rows[name] - rows[best])
        elif name != best:
            found["difference"] = float(raw[name].mean() - raw[best].mean())
        out.append(Level(**found))
    return out


def _confounded_sets(factors: Sequence[str], model: _Design) -> list[tuple[str, ...]]:
    """Groups of knobs whose effects the runs cannot tell apart."""
    found: list[tuple[str, ...]] = []
    identity = np.eye(model.rows.shape[1])
    for factor in factors:
        blocked = [i for i in model.columns(factor) if not model.estimable(identity[i])]
        partners = {p for i in blocked for p in model.partners(identity[i], factor)}
        group = tuple(f for f in factors if f == factor or f in partners)
        if blocked and group not in found:
            found.append(group)
    return found


def _terms(factors: Sequence[str], pairs: Sequence[tuple[str, str]], model: _Design,
           fit: Any) -> list[Term]:
    """Type-2 ANOVA for a full-rank design; else a Wald F test of each knob whose effects are estimable."""
    if model.null.size == 0:
        table = anova_lm(fit, typ=2)
        lookup = {f"C({model.names[f]})": (f,) for f in factors}
        lookup |= {f"C({model.names[a]}):C({model.names[b]})": (a, b) for a, b in pairs}
        return [Term(lookup[name], float(row["df"]), float(row["F"]), float(row["PR(>F)"]))
                for name, row in table.iterrows() if name in lookup]
    terms = []
    identity = np.eye(model.rows.shape[1])
    for factor in factors:
        columns = model.columns(factor)
        if all(model.estimable(identity[i]) for i in columns):
            result = fit.f_test(identity[columns])
            terms.append(Term((factor,), float(result.df_num), float(np.ravel(result.fvalue)[0]),
                              float(result.pvalue)))
    return terms


def sentence(effects: Effects) -> str:
    """What the effects say, as a person would say it, and no more."""
    metric = effects.metric or "the selection score"
    if not effects.counted or effects.metric is None:
        return f"No effects can be given: {effects.no_interval}."
    if effects.continuous:
        return _capital(_search_sentence(effects)) + "."
    parts = [f"the runs cannot separate the effects of {_and(group)} (some of their changes always "
             "come together): confounded, so no number is given for those" for group in effects.confounded]
    if not effects.factors and effects.label is None:
        only = effects.cells.iloc[0]
        runs = f"{int(only['n'])} run{'s' if int(only['n']) != 1 else ''}"
        varies = "Only the seed varies" if effects.replicated else "Nothing varies"
        return f"{varies}: mean {metric} {only['mean']:.4f} over {runs}."
    if effects.no_interval:
        text = f"{effects.no_interval}, so no interval can be given (add seeds: seed=0,1,2)"
        shown = effects.factors if len(effects.factors) <= SPELLED_OUT or not effects.label else []
        means = ["; ".join(", ".join(f"{factor}={readable(lv.level)} {lv.mean:.4f}"
                                     for lv in effects.of(factor)) for factor in shown)]
        if effects.label:
            ranking = _ranked(effects.of(effects.label), effects.higher_is_better, by="mean")
            means.append(f"best {effects.label} {ranking[0].level} ({ranking[0].mean:.4f})"
                         + "".join(f", then {lv.level} ({lv.mean:.4f})" for lv in ranking[1:3]))
        parts.append(f"{text}; mean {metric}: " + "; ".join(m for m in means if m))
        return _capital("; ".join(parts)) + "."
    parts += [said for factor in effects.factors if (said := _verdict(effects, factor))]
    for term in effects.terms:
        if len(term.factors) == 2:
            a, b = term.factors
            parts.append(f"{a} and {b} interact (p = {term.p_value:.2g}): the effect of one "
                         "depends on the other" if term.significant else
                         f"no interaction between {a} and {b} shown (p = {term.p_value:.2g})")
    if effects.label:
        best, *rest = _ranked(effects.of(effects.label), effects.higher_is_better, by="difference")
        text = f"best {effects.label}: {best.level} (mean {best.mean:.4f})"
        if rest:
            ahead = rest[0].low > 0 or rest[0].high < 0
            text += (f", ahead of {rest[0].level} by {-rest[0].difference:+.4f} [95% CI "
                     f"{-rest[0].high:+.4f}, {-rest[0].low:+.4f}]"
                     + ("" if ahead else ": not shown to be ahead"))
        parts.append(text)
    return (f"Effects on {metric} ({effects.counted} runs, seeds as replicates, margin "
            f"±{effects.margin:g}): " + "; ".join(parts) + ".")


def _verdict(effects: Effects, factor: str) -> str:
    """Mattered (p < ALPHA); no effect beyond ±margin (every 95% CI inside it); else no difference shown."""
    term = effects.term(factor)
    levels = effects.of(factor)
    contrasts = _contrasts(levels)
    if term is None:  # (some of its differences confounded)
        partly = " (partly confounded)" if any(lv.confounded_with for lv in levels) else ""
        return f"{factor}{partly}: {contrasts}" if contrasts else ""
    p = f"p = {term.p_value:.2g}"
    if term.significant:
        return f"{factor} mattered ({p})" + (f": {contrasts}" if contrasts else "")
    reach = max((max(abs(lv.low), abs(lv.high)) for lv in levels if not math.isnan(lv.low)), default=math.nan)
    if reach <= effects.margin:
        return (f"{factor}: no effect larger than ±{effects.margin:g} ({p}; every difference's "
                "95% CI lies inside it)")
    return f"{factor}: no difference shown ({p}); the data still allow differences up to ±{reach:.4f}"


def _search_sentence(effects: Effects) -> str:
    """Why a search gives no knob's effect, then each knob's level means with the drawn knobs' ranges."""
    drawn = _and(effects.continuous)
    one = len(effects.continuous) == 1
    text = (f"a search, not a grid: {drawn} took a different value in every run and the other "
            f"knobs were drawn with {'it' if one else 'them'}, so no knob's own effect is given "
            "(one knob would be credited with another's); search.md ranks the knobs by importance")
    for factor in effects.factors:
        text += f"; mean {effects.metric} by {factor}: " + ", ".join(
            f"{readable(lv.level)} {lv.mean:.4f} (n={lv.n}; "
            + ", ".join(f"{knob} {_span(low, high)}" for knob, low, high in lv.drawn)
            + ")" for lv in effects.of(factor))
    return text


def _span(low: float, high: float) -> str:
    return readable(low) if low == high else f"{readable(low)} to {readable(high)}"


def _ranked(levels: Sequence[Level], higher: bool, by: str) -> list[Level]:
    return sorted(levels, key=lambda lv: (not lv.best, -getattr(lv, by) if higher else getattr(lv, by)))


def _contrasts(levels: Sequence[Level]) -> str:
    """best - level for each other level whose difference the model gives, with its interval."""
    best = next((lv for lv in levels if lv.best), None)
    return ", ".join(f"{readable(best.level)} - {readable(lv.level)} = {-lv.difference:+.4f} "
                     f"[95% CI {-lv.high:+.4f}, {-lv.low:+.4f}]"
                     for lv in levels if best is not None and not lv.best
                     and not math.isnan(lv.low))


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def table(effects: Effects) -> pd.DataFrame:
    """effects.csv: a row per level (n, mean, difference to the best, 95% CI, ...) and a row per F test."""
    rows: list[dict[str, Any]] = []
    for level in effects.levels:
        term = effects.term(level.factor)
        rows.append({"kind": "level", "factor": level.factor, "level": level.level, "n": level.n,
                     "mean": level.mean, "best": level.best, "tied": level.tied,
                     "difference": level.difference, "ci95_low": level.low, "ci95_high": level.high,
                     "confounded_with": " ".join(level.confounded_with),
                     "drawn": "; ".join(f"{knob} {low!r} to {high!r}" for knob, low, high in level.drawn),
                     "df": term.df if term else math.nan, "F": term.f_value if term else math.nan,
                     "p": term.p_value if term else math.nan})
    for term in effects.terms:
        rows.append({"kind": "test", "factor": term.name, "df": term.df, "F": term.f_value,
                     "p": term.p_value, "significant": term.significant})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame.insert(0, "metric", effects.metric)
    return frame


def markdown(effects: Effects) -> str:
    """effects.md: the sentence, how it was computed, then a table per knob."""
    lines = ["# Effects of the swept settings", "", sentence(effects), ""]
    left = ", ".join(f"{n} {status}" for status, n in sorted(effects.left_out.items()))
    counted = f"{effects.counted} run counts" if effects.counted == 1 else f"{effects.counted} runs count"
    left_said = f"; left out: {left} (their scores are not results)." if left else "."
    if effects.metric is None:
        lines.append(f"No selection score: {counted}{left_said}")
    else:
        held = (" (the validation split's)" if effects.metric.startswith("val_") else
                " (these runs hold out no validation split)" if effects.metric.startswith("test_") else "")
        lines.append(f"Selection score: final `{effects.metric}`{held}. {counted}{left_said}")
    if effects.counted and effects.metric and not effects.continuous:
        lines.append(f"Model: statsmodels OLS, `{effects.formula}`"
                     + (", replicates: runs that differ in seed alone" if effects.replicated else "")
                     + ("" if math.isnan(effects.residual_df) else
                        f", {effects.residual_df:g} residual degrees of freedom") + ". `mean` is "
                     "the mean of a level's runs; its difference to the best level is the model's, "
                     "the other knobs held fixed (without seeds: the difference of the means). "
                     f"Verdicts: mattered at p < {ALPHA:g}; `no effect larger than` the margin "
                     f"±{effects.margin:g} (report.margin, in {effects.metric}'s units) where every "
                     "difference's 95% interval lies inside it; else no difference shown.")
    if effects.no_interval and not effects.continuous:
        lines.append(f"No interval: {effects.no_interval}.")
    lines.append("")
    if effects.confounded:
        lines += ["## Confounded", ""]
        lines += [f"- {_and(group)}: some of their changes always come together in the runs, so those "
                  "effects cannot be told apart (no number is given for them)."
                  for group in effects.confounded]
        lines.append("")
    if effects.terms:
        lines += ["## Tests (F, type 2)", "", "| term | df | F | p | significant (p < 0.05) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {t.name} | {t.df:g} | {t.f_value:.3g} | {t.p_value:.2g} | "
                  f"{'yes' if t.significant else 'no'} |" for t in effects.terms]
        lines.append("")
    for factor in [*effects.factors, *([effects.label] if effects.label else [])]:
        if effects.continuous:
            drawn = " | ".join(f"{knob} (range)" for knob in effects.continuous)
            lines += [f"## {factor}", "", f"| {factor} | n | mean | {drawn} |",
                      "|---|---|---|" + "---|" * len(effects.continuous)]
            lines += [f"| {readable(lv.level)} | {lv.n} | {lv.mean:.4f} | " + " | ".join(
                _span(low, high) for _, low, high in lv.drawn) + " |"
                for lv in effects.of(factor)]
            lines.append("")
            continue
        lines += [f"## {factor}", "", f"| {factor} | n | mean | difference to best | 95% CI |",
                  "|---|---|---|---|---|"]
        for level in effects.of(factor):
            compared = ("(best)" if level.best else
                        f"confounded with {_and(level.confounded_with)}" if level.confounded_with else
                        "" if math.isnan(level.difference) else
                        "0.0000 (tied with the best)" if level.tied else f"{level.difference:+.4f}")
            interval = "" if math.isnan(level.low) else f"[{level.low:+.4f}, {level.high:+.4f}]"
            lines.append(f"| {readable(level.level)} | {level.n} | {level.mean:.4f} | {compared} "
                         f"| {interval} |")
        lines.append("")
    return "\n".join(lines)


def margin_of(runs: Sequence[Run]) -> float:
    """The runs' recorded `report.margin` (the first run's that has one), else MARGIN."""
    found = (((r.summary.get("config") or {}).get("report") or {}).get("margin") for r in runs)
    return float(next((m for m in found if isinstance(m, int | float)), MARGIN))


def sweep_sentence(runs: Sequence[Run], margin: float | None = None) -> str:
    """The effects of a sweep's knobs in one sentence (for the end of a sweep)."""
    return sentence(analyse(runs, margin_of(runs) if margin is None else margin))
