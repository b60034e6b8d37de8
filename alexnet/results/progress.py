"""How far a running sweep has got, in one line: its unfinished runs and the time left by the one rule
(alexnet/run/progress.py); stale and interrupted runs go on only when the sweep is run again, so are named."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence

from alexnet.results.collect import Run
from alexnet.run.progress import duration, seconds_left
from alexnet.scores import Status

PENDING = (Status.running, Status.waiting, Status.not_started)  # they train on unaided
HALTED = (Status.stale, Status.interrupted)


def describe(runs: Sequence[Run]) -> str | None:
    """`not finished: 1 running, 1 not_started (of 3 runs); time left: about 85 s (...)`, or None."""
    unfinished = [run for run in runs if run.status in (*PENDING, *HALTED)]
    if not unfinished:
        return None
    paces = {id(run): float(run.metrics["epoch_time_s"].mean()) for run in runs
             if "epoch_time_s" in run.metrics and run.metrics["epoch_time_s"].notna().any()}
    planned = Counter(p for p in (r.summary.get("epochs_planned") for r in runs) if isinstance(p, int))
    usual = planned.most_common(1)[0][0] if planned else None
    work = []
    for run in unfinished:
        epochs = run.summary.get("epochs_planned") or run.hyperparameters.get("epochs") or usual
        if run.status in PENDING:
            done = int(run.summary.get("epochs_done") or 0)
            work.append((None if epochs is None else max(int(epochs) - done, 0), paces.get(id(run))))
    at_once = max(1, sum(run.status == Status.running for run in runs))
    left = seconds_left(work, at_once, statistics.median(paces.values()) if paces else None)
    counts = Counter(str(run.status) for run in unfinished)
    said = f"not finished: {', '.join(f'{n} {s}' for s, n in counts.items())} (of {len(runs)} runs); "
    if not work:
        return said + "nothing is training: run the sweep's command again to finish it"
    if left is None:
        return said + "time left: unknown (no epoch measured yet, or a run's epochs unknown)"
    return said + (f"estimated time left: about {duration(left)} ({sum(e for e, _ in work)} epochs "
                   f"to go, {at_once} run{'s' if at_once > 1 else ''} at a time)"
                   + ("; stale and interrupted runs go on when the sweep is run again"
                      if len(work) < len(unfinished) else ""))
