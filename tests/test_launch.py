"""Several runs at once: the parallel and submitit launchers on the real CLI, and the slot pool."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from alexnet.launch.placement import Placement, hold_slot, placed, threads_for
from alexnet.resume.stop import Stop
from alexnet.run.record import RunRecord
from helpers import assert_same_metrics, metrics_without_timings, records, start, train


def two_runs(root: Path, out: Path, *extra: str, sweep: tuple[str, ...] = (
        "optimizer=sgd", "epochs=6,3")) -> list[str]:
    """Two runs of 6 and 3 short epochs (256 images), one thread each; or another `sweep`."""
    return ["-m", *sweep, "data.train_subset=256", "batch_size=16", "model=alexnet_cifar",
            "augmentation=crop_flip", "torch_threads=1", f"data.root={root}",
            "data.download=false", "progress=false", f"hydra.sweep.dir={out}", *extra]


@pytest.fixture(scope="module")
def reference(slower_cifar_root, tmp_path_factory) -> Path:
    """The two runs, uninterrupted, one after the other (Hydra's basic launcher)."""
    out = tmp_path_factory.mktemp("reference") / "sweep"
    result = train(*two_runs(slower_cifar_root, out), cwd=out.parent)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.xdist_group("test_launch:reference")
def test_a_killed_parallel_job_costs_that_job_alone_and_the_same_command_resumes_it(
        slower_cifar_root, reference, tmp_path):
    """kill -9 of job 0 (6 epochs) mid-epoch while job 1 (3) trains: job 1 ends completed with
    exactly the reference's metrics, job 0 is on record as interrupted (lost), the command stops
    naming the command that resumes it; that command again (here with the basic launcher and
    progress bars on) resumes job 0 to the reference's metrics and leaves job 1 alone."""
    out = tmp_path / "sweep"
    args = two_runs(slower_cifar_root, out, "hydra/launcher=parallel")
    process = start(*args, cwd=tmp_path)
    wait_for_rows([out / "0" / "metrics.csv"], process)  # job 0 has trained an epoch ...
    deadline = time.monotonic() + 300
    while (records(out).get("1") or {}).get("status") != "running":  # ... and job 1 trains
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.05)
    assert records(out)["0"]["status"] == "running"
    victim = records(out)["0"]["pid"]
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would: no handler runs
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 1, output
    assert "2 process(es) at a time" in output
    assert f"job #0 lost: {out / '0'}: its process was killed by SIGKILL (signal 9)" in output
    assert "2 runs: 1 completed, 1 interrupted" in output
    assert "stopped: 1 run(s) did not finish (interrupted)" in output
    assert "Resume it with:\n  python -m alexnet.train -m optimizer=sgd epochs=6,3" in output
    assert f"hydra/launcher=parallel hydra.sweep.dir={out}" in output
    assert "leaked semaphore" not in output  # (tqdm's lock in a job is a thread lock)
    killed, sibling = records(out)["0"], records(out)["1"]
    assert killed["status"] == "interrupted" and "killed by SIGKILL" in killed["error"]["message"]
    assert sibling["status"] == "completed" and sibling["torch_threads"] == 1
    pd.testing.assert_frame_equal(metrics_without_timings(out / "1"),
                                  metrics_without_timings(reference / "1"))

    again = train(*two_runs(slower_cifar_root, out, "progress=true"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert records(out)["1"]["attempts"] == sibling["attempts"]  # not trained again
    assert [a["resumed_from_epoch"] for a in records(out)["0"]["attempts"]][-1] >= 1
    assert_same_metrics(out, reference)


@pytest.mark.xdist_group("test_launch:reference")
def test_submitit_local_runs_the_sweep_and_a_preempted_job_is_requeued_and_resumes(
        slower_cifar_root, reference, tmp_path):
    out = tmp_path / "sweep"
    process = start(*two_runs(slower_cifar_root, out, "hydra/launcher=submitit_local"),
                    cwd=tmp_path)
    wait_for_rows([out / "0" / "metrics.csv"], process)
    pid = records(out)["0"]["pid"]
    os.kill(pid, signal.SIGUSR2)  # what SLURM (via submitit) sends before preempting a job
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert "2 runs: 2 completed" in output
    attempts = records(out)["0"]["attempts"]
    assert [a["resumed_from_epoch"] is None for a in attempts] == [True, False]  # requeued, resumed
    logs = "".join(p.read_text() for p in (out / ".submitit").rglob("*_log.*"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs
    assert_same_metrics(out, reference)


def test_slots_go_to_the_first_free_one_and_a_killed_holder_frees_its_slot(tmp_path):
    gpus = ["GPU-a", "GPU-b", "GPU-c"]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from alexnet.launch.placement import hold_slot\n"
        f"with hold_slot(Path({str(tmp_path)!r}), {gpus!r}, 1) as slot:\n"
        "    print(slot.index, flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "0"
    with hold_slot(tmp_path, gpus, 1) as first, hold_slot(tmp_path, gpus, 1) as second:
        assert (first.index, second.index) == (1, 2)
    with hold_slot(tmp_path, gpus, 1) as again:  # released out of order: the lowest free one
        assert again.index == 1
        with pytest.raises(Stop, match="SIGTERM while it waited for a free GPU slot"), \
                hold_slot(tmp_path, gpus[:2], 1, stopped=lambda: signal.SIGTERM):
            pass  # all taken, and the run is asked to stop: it stops waiting
    holder.kill()  # SIGKILL while holding slot 0
    holder.wait()
    with hold_slot(tmp_path, gpus, 1) as freed:
        assert freed.index == 0


def test_slots_are_per_machine_so_two_sweeps_spread_over_the_gpus(tmp_path):
    cfg = OmegaConf.create({"device": "auto", "torch_threads": None,
                            "launch": {"slots_dir": str(tmp_path / "slots")}})
    parallel = OmegaConf.create({"_target_": "hydra_plugins.alexnet_sweeps.parallel_launcher."
                                 "ParallelLauncher", "n_jobs": 4, "jobs_per_gpu": 2})
    both = ["GPU-a", "GPU-b"]
    with placed(cfg, parallel, tmp_path / "sweep-1", both) as a, \
            placed(cfg, parallel, tmp_path / "sweep-2", both) as b:  # another sweep, same machine
        assert (a.device, a.slot, b.device, b.slot) == ("cuda:0", "GPU-a#0", "cuda:1", "GPU-b#0")
        # A sweep started with CUDA_VISIBLE_DEVICES=<GPU b> sees GPU b as cuda:0: still GPU b.
        with placed(cfg, parallel, tmp_path / "sweep-3", ["GPU-b"]) as c:
            assert (c.device, c.slot) == ("cuda:0", "GPU-b#1")
        with placed(cfg, parallel, tmp_path / "sweep-1", both) as d:
            assert (d.device, d.slot) == ("cuda:0", "GPU-a#1")
    basic = OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher."
                              "BasicLauncher"})
    with placed(cfg, basic, tmp_path, both) as alone:
        assert alone == Placement("auto", None)
    with placed(OmegaConf.merge(cfg, {"device": "cpu"}), parallel, tmp_path, []) as cpu:
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


def test_a_signal_under_the_parallel_launcher_stops_every_running_job_at_a_safe_point(
        slower_cifar_root, tmp_path):
    """... to the whole process group, as a terminal's Ctrl-C does; 30 epochs, so that neither job
    has ended when both have trained their first epoch (the resume itself is tested above)."""
    out = tmp_path / "sweep"
    # Two places for three jobs: the third job never starts.
    process = start(*two_runs(slower_cifar_root, out, "hydra/launcher=parallel",
                              "hydra.launcher.n_jobs=2",
                              sweep=("optimizer=sgd", "epochs=30", "seed=0,1,2")),
                    cwd=tmp_path, own_group=True)
    wait_for_rows([out / "0" / "metrics.csv", out / "1" / "metrics.csv"], process)
    stop = signal.SIGINT
    os.killpg(process.pid, stop)  # to the launcher and every job
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 128 + stop, output
    assert "3 runs: 2 interrupted, 1 not_started" in output and f"stopped: {stop.name}" in output
    assert "Resume it with:\n  python -m alexnet.train -m optimizer=sgd epochs=30" in output
    for run in ("0", "1"):
        record = json.loads((out / run / "results.json").read_text())
        assert record["status"] == "interrupted", (run, record["error"])
        assert (out / run / "checkpoint.pt").is_file()
    assert not (out / "2").exists()


def test_a_stop_while_a_job_starts_reaches_it_and_the_command_exits_with_its_own_signal(
        slower_cifar_root, tmp_path):
    """A Ctrl-C to the launcher alone while its first job's process is starting up: the launcher
    passes it on (SIGTERM) to that job, which holds it until it can stop (not killed by it
    half-way through its imports); the command exits with the launcher's own signal."""
    out = tmp_path / "sweep"
    process = start(*two_runs(slower_cifar_root, out, "hydra/launcher=parallel",
                              "hydra.launcher.n_jobs=1"), cwd=tmp_path)
    job = wait_for_a_job_process(process)
    os.kill(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGINT, output
    assert "stopped: SIGINT" in output and "killed by" not in output
    assert not Path(f"/proc/{job}").exists()
    statuses = {name: r["status"] for name, r in records(out).items()}
    assert set(statuses.values()) <= {"interrupted"} and "1" not in statuses, statuses


def wait_for_a_job_process(launcher: subprocess.Popen) -> int:
    """The pid of the launcher's first job process, as soon as it exists."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.stdout.read()
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return int(pid)
        time.sleep(0.005)
    raise AssertionError("no job process started")


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
