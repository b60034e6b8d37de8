"""Timing that is fair to both sides: sides alternate round by round, each is warmed up first, and
the first (cold) call is kept apart so one-time costs can be reported on their own."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alexnet.speed import keep_freed_memory


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    result = work()
    sync(device)
    return time.perf_counter() - start, result


@dataclass
class Alternated:
    median: dict[str, float]  # each side's median figure over the timed rounds
    first: dict[str, float]  # each side's figure on its first, cold call (the warm-up)


def alternate(rounds: int, sides: dict[str, Callable[[], float]],
              warmup: bool = True) -> Alternated:
    """Warm each side up once (its cold figure kept apart), then run the sides in turn `rounds`
    times; the median of each side's figure. (warmup=False for sides that start afresh each time,
    like whole sweeps in new processes.) A side named `notebook...` or `default_allocator`
    runs with glibc's default allocator settings, as the notebook did; the others keep freed
    memory, as our training does on a CPU (alexnet/allocator.py)."""
    figures: dict[str, list[float]] = {name: [] for name in sides}
    first: dict[str, float] = {}
    for round_ in range(rounds + 1 if warmup else rounds):
        for name, side in sides.items():
            keep_freed_memory(not name.startswith(("notebook", "default_allocator")))
            figure = side()
            if warmup and round_ == 0:
                first[name] = figure
            else:
                figures[name].append(figure)
    keep_freed_memory(True)
    return Alternated({name: statistics.median(v) for name, v in figures.items()}, first)


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
