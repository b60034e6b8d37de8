"""Several runs at once: the joblib and submitit launchers on the real CLI, and the slot pool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from alexnet.launch.placement import Placement, placed, threads_for
from alexnet.launch.slots import hold_slot

TIMINGS = ["train_time_s", "images_per_s", "epoch_time_s"]
SIX = ["optimizer=sgd,adam", "batch_size=16,32,64"]


def train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alexnet.train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def small(root: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", *extra, "epochs=2", "model=alexnet_cifar", "torch_threads=1",
            f"data.root={root}", "data.download=false", "progress=false",
            f"hydra.sweep.dir={out}"]


def records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}


def metrics_by_overrides(sweep: Path) -> dict[tuple[str, ...], pd.DataFrame]:
    return {tuple(sorted(r["overrides"])): pd.read_csv(sweep / name / "metrics.csv").drop(
        columns=TIMINGS) for name, r in records(sweep).items()}


@pytest.fixture(scope="module")
def basic_sweep(cifar_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("basic") / "sweep"
    result = train(*small(cifar_root, out, *SIX), cwd=out.parent)
    assert result.returncode == 0, result.stderr
    return out


def test_parallel_preset_runs_two_at_a_time_on_a_cpu_with_identical_metrics(
        cifar_root, basic_sweep, tmp_path):
    out = tmp_path / "sweep"
    result = train(*small(cifar_root, out, "hydra/launcher=parallel", *SIX), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "n_jobs=2" in result.stdout and "6 runs: 6 completed" in result.stderr
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 6 and (table["status"] == "completed").all()

    intervals = [(r["attempts"][0]["start_unix"], r["heartbeat_at"]) for r in records(out).values()]
    overlapping = [(a, b) for a, b in combinations(intervals, 2) if a[0] < b[1] and b[0] < a[1]]
    assert overlapping  # runs did run at the same time
    for start, _ in intervals:  # ... and never more than n_jobs = 2 at once
        assert sum(s <= start < e for s, e in intervals) <= 2
    assert {r["torch_threads"] for r in records(out).values()} == {1}

    ours, reference = metrics_by_overrides(out), metrics_by_overrides(basic_sweep)
    assert ours.keys() == reference.keys()
    for key, frame in ours.items():
        pd.testing.assert_frame_equal(frame, reference[key])


def test_submitit_local_runs_the_sweep_and_a_preempted_job_is_requeued_and_resumes(
        slower_cifar_root, tmp_path):
    out = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", "optimizer=sgd,adam", "epochs=3",
            "batch_size=8", "model=alexnet_cifar", "torch_threads=1",
            f"data.root={slower_cifar_root}", "data.download=false", "progress=false"]
    process = subprocess.Popen([sys.executable, "-m", "alexnet.train", *args,
                                f"hydra.sweep.dir={out}"], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics = out / "0" / "metrics.csv"
    deadline = time.monotonic() + 300
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 1):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    pid = json.loads((out / "0" / "results.json").read_text())["pid"]
    os.kill(pid, signal.SIGUSR2)  # what SLURM (via submitit) sends before preempting a job
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert "2 runs: 2 completed" in output
    attempts = json.loads((out / "0" / "results.json").read_text())["attempts"]
    assert [a["resumed_from_epoch"] for a in attempts] == [None, 1]  # requeued, then resumed
    logs = "".join(p.read_text() for p in (out / ".submitit").rglob("*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs

    reference = tmp_path / "reference"
    again = train(*[a for a in args if not a.startswith("hydra/launcher")],
                  f"hydra.sweep.dir={reference}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    ours, theirs = metrics_by_overrides(out), metrics_by_overrides(reference)
    for key, frame in ours.items():
        pd.testing.assert_frame_equal(frame, theirs[key])


def test_slots_go_to_the_first_free_one_and_a_killed_holder_frees_its_slot(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from alexnet.launch.slots import hold_slot\n"
        f"with hold_slot(Path({str(tmp_path)!r}), 3) as slot:\n"
        "    print(slot.index, flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "0"
    with hold_slot(tmp_path, 3) as first, hold_slot(tmp_path, 3) as second:
        assert (first.index, second.index) == (1, 2)
    with hold_slot(tmp_path, 3) as again:  # released out of order: the lowest free one
        assert again.index == 1
    holder.kill()  # SIGKILL while holding slot 0
    holder.wait()
    with hold_slot(tmp_path, 3) as freed:
        assert freed.index == 0


def test_devices_come_from_slots_one_gpu_each_then_shared(tmp_path):
    cfg = OmegaConf.create({"device": "auto", "torch_threads": None, "launch": {"jobs_per_gpu": 2}})
    joblib = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher."
                               "JoblibLauncher", "n_jobs": 4})
    with placed(cfg, joblib, tmp_path, gpus=2) as a, placed(cfg, joblib, tmp_path, gpus=2) as b:
        with placed(cfg, joblib, tmp_path, gpus=2) as c:
            assert [p.device for p in (a, b, c)] == ["cuda:0", "cuda:1", "cuda:0"]
        with placed(cfg, joblib, tmp_path, gpus=2) as d:  # c's slot, freed: its GPU again
            assert (d.slot, d.device) == (2, "cuda:0")
    basic = OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher."
                              "BasicLauncher"})
    with placed(cfg, basic, tmp_path, gpus=2) as alone:
        assert alone == Placement("auto", None)
    with placed(OmegaConf.merge(cfg, {"device": "cpu"}), joblib, tmp_path, gpus=0) as cpu:
        assert cpu.device == "cpu" and cpu.slot is None


def test_threads_split_the_cores_between_parallel_jobs(monkeypatch):
    monkeypatch.setattr("alexnet.launch.placement.cores", lambda: 8)
    assert threads_for(None, OmegaConf.create({"n_jobs": 2})) == 4
    assert threads_for(None, OmegaConf.create({"n_jobs": -1})) == 1
    assert threads_for(3, OmegaConf.create({"n_jobs": 2})) == 3
    assert threads_for(None, OmegaConf.create({"cpus_per_task": 6})) == 6
    assert threads_for(None, OmegaConf.create({})) is None
