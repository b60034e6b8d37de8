"""Is a difference between two settings real? `python -m alexnet.compare DIR --by KEY`

Splits the finished runs under DIR by the two values of KEY (e.g. augmentation.normalize), and
prints the difference of a score (default final_acc) with its 95% interval and p-value: a paired
t-test when the runs pair up (same other hyperparameters and seed), else Welch's t-test, which is
refused while the runs also differ in other hyperparameters than seed (they would be pooled as
repeats) unless --pool. Run a sweep with seeds first:
python -m alexnet.train -m seed=0,1,2 augmentation.normalize=true,false"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from alexnet.results.collect import collect
from alexnet.results.report import varying_columns
from alexnet.results.stats import SCORES, compare_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexnet.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep dirs or run dirs")
    parser.add_argument("--by", required=True, help="the hyperparameter whose two values to compare")
    parser.add_argument("--metric", default="final_acc", choices=list(SCORES))
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
    print(f"{result.metric}: {args.by}={first} minus {args.by}={second} = {result.difference:+.4f} "
          f"(95% CI {result.low:+.4f} to {result.high:+.4f}), {result.test}, "
          f"n = {result.n[0]} vs {result.n[1]}, p = {result.p_value:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
