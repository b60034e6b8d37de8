"""What many tests do: run the real command line, wait for a run's epochs, read its records back,
compare metrics with an uninterrupted run's, compose the config in process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from alexnet import fit as training
from alexnet.configs import compose_config
from alexnet.hyperparameters import identity
from alexnet.launch.placement import Placement
from alexnet.resume.stop import GracefulStop

# Columns that change between two runs of the same settings: left out where runs are compared.
TIMINGS = ["train_time_s", "images_per_s", "epoch_time_s"]


# The tests' runs see no GPU: device=auto is the CPU, where a resumed run's metrics are exactly an
# uninterrupted one's (on a GPU host too, where cudnn and bf16 would only come close).
CPU_ONLY = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def run_cli(module: str, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m module args...` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=CPU_ONLY)


def train(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_cli("alexnet.train", *args, cwd=cwd, timeout=timeout)


def start(*args: str, cwd: Path, own_group: bool = False) -> subprocess.Popen:
    """The training command in the background, its output in one pipe; `own_group`: in its own
    process group, as a terminal runs it (a Ctrl-C signals the group whole)."""
    return subprocess.Popen([sys.executable, "-m", "alexnet.train", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=own_group, env=CPU_ONLY)


def wait_for_epochs(metrics: Path, count: int, process: subprocess.Popen,
                    timeout: float = 300) -> None:
    """Until `metrics` (a run's metrics.csv) holds `count` epochs; fails if `process` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) > count:
            return
        if process.poll() is not None:
            raise AssertionError(f"finished before epoch {count}: {process.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no epoch {count} in {metrics} after {timeout} s")


def records(sweep: Path) -> dict[str, dict]:
    """Each run's results.json, by its run dir's name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}


def metrics_without_timings(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=TIMINGS)


def metrics_by_overrides(sweep: Path) -> dict[tuple[str, ...], pd.DataFrame]:
    """Each run's metrics (timings left out) by the overrides that decide its result."""
    return {identity(r["overrides"]): metrics_without_timings(sweep / name)
            for name, r in records(sweep).items()}


def assert_same_metrics(sweep: Path, reference: Path) -> None:
    """Every run of `sweep` has the metrics of the same run in `reference`, epoch by epoch."""
    ours, theirs = metrics_by_overrides(sweep), metrics_by_overrides(reference)
    assert ours.keys() == theirs.keys()
    for key, frame in ours.items():
        pd.testing.assert_frame_equal(frame, theirs[key])


def fit(cfg: DictConfig, record, stop: GracefulStop | None = None, saved: dict | None = None,
        placement: Placement | None = None) -> str:
    """One run trained alone (a group of one, as the command line trains it); its status."""
    member = training.Member(cfg, record, saved=saved)
    training.fit([member], stop or GracefulStop(),
                 placement or Placement(str(cfg.device), cfg.torch_threads))
    return member.status


def tiny_config(root: Path, *overrides: str) -> DictConfig:
    """The composed config of a small CPU run on the CIFAR files in `root`."""
    return compose_config(f"data.root={root}", "data.download=false", "model=alexnet_cifar",
                          "progress=false", "device=cpu", *overrides)


class StopAtSafePoint(GracefulStop):
    """A stop request at the n-th look (1: before training starts; then after every training
    step and at each epoch's end), the moment a signal would be seen there."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.seen = at, 0

    def requested(self) -> signal.Signals | None:
        self.seen += 1
        return signal.SIGTERM if self.seen == self.at else None
