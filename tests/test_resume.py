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
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alexnet.files import OutputError
from alexnet.results.aggregate import results_table
from alexnet.results.collect import collect
from alexnet.results.liveness import effective_status
from alexnet.results.record import RunRecord
from alexnet.resume import checkpoint
from alexnet.train import fit
from conftest import REPO

TIMINGS = ["train_time_s", "images_per_s", "epoch_time_s"]


def sweep_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "optimizer=sgd,adam", "seed=0,1", "epochs=3", "batch_size=32",
            "model=alexnet_cifar", "augmentation=crop_flip", f"data.root={root}",
            "data.download=false", "progress=false", f"hydra.sweep.dir={out}", *extra]


def train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alexnet.train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "alexnet.train", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_epochs(metrics: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) > count:
            return
        if process.poll() is not None:
            raise AssertionError(f"finished before epoch {count}: {process.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no epoch {count} in {metrics}")


def metrics_without_timings(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=TIMINGS)


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
        slower_cifar_root, uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    args = ["optimizer=sgd", "epochs=3", "batch_size=8", "model=alexnet_cifar",
            "augmentation=crop_flip", f"data.root={slower_cifar_root}", "data.download=false",
            "progress=false", f"hydra.run.dir={run_dir}"]
    process = start(*args, cwd=tmp_path)
    wait_for_epochs(run_dir / "metrics.csv", 1, process)
    time.sleep(0.3)  # into epoch 2
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM" in output and "Rerun the same command to resume" in output
    summary = json.loads((run_dir / "results.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_done"] == 1
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert saved["in_progress"]["images"] > 0  # saved half-way through epoch 2
    assert 0 < saved["train_batches"]["pass"]["next"] < 1024

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


def test_a_sweep_dir_of_another_sweep_is_refused_and_left_as_it_was(
        slower_cifar_root, uninterrupted, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*") if p.is_file()}
    result = train(*sweep_args(slower_cifar_root, uninterrupted, "batch_size=64"),
                   cwd=tmp_path)
    assert result.returncode == 1
    assert f"{uninterrupted} holds another sweep" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in uninterrupted.rglob("*") if p.is_file()} == before


def test_a_run_dir_of_another_run_is_refused(slower_cifar_root, uninterrupted, tmp_path):
    result = train(f"hydra.run.dir={uninterrupted / '0'}", "optimizer=adam", "model=alexnet_cifar",
                   f"data.root={slower_cifar_root}", "data.download=false", cwd=tmp_path)
    assert result.returncode == 1
    assert "holds another run" in result.stderr and "optimizer=sgd" in result.stderr
    assert json.loads((uninterrupted / "0" / "results.json").read_text())["status"] == "completed"


def test_missing_data_stops_the_sweep_before_any_run(tmp_path):
    out = tmp_path / "sweep"
    result = train(*sweep_args(tmp_path / "nowhere", out), cwd=tmp_path)
    assert result.returncode == 1
    assert "no run of this sweep can start: CIFAR-100 not found" in result.stderr
    assert "nowhere/cifar-100-python lacks train, test, meta" in result.stderr
    assert not out.exists()


# In-process: the disk, the checkpoint file and early stopping.

def tiny_config(root, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[
            f"data.root={root}", "data.download=false", "model=alexnet_cifar", "progress=false",
            "device=cpu", "batch_size=64", *overrides])


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
    cfg = tiny_config(slower_cifar_root, "epochs=6", "early_stop.patience=2",
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
    cfg = tiny_config(slower_cifar_root, "epochs=1", "checkpoint.keep=full", "optimizer=adam")
    fit(cfg, new_record(cfg, tmp_path / "full"))
    saved = checkpoint.load(tmp_path / "full" / "checkpoint.pt")
    assert saved["optimizer"]["state"] and not (tmp_path / "full" / "model.pt").exists()
    cfg = tiny_config(slower_cifar_root, "epochs=1")
    fit(cfg, new_record(cfg, tmp_path / "weights"))
    weights = torch.load(tmp_path / "weights" / "model.pt", weights_only=True)
    assert weights.keys() == saved["model"].keys()


def test_a_running_record_is_stale_when_its_process_is_gone_or_silent():
    alive = {"status": "running", "host": os.uname().nodename, "pid": os.getpid(),
             "heartbeat_at": time.time()}
    assert effective_status(alive) == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert effective_status({**alive, "pid": dead.pid}) == "stale"
    silent = {**alive, "host": "another-node", "heartbeat_at": time.time() - 3600}
    assert effective_status(silent, stale_after_s=600) == "stale"
    assert effective_status({**silent, "heartbeat_at": time.time()}, stale_after_s=600) == "running"
    assert effective_status({"status": "completed"}) == "completed"
