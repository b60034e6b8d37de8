"""Is the difference between two values of one setting real, or run-to-run noise?

python -m alexnet.compare DIR [DIR ...] --by KEY

Splits the runs whose scores count (not failed, diverged, pruned or unfinished) by the two values of KEY
(e.g. augmentation.normalize) and prints the difference of their selection score (val_acc with a validation
split, else test_acc; --metric for another) with its 95% confidence interval and p-value. Runs that pair up
(same other hyperparameters and seed) get a paired t-test, else Welch's, refused while they also differ in
another hyperparameter than seed (--pool compares them anyway). With no spread at all no test can judge.
Exit status: 0 judged, 1 cannot judge, 2 bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from alexnet.results.collect import collect, varying_columns
from alexnet.results.effects import margin_of
from alexnet.results.stats import COLUMNS, SCORE, compare_settings

EXAMPLE = """example (a sweep with seeds first):
  python -m alexnet.train -m seed=0,1,2 augmentation.normalize=true,false
  python -m alexnet.compare outputs/sweeps/2026-11-27/15-04-01 --by augmentation.normalize"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexnet.compare", description=__doc__, epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep dirs, run dirs, or parents of many")
    parser.add_argument("--by", required=True, help="the hyperparameter whose two values to compare")
    parser.add_argument("--metric", default=SCORE, choices=[SCORE, *COLUMNS],
                        help="the score to compare (default: score, each run's selection score)")
    parser.add_argument("--margin", type=float, default=None,
                        help="a difference smaller than this is no difference, in the score's "
                             "units (default: the runs' report.margin, 0.01)")
    parser.add_argument("--pool", action="store_true",
                        help="when the runs do not pair up, compare them even if they also differ "
                             "in other hyperparameters than seed (refused otherwise)")
    args = parser.parse_args(argv)
    runs = collect(args.dirs).runs
    if not runs:
        print(f"error: no run under {' '.join(map(str, args.dirs))}", file=sys.stderr)
        return 2
    try:
        result = compare_settings(runs, args.by, varying_columns(runs), args.metric, args.pool)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    first, second = result.values
    said = f"{result.metric}: {args.by}={first} minus {args.by}={second} = {result.difference:+.4f}"
    sizes = f"{result.test}, n = {result.n[0]} vs {result.n[1]}"
    if not result.judged:
        print(f"{said}, {sizes}: cannot judge: {result.cannot_judge}")
        return 1
    margin = margin_of(runs) if args.margin is None else args.margin
    reach = max(abs(result.low), abs(result.high))
    verdict = ("a difference" if result.p_value < 0.05 else
               f"no difference larger than ±{margin:g}" if reach <= margin else
               f"no difference shown; the data still allow up to ±{reach:.4f}")
    print(f"{said} (95% CI {result.low:+.4f} to {result.high:+.4f}), {sizes}, "
          f"p = {result.p_value:.3g}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
