"""Experiment tracking against the real libraries: a SQLite MLflow store and TensorBoard event
files in temp dirs, read back with their own readers; a tracking outage never fails a run."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import train

TINY = ["epochs=2", "model=alexnet_cifar", "batch_size=16", "data.download=false", "progress=false"]


def test_mlflow_sweep_of_seeds_leaves_four_runs_and_a_summary_of_two_groups(cifar_root, tmp_path):
    out, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train("-m", "seed=0,1", "optimizer=sgd,adam", "logger=mlflow", *TINY,
                   f"logger.mlflow.tracking_uri={uri}", f"data.root={cifar_root}",
                   f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "tracking failed" not in result.stdout + result.stderr
    assert "database tables" not in result.stderr  # (MLflow making a new store: nothing to act on)

    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["config"])
    parent = found[found["tags.sweep_dir"] == str(out)]
    children = found[found["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    assert len(parent) == 1 and len(children) == 4
    assert set(children["tags.status"]) == {"completed"} and set(children["status"]) == {"FINISHED"}
    assert set(children["params.seed"]) == {"0", "1"}
    assert set(children["params.optimizer._target_"]) == {"torch.optim.SGD", "torch.optim.Adam"}
    client = mlflow.tracking.MlflowClient()
    for run_id in children["run_id"]:
        assert [m.step for m in client.get_metric_history(run_id, "test_acc")] == [1, 2]
        assert {a.path for a in client.list_artifacts(run_id)} >= {"results.json", "metrics.csv"}
    attached = {a.path for a in client.list_artifacts(parent["run_id"].iloc[0])}
    assert {"results.csv", "effects.md", "effects.png", "best_filters.png", "best_mistakes.png"} \
        <= attached, attached  # (what README says the parent run carries)
    record = json.loads((out / "0" / "results.json").read_text())
    assert record["tracking"]["mlflow_run_id"] in set(children["run_id"])

    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["optimizer"]) == ["adam", "sgd"] and list(summary["n"]) == [2, 2]


def test_tensorboard_event_files_hold_every_epoch_and_the_hyperparameters(cifar_root, tmp_path):
    run_dir = tmp_path / "run"
    result = train("logger=tensorboard", *TINY, f"data.root={cifar_root}",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("test_acc")] == [1, 2]
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]
    hparams = events.PluginTagToContent("hparams")  # the HParams plugin's summaries
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    assert b"optimizer._target_" in hparams["_hparams_/session_start_info"]
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert [e.value for e in events.Scalars("test_acc")] == pytest.approx(list(metrics["test_acc"]))


def test_a_tracking_outage_is_logged_once_and_the_run_completes(cifar_root, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the store's folder should be\n")
    run_dir = tmp_path / "run"
    result = train("logger=all", *TINY, f"logger.mlflow.tracking_uri=sqlite:///{blocker}/mlflow.db",
                   f"data.root={cifar_root}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    log = result.stdout + result.stderr
    assert log.count("the run goes on without it") == 1 and "mlflow tracking" in log
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 2
    assert list((run_dir / "tensorboard").iterdir())  # the other tracker went on
