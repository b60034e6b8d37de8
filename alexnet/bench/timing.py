"""Timing fair to both sides: warmed up, alternated round by round, cold first calls kept apart."""

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
    median: dict[str, float]  # each side's median over the timed rounds
    first: dict[str, float]  # each side's cold first call (the warm-up)


def alternate(rounds: int, sides: dict[str, Callable[[], float]],
              warmup: bool = True) -> Alternated:
    """Each side's median over `rounds` alternated rounds after a warm-up (none for fresh processes).
    `notebook...` and `default_allocator` sides run with glibc's default allocator, as the notebook did."""
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
