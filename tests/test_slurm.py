"""hydra/launcher=slurm through a real SLURM: `sbatch`, time limits, requeue and `scancel` on the
single-node cluster tests/slurm/up.sh starts (CI starts it; no accounting, as on many clusters)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from helpers import assert_same_metrics, records, start, train, wait_for_epochs

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.xdist_group("slurm"),  # one test's jobs at a time on the 2-CPU test cluster
    pytest.mark.skipif(shutil.which("sbatch") is None,
                       reason="no sbatch here: start a test cluster with `sudo bash tests/slurm/up.sh`"),
]


def on_slurm(root: Path, out: Path, *extra: str) -> list[str]:
    """A sweep on the test cluster's CPUs, one core a run, the queue watched every second."""
    return ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_task=null",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "launch.queue_poll_s=1",
            "launch.result_wait_s=2", "model=alexnet_cifar", f"data.root={root}",
            "data.download=false", "progress=false", f"hydra.sweep.dir={out}", *extra]


def slurm(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def job_log(sweep: Path, job: str) -> str:
    """The job's stdout and stderr, where the README says they land."""
    return "".join(p.read_text() for p in sorted((sweep / ".submitit" / job).glob(f"{job}_0_log.*")))


def test_a_sweep_runs_as_a_slurm_array_and_aggregates(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    result = train(*on_slurm(cifar_root, out, "optimizer=sgd,adam", "epochs=1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 runs: 2 completed" in result.stderr
    jobs = sorted(r["slurm_job"] for r in records(out).values())
    assert len(jobs) == 2 and jobs[0].split("_")[0] == jobs[1].split("_")[0]  # one array
    for job in jobs:  # each job's log where the README says
        assert "Job completed successfully" in job_log(out, job)
    assert "sacct" not in result.stdout + result.stderr  # no accounting here, and no complaint


def test_a_search_sends_its_trials_as_an_array_and_prunes_them_inside_their_jobs(
        learnable_cifar_root, tmp_path):
    """hydra/sweeper=optuna on SLURM: a batch of trials is one array (n_jobs null: SLURM's
    array_parallelism); each job's run reports to its trial through the shared storage, and a
    pruner that stops every trial at its first epoch stops both inside SLURM."""
    out = tmp_path / "sweep"
    # (learnable_cifar_root: 256 images of 4 classes, so 16 can be held out stratified)
    result = train(*on_slurm(learnable_cifar_root, out, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                             "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
                             "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=2.0",
                             "optimizer=choice(sgd,adam)", "epochs=3"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = records(out)
    assert {name: (r["status"], r["epochs_done"]) for name, r in runs.items()} == {
        "0": ("pruned", 1), "1": ("pruned", 1)}
    jobs = sorted(r["slurm_job"] for r in runs.values())
    assert jobs[0].split("_")[0] == jobs[1].split("_")[0]  # one array
    study = (out / "search.csv").read_text().splitlines()
    assert len(study) == 3 and all(",pruned," in line for line in study[1:])


@pytest.mark.parametrize(("setting", "refusal"), [
    (["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=60"],
     "SLURM may send that signal up to 60 s early"),
    (["hydra.launcher.gpus_per_task=1"], "has no GPUs"),
    (["hydra.launcher.mem_gb=100000"], "have at most"),
])
def test_settings_that_cannot_work_are_refused_before_any_job_is_submitted(
        cifar_root, tmp_path, setting, refusal):
    before = set(slurm("squeue", "-h", "-t", "all", "-o", "%i").split())
    result = train(*on_slurm(cifar_root, tmp_path / "sweep", "epochs=1"), *setting, cwd=tmp_path)
    assert result.returncode == 2 and refusal in result.stderr
    assert "Traceback" not in result.stderr
    assert set(slurm("squeue", "-h", "-t", "all", "-o", "%i").split()) <= before  # (old jobs age out)


def test_a_run_signalled_before_its_time_limit_is_requeued_and_resumes_to_the_uninterrupted_metrics(
        slower_cifar_root, tmp_path):
    """SLURM's time-limit signal (SIGUSR2, `signal_delay_s` before the limit) sent with scancel
    once the run has trained an epoch, as SLURM sends it to the job's step: the run saves at its
    step, submitit requeues the job (a 3-minute limit counts as timed out), and the requeued
    attempt resumes from the checkpoint to exactly the metrics of an uninterrupted run."""
    settings = ["epochs=3", "batch_size=16", "data.train_subset=256"]
    reference = start("-m", *settings, "model=alexnet_cifar", "torch_threads=1",
                      f"data.root={slower_cifar_root}", "data.download=false", "progress=false",
                      f"hydra.sweep.dir={tmp_path / 'reference'}", cwd=tmp_path)
    out = tmp_path / "sweep"
    process = start(*on_slurm(slower_cifar_root, out, *settings), "hydra.launcher.timeout_min=3",
                    "hydra.launcher.signal_delay_s=30", cwd=tmp_path)
    wait_for_epochs(out / "0" / "metrics.csv", 1, process)
    job = json.loads((out / "0" / "results.json").read_text())["slurm_job"]
    slurm("scancel", "--signal=USR2", job)
    output, _ = process.communicate(timeout=400)
    assert process.returncode == 0, output
    record = json.loads((out / "0" / "results.json").read_text())
    assert record["status"] == "completed"
    resumed = [a["resumed_from_epoch"] for a in record["attempts"]]
    assert resumed[0] is None and len(resumed) == 2 and resumed[1] >= 1
    log = job_log(out, job)
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log
    assert reference.wait(timeout=400) == 0, reference.stdout.read()
    assert_same_metrics(out, tmp_path / "reference")


def test_a_run_signalled_after_max_num_timeout_requeues_ends_interrupted_and_says_why(
        cifar_root, tmp_path):
    out = tmp_path / "sweep"
    process = start(*on_slurm(cifar_root, out, "epochs=30", "hydra.launcher.max_num_timeout=0",
                              "hydra.launcher.timeout_min=3", "hydra.launcher.signal_delay_s=30"),
                    cwd=tmp_path)
    wait_for_epochs(out / "0" / "metrics.csv", 1, process)
    job = json.loads((out / "0" / "results.json").read_text())["slurm_job"]
    slurm("scancel", "--signal=USR2", job)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGUSR2, output
    record = json.loads((out / "0" / "results.json").read_text())
    assert record["status"] == "interrupted" and len(record["attempts"]) == 1
    assert "the job was not requeued" in record["error"]["message"]
    assert "timed-out too many times" in output and (out / "0" / "checkpoint.pt").is_file()


def test_scancel_and_a_killed_job_end_the_sweep_and_the_same_command_resumes_them(
        slower_cifar_root, tmp_path):
    out = tmp_path / "sweep"
    args = on_slurm(slower_cifar_root, out, "optimizer=sgd,adam", "epochs=6", "data.train_subset=512")
    process = start(*args, cwd=tmp_path)
    for run in ("0", "1"):
        wait_for_epochs(out / run / "metrics.csv", 1, process)
    running = records(out)
    slurm("scancel", running["0"]["slurm_job"])  # SIGTERM: the run saves and says so
    os.kill(running["1"]["pid"], signal.SIGKILL)  # dies before any handler: no result at all

    output, _ = process.communicate(timeout=120)  # no hang
    assert process.returncode != 0, output
    assert "stopped: 1 job(s) stopped: SIGTERM" in output  # job 0's run stopped itself ...
    assert f"lost: {out / '1'}: SLURM job {running['1']['slurm_job']} ended (" in output  # 1 lost
    assert "Resume it with:\n  python -m alexnet.train -m hydra/launcher=slurm" in output
    stopped = records(out)
    assert {r["status"] for r in stopped.values()} == {"interrupted"}
    assert "SIGTERM" in stopped["0"]["error"]["message"]
    assert stopped["1"]["error"]["type"] == "JobEnded"

    again = train(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 runs: 2 completed" in again.stderr
    for record in records(out).values():
        assert record["attempts"][-1]["resumed_from_epoch"] >= 1
