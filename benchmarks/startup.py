"""Start-up of the command line, this checkout against an earlier commit, sides alternated in one
run so that the machine's noise falls on both: `python -m alexnet.train --help`, and a one-epoch
run of alexnet_cifar on 48 tiny images (its wall time is start-up: the epoch itself takes 0.3 s).

    python benchmarks/startup.py --before 4f8b8e6 --rounds 5 --json benchmarks/startup.json

The earlier commit is checked out into a temporary git worktree and run from there (its own
`alexnet` package first on the path); the figures are medians of the rounds, in seconds."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from cifar_files import write_cifar  # noqa: E402


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def cpu_model() -> str:
    """The CPU's name as Linux gives it (figures differ between CPU models), with its family."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in info if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return f"{fields.get('model name', 'unknown CPU')} (family {fields.get('cpu family', '?')})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        before = scratch / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=REPO,
                       check=True, capture_output=True)
        try:
            data = write_cifar(scratch / "data")
            sides = {"before": before, "after": REPO}
            times: dict[str, dict[str, list[float]]] = {s: {"help": [], "run": []} for s in sides}
            for round_ in range(args.rounds + 1):  # round 0 warms the file cache, not counted
                for side, root in sides.items():
                    env = {**os.environ, "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": ""}
                    help_s = timed([sys.executable, "-m", "alexnet.train", "--help"], root, env)
                    run_s = timed([sys.executable, "-m", "alexnet.train", "model=alexnet_cifar",
                                   "epochs=1", f"data.root={data}", "data.download=false",
                                   "progress=false", f"hydra.run.dir={scratch / side / str(round_)}"],
                                  root, env)
                    if round_:
                        times[side]["help"].append(help_s)
                        times[side]["run"].append(run_s)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=REPO,
                           check=False, capture_output=True)

    after_commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                  capture_output=True).stdout.strip()
    result = {
        "machine": f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(), "rounds": args.rounds,
        "before": args.before, "after": after_commit,
        "median_s": {side: {what: round(statistics.median(values), 2)
                            for what, values in kinds.items()} for side, kinds in times.items()},
        "all_s": {side: {what: [round(v, 2) for v in values] for what, values in kinds.items()}
                  for side, kinds in times.items()},
    }
    for what in ("help", "run"):
        b, a = result["median_s"]["before"][what], result["median_s"]["after"][what]
        print(f"{what:>4}: before {b:.2f} s, after {a:.2f} s ({b / a:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
