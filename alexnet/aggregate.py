"""Gather a sweep's runs (finished, failed, pruned, running, killed, not yet started) into tables and
pictures, and say how far a running sweep has got.

python -m alexnet.aggregate [DIR ...]

Writes into the sweep dir (or --out): results.csv/.md (a row per run, ranked by selection score: val_acc
with a validation split, else test_acc), summary.csv/.md (seeds pooled: mean and 95% intervals),
effects.csv/.md (what each swept setting did), the notebook's table with --compare-notebook, and plots.
Prints results.md, the effects in a sentence and, while runs are unfinished, their epochs done and the
estimated time left. Every multirun does this at its end; run it by hand on any runs, or mid-sweep."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from alexnet.results import progress
from alexnet.results.effects import sweep_sentence
from alexnet.results.report import aggregate, newest_sweep
from alexnet.run.record import MISSED_BEATS

EXAMPLE = """examples:
  python -m alexnet.aggregate                          # the sweep under outputs/sweeps started last
  python -m alexnet.aggregate outputs/sweeps/mine --compare-notebook
  python -m alexnet.aggregate outputs/sweeps/2026-11-27 --out outputs/today   # many sweeps, one table"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexnet.aggregate", description=__doc__, epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="*", type=Path,
                        help="sweep dirs, run dirs, or parents of many (default: newest sweep)")
    parser.add_argument("--out", type=Path, help="where to write (default: the single DIR)")
    parser.add_argument("--compare-notebook", action="store_true",
                        help="also print the notebook's table beside its reported F1/accuracy")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--margin", type=float, default=None,
                        help="the effects' equivalence margin, in the score's units (default: "
                             "the runs' report.margin, 0.01)")
    parser.add_argument("--stale-after", type=float, default=None, metavar="S",
                        help="report a `running` run of another machine whose heartbeat is older than S "
                             f"seconds as stale (default: {MISSED_BEATS} of its heartbeat_s); a run of this "
                             "machine whose trainer no longer holds its run dir's lock is stale at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        roots = args.dirs or [newest_sweep()]
        if missing := [str(d) for d in roots if not d.is_dir()]:
            raise FileNotFoundError(f"not a directory: {', '.join(missing)}")
        out_dir = args.out or (roots[0] if len(roots) == 1 else None)
        if out_dir is None:
            raise FileNotFoundError("several DIRs given: say where to write with --out DIR")
        runs = aggregate(roots, out_dir, args.compare_notebook, plots=not args.no_plots,
                         stale_after_s=args.stale_after, margin=args.margin).runs
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((out_dir / "results.md").read_text())
    if args.compare_notebook:
        comparison = out_dir / "notebook_comparison.md"
        print(comparison.read_text() if comparison.is_file() else
              "no run here is one of the notebook's experiments (experiment=alexnet1..alexnet8)")
    print(sweep_sentence(runs, args.margin))
    if (unfinished := progress.describe(runs)) is not None:
        print(unfinished)
    print(f"wrote {out_dir / 'results.csv'} (effects: {out_dir / 'effects.md'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
