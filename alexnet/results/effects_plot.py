"""effects.png: a panel per knob (and the experiments) with each level's difference to the best and its 95%
interval, as in effects.md, and a full grid's two-way interaction plots of cell means."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402

from alexnet.files import write_atomic  # noqa: E402
from alexnet.results.collect import readable  # noqa: E402
from alexnet.results.effects import Effects  # noqa: E402

FILE = "effects.png"
PER_ROW = 4


def draw(effects: Effects, path: Path) -> Path | None:
    """Draw the effects into `path`; None (and no file) when there is no knob to draw."""
    panels = [*effects.factors, *([effects.label] if effects.label else [])]
    pairs = [t.factors for t in effects.terms if len(t.factors) == 2]
    if not panels:
        path.unlink(missing_ok=True)  # an earlier sweep's picture is not this one's
        return None
    count = len(panels) + len(pairs)
    rows, columns = math.ceil(count / PER_ROW), min(count, PER_ROW)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.8 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax, factor in zip(flat, panels, strict=False):
        _main_effect(ax, effects, factor)
    for ax, pair in zip(flat[len(panels):], pairs, strict=False):
        _interaction(ax, effects, pair)
    for ax in flat[count:]:
        ax.set_visible(False)
    why = f" (no interval: {effects.no_interval})" if effects.no_interval else ""
    fig.suptitle(textwrap.fill(f"Effects on {effects.metric}, {effects.counted} runs{why}",
                               int(10 * 4.2 * columns)), fontsize="medium")  # (as wide as the figure)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
    return path


def _main_effect(ax: plt.Axes, effects: Effects, factor: str) -> None:
    """Each level's difference to the best with its 95% CI, else its mean; a confounded one just the word."""
    levels = effects.of(factor)
    positions = list(range(len(levels)))
    judged = effects.no_interval is None
    others = [lv for lv in levels if not lv.best]
    if others and all(lv.confounded_with for lv in others):
        partners = sorted({p for lv in others for p in lv.confounded_with})
        ax.text(0.5, 0.5, f"confounded with\n{chr(10).join(partners)}:\nno number can be given",
                ha="center", va="center", transform=ax.transAxes, color="tab:gray", style="italic")
        ax.set(title=f"{factor} (confounded)", xticks=[], yticks=[])
        return
    if judged:
        ax.axhline(0, color="lightgray", zorder=0)
    else:
        ax.plot(positions, [lv.mean for lv in levels], color="lightgray", zorder=1)
    for x, level in zip(positions, levels, strict=True):
        if level.confounded_with:
            ax.annotate("confounded", (x, 0 if judged else level.mean), ha="center", va="bottom",
                        fontsize="x-small", color="tab:gray", style="italic")
        elif judged and level.best:
            ax.plot(x, 0, "*", color="tab:green", markersize=11, zorder=2)
        elif judged and not math.isnan(level.difference):
            ax.errorbar(x, level.difference, yerr=[[level.difference - level.low],
                                                   [level.high - level.difference]],
                        fmt="o", color="tab:blue", capsize=4, zorder=2)
        elif not judged:
            ax.plot(x, level.mean, "o", color="tab:blue", zorder=2)
    ax.set_xticks(positions, [f"{readable(lv.level)}\n(n={lv.n})" for lv in levels],
                  rotation=45 if len(levels) > 4 or factor == effects.label else 0, fontsize="small")
    term = effects.term(factor)
    verdict = (f"p = {term.p_value:.2g}" if term else
               "partly confounded" if any(lv.confounded_with for lv in levels) else "")
    ax.set(title=f"{factor}" + (f" ({verdict})" if verdict else ""),
           ylabel=f"difference to the best (*) in {effects.metric}" if judged else f"mean {effects.metric}")


def _interaction(ax: plt.Axes, effects: Effects, pair: tuple[str, ...]) -> None:
    first, second = pair
    cells = effects.cells
    order = [str(lv.level) for lv in effects.of(first)]
    for level in effects.of(second):
        part = cells[cells[second].astype(str) == str(level.level)]
        part = part.set_index(part[first].astype(str)).reindex(order)
        ax.plot(range(len(order)), part["mean"], marker="o", label=f"{second}={readable(level.level)}")
    ax.set_xticks(range(len(order)), [readable(lv.level) for lv in effects.of(first)], fontsize="small")
    term = effects.term(first, second)
    ax.set(title=f"{first} x {second}" + (f" (p = {term.p_value:.2g})" if term else ""),
           xlabel=first, ylabel=f"mean {effects.metric}")
    ax.legend(fontsize="x-small")
