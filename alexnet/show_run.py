"""What a run's network learned: `python -m alexnet.show_run RUN_DIR`

Redraws filters.png (the first convolution's kernels, as in the AlexNet paper's Figure 3) and mistakes.png
(the test images the run got most confidently wrong) from the run dir: its weights (model.pt, or checkpoint.pt
with checkpoint.keep=full), recorded config, mistakes.csv (recomputed on the CPU if missing) and the test
images from its data.root. A finished run draws both itself; this redraws them, e.g. for a moved run."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from alexnet.files import OutputError
from alexnet.results.learned import LearnedError, redraw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexnet.show_run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a folder a run wrote (it holds results.json)")
    parser.add_argument("--data-root", type=Path, metavar="DIR",
                        help="the folder that holds cifar-100-python/ (default: the run's "
                             "data.root, relative to where this command runs)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where to write the pictures (default: RUN_DIR itself)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.run_dir.is_dir():
        print(f"error: {args.run_dir} is not a directory: give a run dir, e.g. "
              "outputs/runs/DATE/TIME", file=sys.stderr)
        return 2
    try:
        written = redraw(args.run_dir, args.out, args.data_root)
    except (LearnedError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
