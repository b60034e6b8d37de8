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
from alexnet.launch.slots import SlotWaitStopped, hold_slot
from alexnet.run.record import RunRecord
from helpers import assert_same_metrics, records, start, train

SIX = ["optimizer=sgd,adam", "batch_size=16,32,64"]


def small(root: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", *extra, "epochs=2", "model=alexnet_cifar", "torch_threads=1",
            f"data.root={root}", "data.download=false", "progress=false",
            f"hydra.sweep.dir={out}"]


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
    assert "2 at a time" in result.stdout and "6 runs: 6 completed" in result.stderr
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 6 and (table["status"] == "completed").all()

    intervals = [(r["attempts"][0]["start_unix"], r["heartbeat_at"]) for r in records(out).values()]
    overlapping = [(a, b) for a, b in combinations(intervals, 2) if a[0] < b[1] and b[0] < a[1]]
    assert overlapping  # runs did run at the same time
    for began, _ in intervals:  # ... and never more than n_jobs = 2 at once
        assert sum(s <= began < e for s, e in intervals) <= 2
    assert {r["torch_threads"] for r in records(out).values()} == {1}

    assert_same_metrics(out, basic_sweep)


def test_submitit_local_runs_the_sweep_and_a_preempted_job_is_requeued_and_resumes(
        slower_cifar_root, tmp_path):
    out = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", "optimizer=sgd,adam", "epochs=3",
            "batch_size=8", "data.train_subset=512", "model=alexnet_cifar", "torch_threads=1",
            f"data.root={slower_cifar_root}", "data.download=false", "progress=false"]
    process = start(*args, f"hydra.sweep.dir={out}", cwd=tmp_path)
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
    assert_same_metrics(out, reference)


def test_slots_go_to_the_first_free_one_and_a_killed_holder_frees_its_slot(tmp_path):
    gpus = ["GPU-a", "GPU-b", "GPU-c"]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from alexnet.launch.slots import hold_slot\n"
        f"with hold_slot(Path({str(tmp_path)!r}), {gpus!r}, 1) as slot:\n"
        "    print(slot.index, flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "0"
    with hold_slot(tmp_path, gpus, 1) as first, hold_slot(tmp_path, gpus, 1) as second:
        assert (first.index, second.index) == (1, 2)
    with hold_slot(tmp_path, gpus, 1) as again:  # released out of order: the lowest free one
        assert again.index == 1
        with pytest.raises(SlotWaitStopped), hold_slot(tmp_path, gpus[:2], 1,
                                                       stopped=lambda: True):
            pass  # all taken, and the sweep is stopping: it stops waiting
    holder.kill()  # SIGKILL while holding slot 0
    holder.wait()
    with hold_slot(tmp_path, gpus, 1) as freed:
        assert freed.index == 0


def test_slots_are_per_machine_so_two_sweeps_spread_over_the_gpus(tmp_path):
    cfg = OmegaConf.create({"device": "auto", "torch_threads": None,
                            "launch": {"jobs_per_gpu": 2, "slots_dir": str(tmp_path / "slots")}})
    joblib = OmegaConf.create({"_target_": "hydra_plugins.alexnet_sweeps.parallel_launcher."
                               "ParallelLauncher", "n_jobs": 4})
    both = ["GPU-a", "GPU-b"]
    with placed(cfg, joblib, tmp_path / "sweep-1", both) as a, \
            placed(cfg, joblib, tmp_path / "sweep-2", both) as b:  # another sweep, same machine
        assert (a.device, a.slot, b.device, b.slot) == ("cuda:0", "GPU-a#0", "cuda:1", "GPU-b#0")
        # A sweep started with CUDA_VISIBLE_DEVICES=<GPU b> sees GPU b as cuda:0: still GPU b.
        with placed(cfg, joblib, tmp_path / "sweep-3", ["GPU-b"]) as c:
            assert (c.device, c.slot) == ("cuda:0", "GPU-b#1")
        with placed(cfg, joblib, tmp_path / "sweep-1", both) as d:
            assert (d.device, d.slot) == ("cuda:0", "GPU-a#1")
    basic = OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher."
                              "BasicLauncher"})
    with placed(cfg, basic, tmp_path, both) as alone:
        assert alone == Placement("auto", None)
    with placed(OmegaConf.merge(cfg, {"device": "cpu"}), joblib, tmp_path, []) as cpu:
        assert cpu.device == "cpu" and cpu.slot is None


def test_threads_split_the_cores_between_parallel_jobs(monkeypatch):
    monkeypatch.setattr("alexnet.launch.placement.cores", lambda: 8)
    assert threads_for(None, OmegaConf.create({"n_jobs": 2})) == 4
    assert threads_for(None, OmegaConf.create({"n_jobs": -1})) == 1
    assert threads_for(3, OmegaConf.create({"n_jobs": 2})) == 3
    assert threads_for(None, OmegaConf.create({"cpus_per_task": 6})) == 6
    assert threads_for(None, OmegaConf.create({})) is None


def wait_for_rows(paths: list[Path], process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while not all(p.is_file() and len(p.read_text().splitlines()) > 1 for p in paths):
        assert time.monotonic() < deadline and process.poll() is None, process.stdout.read()
        time.sleep(0.05)


def two_runs(root: Path, out: Path, *extra: str, sweep: tuple[str, ...] = (
        "optimizer=sgd,adam", "epochs=3")) -> list[str]:
    """Two runs of 3 short epochs (192 images), one thread each; or another `sweep`."""
    return ["-m", *sweep, "data.train_subset=192", "model=alexnet_cifar", "augmentation=crop_flip",
            "torch_threads=1", f"data.root={root}", "data.download=false", "progress=false",
            f"hydra.sweep.dir={out}", *extra]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_under_the_parallel_launcher_stops_every_running_job_at_a_safe_point(
        slower_cifar_root, tmp_path, stop):
    out = tmp_path / "sweep"
    # Three workers for two jobs: the idle one must not die of the signal and break the pool.
    process = start(*two_runs(slower_cifar_root, out, "hydra/launcher=parallel",
                              "hydra.launcher.n_jobs=3"), cwd=tmp_path, own_group=True)
    wait_for_rows([out / "0" / "metrics.csv", out / "1" / "metrics.csv"], process)
    os.killpg(process.pid, stop)  # to the launcher and every worker
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 128 + stop, output
    assert "2 runs: 2 interrupted" in output and f"stopped: {stop.name}" in output
    for run in ("0", "1"):
        record = json.loads((out / run / "results.json").read_text())
        assert record["status"] == "interrupted", (run, record["error"])
        assert (out / run / "checkpoint.pt").is_file()
    assert set(pd.read_csv(out / "results.csv")["status"]) == {"interrupted"}
    if stop != signal.SIGINT:
        return
    # Ctrl-C, then the same command with the basic launcher and progress bars on: exactly the
    # metrics of an uninterrupted sweep at the same torch_threads.
    again = train(*two_runs(slower_cifar_root, out, "progress=true"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    reference = train(*two_runs(slower_cifar_root, tmp_path / "reference"), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    assert_same_metrics(out, tmp_path / "reference")


def test_a_job_that_stops_the_sweep_stops_its_running_siblings_at_a_safe_point(
        slower_cifar_root, tmp_path):
    out = tmp_path / "sweep"
    intruder = out / "2"  # job 2's dir holds another run: job 2 stops the sweep as it starts,
    RunRecord(intruder, {"epochs": 1}, ["optimizer=rmsprop"]).finish("completed")
    result = train(*two_runs(slower_cifar_root, out, "hydra/launcher=parallel",
                             sweep=("optimizer=sgd", "epochs=30,1,2")),
                   cwd=tmp_path)  # ... when job 1 (1 epoch) is done and job 0 (30) is training
    # (job 0 has 30 epochs, not 3: the workers may start their first jobs seconds apart)
    assert result.returncode == 1, result.stderr
    assert f"{intruder} holds another run" in result.stderr
    record = json.loads((out / "0" / "results.json").read_text())
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]["message"]  # (told)
    assert (out / "0" / "checkpoint.pt").is_file()
    assert json.loads((out / "1" / "results.json").read_text())["status"] == "completed"
    assert json.loads((intruder / "results.json").read_text())["overrides"] == ["optimizer=rmsprop"]
