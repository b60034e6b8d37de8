"""Sweeps that survive: real kills and signals on the real CLI, then the same command again."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

import helpers  # noqa: I001
from alexnet import scores
from alexnet.files import OutputError
from alexnet.results.collect import collect
from alexnet.results.report import results_table
from alexnet.resume import checkpoint
from alexnet.resume.run_dir import RunDirConflict, plan
from alexnet.resume.stop import GracefulStop, JobLost, Stop, lost
from alexnet.run.record import RUN_LOCK, RunRecord, boot_id, effective_status
from helpers import StopAtSafePoint, fit, metrics_without_timings, start, train, wait_for_epochs


def sweep_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "optimizer=sgd,adam", "seed=0,1", "epochs=2", "batch_size=32",
            "data.train_subset=256", "model=alexnet_cifar", "augmentation=crop_flip", f"data.root={root}",
            "data.download=false", "progress=false", f"hydra.sweep.dir={out}", *extra]


def results_without_timings(sweep_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(sweep_dir / "results.csv")
    return table.drop(columns=["wall_time_s", "images_per_s"]).sort_values("run_dir",
                                                                            ignore_index=True)


@pytest.fixture(scope="module")
def uninterrupted(slower_cifar_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "sweep"
    result = train(*sweep_args(slower_cifar_root, out), cwd=out.parent)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.xdist_group("test_resume:uninterrupted")
def test_sigkill_then_same_command_equals_an_uninterrupted_sweep(
        slower_cifar_root, uninterrupted, tmp_path):
    out = tmp_path / "sweep"
    process = start(*sweep_args(slower_cifar_root, out), cwd=tmp_path)
    wait_for_epochs(out / "1" / "metrics.csv", 1, process)  # run 0 done, run 1 in epoch 2
    process.kill()
    process.wait()
    finished = (out / "0" / "results.json").read_text()

    # Before the rerun: the killed run is stale, the ones never started are listed.
    runs = {run.path.name: run for run in collect([out]).runs}
    assert {name: run.status for name, run in runs.items()} == {
        "0": "completed", "1": "stale", "2": "not_started", "3": "not_started"}
    assert runs["2"].hyperparameters["optimizer"] == "adam" and runs["2"].hyperparameters["seed"] == 0
    shown = subprocess.run([sys.executable, "-m", "alexnet.aggregate", str(out), "--no-plots"],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    table = pd.read_csv(out / "results.csv")
    assert sorted(table["status"]) == ["completed", "not_started", "not_started", "stale"]

    again = train(*sweep_args(slower_cifar_root, out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "4 runs: 4 completed" in again.stderr
    assert (out / "0" / "results.json").read_text() == finished  # not trained again
    pd.testing.assert_frame_equal(results_without_timings(out).drop(columns="run_dir"),
                                  results_without_timings(uninterrupted).drop(columns="run_dir"))
    for run in ("0", "1", "2", "3"):
        pd.testing.assert_frame_equal(metrics_without_timings(out / run),
                                      metrics_without_timings(uninterrupted / run))
    summary = json.loads((out / "1" / "results.json").read_text())
    assert [a["resumed_from_epoch"] for a in summary["attempts"]] == [None, 1]


def test_sigterm_mid_epoch_saves_a_checkpoint_and_a_single_run_resumes_exactly(
        slower_cifar_root, tmp_path):
    run_dir = tmp_path / "run"
    args = ["optimizer=sgd", "epochs=2", "batch_size=8", "data.train_subset=256",
            "model=alexnet_cifar", "augmentation=crop_flip", f"data.root={slower_cifar_root}",
            "data.download=false", "progress=false", f"hydra.run.dir={run_dir}"]
    process = start(*args, cwd=tmp_path)
    wait_for_epochs(run_dir / "metrics.csv", 1, process)  # (32 steps of epoch 2 to come)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output
    summary = json.loads((run_dir / "results.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_done"] == 1
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    if "stopped: SIGTERM after epoch 1" not in output:  # (the signal may beat epoch 2's start)
        assert "stopped: SIGTERM in epoch 2" in output
        assert saved["in_progress"]["images"] > 0  # saved half-way through epoch 2
        assert 0 < saved["train_batches"]["pass"]["next"] < 256
    assert f"Resume it with:\n  python -m alexnet.train {' '.join(args)}" in output

    again = train(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    reference = train(*[a.replace(str(run_dir), str(tmp_path / "reference")) for a in args],
                      cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    pd.testing.assert_frame_equal(metrics_without_timings(run_dir),
                                  metrics_without_timings(tmp_path / "reference"))
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"
    assert (run_dir / "model.pt").is_file() and not (run_dir / "checkpoint.pt").exists()


def test_sigint_stops_the_sweep_at_a_safe_point(slower_cifar_root, tmp_path):
    out = tmp_path / "sweep"
    process = start(*sweep_args(slower_cifar_root, out), cwd=tmp_path)
    wait_for_epochs(out / "0" / "metrics.csv", 1, process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, output
    assert "interrupted" in output and "3 not_started" in output
    assert json.loads((out / "0" / "results.json").read_text())["status"] == "interrupted"
    assert not (out / "1").exists()
    assert (out / "0" / "checkpoint.pt").is_file()


@pytest.mark.xdist_group("test_resume:uninterrupted")
def test_a_sweep_dir_of_another_sweep_is_refused_and_left_as_it_was(
        slower_cifar_root, uninterrupted, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*") if p.is_file()}
    result = train(*sweep_args(slower_cifar_root, uninterrupted, "batch_size=64"),
                   cwd=tmp_path)
    assert result.returncode == 2
    assert f"{uninterrupted} holds another sweep" in result.stderr
    made_with = f"python -m alexnet.train -m hydra.sweep.dir={uninterrupted} optimizer=sgd,adam"
    assert made_with in result.stderr  # the command to resume it
    assert {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*") if p.is_file()} == before


@pytest.mark.xdist_group("test_resume:uninterrupted")
def test_a_run_dir_of_another_run_is_refused(slower_cifar_root, uninterrupted, tmp_path):
    result = train(f"hydra.run.dir={uninterrupted / '0'}", "optimizer=adam", "model=alexnet_cifar",
                   f"data.root={slower_cifar_root}", "data.download=false", cwd=tmp_path)
    assert result.returncode == 1
    assert "holds another run" in result.stderr and "optimizer=sgd" in result.stderr
    assert json.loads((uninterrupted / "0" / "results.json").read_text())["status"] == "completed"


def test_missing_data_stops_the_sweep_before_any_run(tmp_path):
    out = tmp_path / "sweep"
    result = train(*sweep_args(tmp_path / "nowhere", out), cwd=tmp_path)
    assert result.returncode == 2
    assert "no run of this sweep can start: CIFAR-100 not found" in result.stderr
    assert "nowhere/cifar-100-python lacks train, test, meta" in result.stderr
    assert not out.exists()


# In-process: the disk, the checkpoint file and early stopping.

def tiny_config(root, *overrides):
    return helpers.tiny_config(root, "batch_size=64", *overrides)


def new_record(cfg, run_dir: Path) -> RunRecord:
    return RunRecord(run_dir, OmegaConf.to_container(cfg, resolve=True), ["epochs=3"])


def test_a_full_disk_stops_the_run_naming_the_file_and_keeps_what_was_written(
        slower_cifar_root, tmp_path, monkeypatch):
    cfg = tiny_config(slower_cifar_root, "epochs=3", "data.train_subset=256")
    real_save, saves = torch.save, []

    def save_until_the_disk_fills(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # the second epoch's checkpoint: half written, then the disk is full
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    with pytest.raises(OutputError) as caught:
        fit(cfg, new_record(cfg, tmp_path))
    assert str(tmp_path / "checkpoint.pt") in str(caught.value)
    assert "No space left on device" in str(caught.value)
    monkeypatch.setattr(torch, "save", real_save)
    assert len(checkpoint.load(tmp_path / "checkpoint.pt")["epochs"]) == 1  # the previous one
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 1
    assert json.loads((tmp_path / "results.json").read_text())["epochs_done"] == 1
    assert not list(tmp_path.glob(".*.tmp"))  # no torn temp file left behind


def test_a_tampered_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": 1, "evil": Payload()}, tmp_path / "checkpoint.pt")
    with pytest.raises(checkpoint.CheckpointError, match="cannot be read"):
        checkpoint.load(tmp_path / "checkpoint.pt")
    assert not marker.exists()


def test_early_stopping_ends_a_run_that_stops_improving(slower_cifar_root, tmp_path):
    cfg = tiny_config(slower_cifar_root, "epochs=6", "data.train_subset=256", "early_stop.patience=2",
                      "early_stop.monitor=train_loss", "early_stop.mode=min",
                      "early_stop.min_delta=100")  # no epoch improves by 100: stop after 1 + 2
    record = new_record(cfg, tmp_path)
    assert fit(cfg, record) == "early_stopped"
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["status"] == "early_stopped" and summary["stopped_epoch"] == 3
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 3
    row = results_table(collect([tmp_path]).runs).iloc[0]  # the table shows it
    assert row["status"] == "early_stopped" and row["epochs_done"] == 3


def test_keep_full_leaves_the_whole_checkpoint_and_weights_load_safely(slower_cifar_root,
                                                                       tmp_path):
    cfg = tiny_config(slower_cifar_root, "epochs=1", "data.train_subset=256", "checkpoint.keep=full",
                      "optimizer=adam")
    fit(cfg, new_record(cfg, tmp_path / "full"))
    saved = checkpoint.load(tmp_path / "full" / "checkpoint.pt")
    assert saved["optimizer"]["state"] and not (tmp_path / "full" / "model.pt").exists()
    cfg = tiny_config(slower_cifar_root, "epochs=1", "data.train_subset=256")
    fit(cfg, new_record(cfg, tmp_path / "weights"))
    weights = torch.load(tmp_path / "weights" / "model.pt", weights_only=True)
    assert weights.keys() == saved["model"].keys()


def test_a_live_record_is_stale_once_its_lock_is_free_here_or_its_heartbeat_stops_elsewhere(
        tmp_path):
    here = {"status": "running", "boot_id": boot_id(), "heartbeat_s": 30,
            "heartbeat_at": time.time()}
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from alexnet.locks import try_lock\n"
        f"held = try_lock(Path({str(tmp_path / RUN_LOCK)!r})); print('held', flush=True); "
        "time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert effective_status(here, tmp_path) == "running"
    assert effective_status({**here, "status": "waiting"}, tmp_path) == "waiting"
    holder.kill()  # SIGKILL: the kernel frees the lock, and the run is stale at once
    holder.wait()
    assert effective_status(here, tmp_path) == "stale"
    # Written on another machine whose locks we may not see: its heartbeat decides, measured in
    # its own heartbeat_s (5 missed beats), or in --stale-after when given.
    elsewhere = {**here, "boot_id": "another-kernel", "heartbeat_s": 10}
    assert effective_status(elsewhere, tmp_path) == "running"
    assert effective_status({**elsewhere, "heartbeat_at": time.time() - 51}, tmp_path) == "stale"
    assert effective_status({**elsewhere, "heartbeat_at": time.time() - 49}, tmp_path) == "running"
    assert effective_status(elsewhere, tmp_path, stale_after_s=0.0, now=time.time() + 1) == "stale"
    assert effective_status({"status": "completed"}, tmp_path) == "completed"


def test_a_fresh_record_of_another_machine_is_refused_unless_this_is_its_slurm_requeue(
        tmp_path, monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    record = RunRecord(tmp_path, {"epochs": 3}, ["epochs=3"])  # a run, then its node was lost
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "waiting"  # no device
    record.set_device("cuda:0 (H100)")
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "running"
    record.finish("running")  # (stops its heartbeat: the node is gone)
    summary = json.loads((tmp_path / "results.json").read_text())
    summary.update(boot_id="the-lost-node", host="node7", slurm_job="4242_3")
    (tmp_path / "results.json").write_text(json.dumps(summary))
    with pytest.raises(RunDirConflict, match="being trained right now by process .* on node7"):
        plan(tmp_path, {"epochs": 3})
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")  # SLURM requeued that job: the same id
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    decision = plan(tmp_path, {"epochs": 3})
    assert decision.action == "start" and decision.lock is not None
    with pytest.raises(RunDirConflict, match="being trained right now by another process"):
        plan(tmp_path, {"epochs": 3})  # we hold its lock now: nobody else may start it
    decision.release()
    assert plan(tmp_path, {"epochs": 3}).action == "start"


def test_a_lost_job_is_interrupted_unless_its_run_had_ended_on_record(tmp_path):
    """The one rule every launcher applies to a job whose process died: a live record becomes
    interrupted (a JobLost: the trial stays open); an ended one gives its score (a fused group's
    run that finished before the group's process was killed is not lost)."""
    config = {"epochs": 1, "objective": ["test_acc"]}
    live, ended = RunRecord(tmp_path / "live", config, []), RunRecord(tmp_path / "ended", config, [])
    ended.add_epoch({"epoch": 1, "train_loss": 4.0, "test_loss": 4.0, "test_acc": 0.25})
    ended.finish(scores.Status.completed)
    live.finish(scores.Status.running)  # (stops its heartbeat: its process is gone)
    assert isinstance(lost(tmp_path / "live", "killed"), JobLost)
    assert json.loads((tmp_path / "live" / "results.json").read_text())["status"] == "interrupted"
    assert lost(tmp_path / "ended", "killed") == 0.25


def test_two_processes_never_train_one_run_and_a_killed_trainer_frees_it_at_once(
        slower_cifar_root, tmp_path):
    run_dir = tmp_path / "run"
    args = ["optimizer=sgd", "epochs=3", "batch_size=32", "model=alexnet_cifar",
            "data.train_subset=256", f"data.root={slower_cifar_root}", "data.download=false",
            "progress=false", f"hydra.run.dir={run_dir}"]  # (3 epochs: still training below)
    first = start(*args, cwd=tmp_path)
    wait_for_epochs(run_dir / "metrics.csv", 1, first)
    with pytest.raises(RunDirConflict, match="being trained right now by another process"):
        plan(run_dir, {"epochs": 3})  # a second trainer
    first.kill()  # SIGKILL: no record update, the heartbeat still looks fresh
    first.wait()
    again = train(*args, cwd=tmp_path)  # ... but the lock is free: it resumes now
    assert again.returncode == 0, again.stderr
    attempts = json.loads((run_dir / "results.json").read_text())["attempts"]
    assert attempts[0]["resumed_from_epoch"] is None and attempts[1]["resumed_from_epoch"] >= 1


def resume(cfg, run_dir: Path, saved=None) -> str:
    previous = json.loads((run_dir / "results.json").read_text())
    record = RunRecord(run_dir, OmegaConf.to_container(cfg, resolve=True), previous["overrides"],
                       previous=previous)
    return fit(cfg, record, saved=saved)


@pytest.mark.parametrize("schedule", [[], ["scheduler=onecycle", "loss.label_smoothing=0.1"]])
def test_a_stop_at_any_step_resumes_to_exactly_the_uninterrupted_metrics(
        learnable_cifar_root, tmp_path, schedule):
    """... also in the middle of a learning-rate schedule (its step count is in the checkpoint)."""
    cfg = tiny_config(learnable_cifar_root, "epochs=2", "data.train_subset=192",
                      "augmentation=crop_flip", *schedule)  # 3 steps an epoch: looks 2-4, 5 = end
    fit(cfg, new_record(cfg, tmp_path / "reference"))
    reference = metrics_without_timings(tmp_path / "reference")
    if schedule:  # (the schedule and the smoothing do change the training)
        plain = tiny_config(learnable_cifar_root, "epochs=2", "data.train_subset=192",
                            "augmentation=crop_flip")
        fit(plain, new_record(plain, tmp_path / "plain"))
        assert not metrics_without_timings(tmp_path / "plain").equals(reference)
        assert list(metrics_without_timings(tmp_path / "plain")["lr"]) == [cfg.optimizer.lr] * 2
        assert reference["lr"].iloc[-1] < 1e-3 * cfg.optimizer.lr < reference["lr"].iloc[0]
    for at in (2, 4, 5, 7):  # epoch 1's first and last step and its end; epoch 2's middle
        run_dir = tmp_path / f"stop-{at}"
        with pytest.raises(Stop):
            fit(cfg, new_record(cfg, run_dir), StopAtSafePoint(at))
        assert resume(cfg, run_dir, checkpoint.load_latest(run_dir)) == "completed"
        pd.testing.assert_frame_equal(metrics_without_timings(run_dir), reference, obj=f"stop {at}")
    # a stop at the last epoch's end finds the run done: it ends completed, nothing to resume
    assert fit(cfg, new_record(cfg, tmp_path / "stop-9"), StopAtSafePoint(9)) == "completed"
    pd.testing.assert_frame_equal(metrics_without_timings(tmp_path / "stop-9"), reference)


def test_a_restart_without_its_checkpoint_leaves_each_epoch_once(learnable_cifar_root, tmp_path):
    cfg = tiny_config(learnable_cifar_root, "epochs=2", "data.train_subset=128")
    with pytest.raises(Stop):
        fit(cfg, new_record(cfg, tmp_path), StopAtSafePoint(4))  # start, 2 steps, epoch 1 ends
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 1
    checkpoint.remove(tmp_path)  # deleted, as an unreadable checkpoint's message advises
    assert resume(cfg, tmp_path) == "completed"
    assert list(pd.read_csv(tmp_path / "metrics.csv")["epoch"]) == [1, 2]


def test_a_run_killed_after_its_last_checkpoint_is_completed_by_the_same_command(
        learnable_cifar_root, tmp_path):
    """A kill -9 while it drew its pictures: its last epoch is saved, its ending is not."""
    cfg = tiny_config(learnable_cifar_root, "epochs=1", "data.train_subset=64", "checkpoint.keep=full")
    fit(cfg, new_record(cfg, tmp_path))
    record = json.loads((tmp_path / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**record, "status": "running"}))
    assert resume(cfg, tmp_path, checkpoint.load_latest(tmp_path)) == "completed"
    assert list(pd.read_csv(tmp_path / "metrics.csv")["epoch"]) == [1]


def test_a_torn_checkpoint_falls_back_to_the_one_before_it(learnable_cifar_root, tmp_path, caplog):
    cfg = tiny_config(learnable_cifar_root, "epochs=2", "data.train_subset=192")
    fit(cfg, new_record(cfg, tmp_path / "reference"))
    run_dir = tmp_path / "run"
    with pytest.raises(Stop):
        fit(cfg, new_record(cfg, run_dir), StopAtSafePoint(6))  # epoch 2's first step
    newest = run_dir / checkpoint.CHECKPOINT_FILE
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a disk or copy fault
    saved = checkpoint.load_latest(run_dir)
    assert len(saved["epochs"]) == 1 and saved["in_progress"] is None  # the end of epoch 1
    assert "resuming from the checkpoint before it" in caplog.text
    assert (run_dir / checkpoint.TORN_FILE).is_file()  # aside: no save can put it in prev's place
    assert resume(cfg, run_dir, saved) == "completed"
    pd.testing.assert_frame_equal(metrics_without_timings(run_dir),
                                  metrics_without_timings(tmp_path / "reference"))
    assert not (run_dir / checkpoint.PREVIOUS_FILE).exists()


def test_unreadable_checkpoints_fail_that_run_and_the_sweep_goes_on(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    args = ["-m", "optimizer=sgd,adam", "epochs=1", "model=alexnet_cifar", "checkpoint.keep=full",
            f"data.root={cifar_root}", "data.download=false", "progress=false",
            f"hydra.sweep.dir={out}"]
    assert train(*args, cwd=tmp_path).returncode == 0
    summary = json.loads((out / "0" / "results.json").read_text())
    (out / "0" / "results.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    for name in (checkpoint.CHECKPOINT_FILE, checkpoint.PREVIOUS_FILE):
        (out / "0" / name).write_bytes(b"PK\x03\x04 torn")
    again = train(*args, cwd=tmp_path)
    assert again.returncode == 1
    assert "2 runs: 1 completed, 1 failed" in again.stderr and "cannot be read" in again.stderr
    assert json.loads((out / "0" / "results.json").read_text())["status"] == "failed"
    assert json.loads((out / "1" / "results.json").read_text())["status"] == "completed"
    single = [a for a in args if a not in ("-m", "optimizer=sgd,adam", f"hydra.sweep.dir={out}")]
    single += ["optimizer=sgd", f"hydra.run.dir={out / '0'}"]  # the same run, now alone: it fails loudly
    alone = train(*single, cwd=tmp_path)
    assert alone.returncode == 1 and "stopped:" in alone.stderr and "cannot be read" in alone.stderr, \
        alone.stderr


def test_resuming_accepts_other_values_of_keys_that_do_not_change_results(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    args = ["-m", "optimizer=sgd,adam", "epochs=1", "model=alexnet_cifar",
            f"data.root={cifar_root}", "data.download=false", f"hydra.sweep.dir={out}"]
    assert train(*args, "progress=false", cwd=tmp_path).returncode == 0
    finished = (out / "0" / "results.json").read_text()
    again = train(*args, "progress=true", "torch_threads=1", "logger=none", "heartbeat_s=5",
                  "hydra/launcher=parallel", "hydra.launcher.jobs_per_gpu=2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 runs: 2 completed" in again.stderr
    assert (out / "0" / "results.json").read_text() == finished  # recognised, not trained again


def test_a_glob_sweep_is_planned_tabled_and_resumed(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    args = ["-m", "augmentation=glob(crop_flip*)", "epochs=1", "model=alexnet_cifar",
            f"data.root={cifar_root}", "data.download=false", "progress=false",
            f"hydra.sweep.dir={out}"]
    first = train(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "2 runs: 2 completed" in first.stderr
    table = pd.read_csv(out / "results.csv")
    assert sorted(table["overrides"].str.split().str[0]) == ["augmentation=crop_flip",
                                                             "augmentation=crop_flip_normalize"]
    before = {name: r["attempts"] for name, r in helpers.records(out).items()}
    again = train(*args, cwd=tmp_path)  # the same glob again: the same sweep
    assert again.returncode == 0 and "2 runs: 2 completed" in again.stderr
    assert {name: r["attempts"] for name, r in helpers.records(out).items()} == before  # not retrained


def test_a_tie_is_no_improvement_so_a_frozen_run_stops_early():
    settings = OmegaConf.create({"patience": 2, "monitor": "test_acc", "mode": "max",
                                 "min_delta": 0.0})
    frozen = [{"test_acc": 0.01}] * 3
    assert scores.should_stop(frozen, settings, {})
    assert not scores.should_stop([{"test_acc": 0.01}, {"test_acc": 0.01},
                                       {"test_acc": 0.02}], settings, {})


class EightGpus:
    """torch.cuda's generator calls on a host with 8 GPUs: a state per device index."""

    def __init__(self) -> None:
        self.states = {i: torch.full((16,), i, dtype=torch.uint8) for i in range(8)}

    def get_rng_state(self, device: torch.device) -> torch.Tensor:
        return self.states[device.index].clone()

    def set_rng_state(self, state: torch.Tensor, device: torch.device) -> None:
        if device.index not in self.states:
            raise RuntimeError(f"invalid device {device}")
        self.states[device.index] = state.clone()


def test_a_checkpoint_holds_the_random_state_of_the_runs_own_device_only(monkeypatch):
    assert set(checkpoint._rng_states(torch.device("cpu"))) == {"torch"}  # a CPU run: no GPU's
    host = EightGpus()
    monkeypatch.setattr(torch, "get_device_module", lambda device: host)
    saved = checkpoint._rng_states(torch.device("cuda", 3))  # checkpointed on cuda:3 of 8
    assert torch.equal(saved["device"], torch.full((16,), 3, dtype=torch.uint8))
    one_visible = EightGpus()
    one_visible.states = {0: torch.zeros(16, dtype=torch.uint8)}  # resumed with one GPU visible
    monkeypatch.setattr(torch, "get_device_module", lambda device: one_visible)
    checkpoint._set_rng_states(saved, torch.device("cuda", 0))
    assert torch.equal(one_visible.states[0], saved["device"])  # its dropout state goes on there


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_runs_random_state_resumes_on_whatever_gpu_it_gets():
    last = torch.device(f"cuda:{torch.cuda.device_count() - 1}")  # e.g. cuda:3 of 8
    torch.cuda.manual_seed(1234)
    with torch.cuda.device(last):
        torch.cuda.manual_seed(1234)
    states = checkpoint._rng_states(last)
    expected = torch.rand(4, device=last)
    first = torch.device("cuda:0")  # resumed where only one GPU is visible: cuda:0
    checkpoint._set_rng_states(states, first)
    assert torch.equal(torch.rand(4, device=first).cpu(), expected.cpu())


def test_a_run_resumed_by_a_version_that_records_more_columns_keeps_its_csv_aligned(cifar_root,
                                                                                     tmp_path):
    """Epochs of an older version (no `lr`), then one with it: every value stays in its column."""
    record = new_record(tiny_config(cifar_root), tmp_path / "run")
    old = {"epoch": 1, "train_loss": 4.6, "test_acc": 0.01}
    record.resumed_from([old])
    for epoch in (2, 3):
        record.add_epoch({"epoch": epoch, "train_loss": 4.5, "lr": 0.1, "test_acc": epoch / 100})
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(table["test_acc"]) == [0.01, 0.02, 0.03] and list(table["epoch"]) == [1, 2, 3]
    assert table["lr"].isna().tolist() == [True, False, False] and table["lr"].iloc[2] == 0.1


def test_the_torchvision_pipeline_with_workers_resumes_to_exactly_the_uninterrupted_metrics(
        learnable_cifar_root, tmp_path):
    """Its persistent workers' random state is in no checkpoint, and needs not be: every image's
    crop and flip come from a seed its pass draws in the trainer. So a resume is exact, with as
    many workers as the rerun has (data.num_workers may change between attempts)."""
    cfg = tiny_config(learnable_cifar_root, "epochs=2", "data.train_subset=192",
                      "augmentation=crop_flip", "data.pipeline=torchvision", "data.num_workers=2")
    fit(cfg, new_record(cfg, tmp_path / "reference"))
    reference = metrics_without_timings(tmp_path / "reference")
    for at, workers in ((5, 2), (7, 0)):  # epoch 1's end; epoch 2 half-way (redone from its start)
        run_dir = tmp_path / f"stop-{at}"
        with pytest.raises(Stop):
            fit(cfg, new_record(cfg, run_dir), StopAtSafePoint(at))
        again = tiny_config(learnable_cifar_root, "epochs=2", "data.train_subset=192",
                            "augmentation=crop_flip", "data.pipeline=torchvision",
                            f"data.num_workers={workers}")
        assert resume(again, run_dir, checkpoint.load_latest(run_dir)) == "completed"
        pd.testing.assert_frame_equal(metrics_without_timings(run_dir), reference, obj=f"stop {at}")


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    """Real SIGINTs to this process: the first asks for the safe point, the second ends now."""
    # (what was there before is put back: SIG_IGN for SIGINT where pytest runs in the background)
    before = {sig: signal.getsignal(sig) for sig in GracefulStop.SIGNALS}
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested() == signal.SIGINT  # (the handler ran: a request, no exception)
        os.kill(os.getpid(), signal.SIGTERM)  # another signal meanwhile: the first one stands
        assert stop.requested() == signal.SIGINT
        with pytest.raises(Stop) as now:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # (not reached: the handler raises at once)
    assert stop.twice is now.value and now.value.exit_code == 128 + signal.SIGINT
    assert {sig: signal.getsignal(sig) for sig in GracefulStop.SIGNALS} == before  # put back


def test_under_nohup_a_hang_up_stays_ignored(tmp_path):
    """nohup starts the command with SIGHUP ignored: a run's safe points leave it so (a closed
    terminal stops nothing), and take SIGTERM and SIGINT as ever."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with GracefulStop() as stop:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            assert stop.requested() is None
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested() == signal.SIGTERM
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_closed_terminal_sighup_asks_for_the_safe_point_as_sigterm_does(
        learnable_cifar_root, tmp_path):
    """A real SIGHUP to this process while a run trains: it stops at its next safe point with its
    checkpoint saved, exit status 128 + SIGHUP, and its record says so."""
    cfg = tiny_config(learnable_cifar_root, "epochs=2", "data.train_subset=192")

    class HangUpAtStep(GracefulStop):
        seen = 0

        def requested(self):
            self.seen += 1
            if self.seen == 3:  # mid-epoch: the terminal closes
                os.kill(os.getpid(), signal.SIGHUP)
            return super().requested()

    with pytest.raises(Stop) as stopped, HangUpAtStep() as stop:
        fit(cfg, new_record(cfg, tmp_path), stop)
    assert stopped.value.exit_code == 128 + signal.SIGHUP and "SIGHUP in epoch 1" in str(stopped.value)
    assert checkpoint.load_latest(tmp_path)["in_progress"] is not None  # saved at that step


def test_the_torchvision_pipeline_redoes_an_interrupted_epoch_to_the_same_metrics(
        learnable_cifar_root, tmp_path):
    cfg = tiny_config(learnable_cifar_root, "epochs=2", "data.train_subset=192",
                      "augmentation=crop_flip", "data.pipeline=torchvision")
    fit(cfg, new_record(cfg, tmp_path / "reference"))
    run_dir = tmp_path / "run"
    with pytest.raises(Stop, match="in epoch 2"):
        fit(cfg, new_record(cfg, run_dir), StopAtSafePoint(7))  # epoch 2's second step
    saved = checkpoint.load_latest(run_dir)
    assert len(saved["epochs"]) == 1 and saved["in_progress"] is None  # the end of epoch 1
    assert resume(cfg, run_dir, saved) == "completed"
    pd.testing.assert_frame_equal(metrics_without_timings(run_dir),
                                  metrics_without_timings(tmp_path / "reference"))


def test_a_resumed_run_logs_into_the_same_mlflow_run(slower_cifar_root, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    args = ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "epochs=2", "batch_size=16",
            "data.train_subset=256", "model=alexnet_cifar", f"data.root={slower_cifar_root}",
            "data.download=false", "progress=false", f"hydra.run.dir={run_dir}"]
    process = start(*args, cwd=tmp_path)
    wait_for_epochs(run_dir / "metrics.csv", 1, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    again = train(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["config"])
    assert len(found) == 1 and found["tags.status"].iloc[0] == "completed"
    history = mlflow.tracking.MlflowClient().get_metric_history(found["run_id"].iloc[0], "test_acc")
    assert [m.step for m in history] == [1, 2]  # each epoch once, in the one run


def test_a_run_is_the_same_run_only_if_its_composed_config_is(slower_cifar_root, tmp_path):
    """The same command line after a default changed (here: the record's momentum edited, as an
    older preset would have left it) is another run: refused, naming the key, nothing touched."""
    run_dir = tmp_path / "run"
    args = ["optimizer=sgd", "epochs=3", "batch_size=16", "data.train_subset=256",
            "model=alexnet_cifar", f"data.root={slower_cifar_root}", "data.download=false",
            "progress=false", f"hydra.run.dir={run_dir}"]
    process = start(*args, cwd=tmp_path)
    wait_for_epochs(run_dir / "metrics.csv", 1, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    record = json.loads((run_dir / "results.json").read_text())
    record["config"]["optimizer"]["momentum"] = 0.9
    (run_dir / "results.json").write_text(json.dumps(record))
    before = (run_dir / "checkpoint.pt").read_bytes()
    again = train(*args, "torch_threads=1", "progress=true", cwd=tmp_path)  # (those may change)
    assert again.returncode == 1, again.stderr
    assert "holds another run" in again.stderr and "optimizer.momentum: 0.9 -> 0.0" in again.stderr
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert json.loads((run_dir / "results.json").read_text())["config"]["optimizer"]["momentum"] == 0.9
