"""The aggregator on sweeps made by the real CLI and on hand-made broken run directories."""

import json
import os

import pandas as pd
import pytest

from alexnet.aggregate import main
from alexnet.locks import try_lock
from alexnet.results.collect import collect
from alexnet.results.report import aggregate, newest_sweep, notebook_table
from alexnet.run.liveness import RUN_LOCK
from alexnet.run.record import RunRecord
from cifar_files import CLASSES, make_split
from helpers import run_cli

TINY = ["model=alexnet_cifar", "epochs=1", "data.download=false", "progress=false"]


def cli(module, *args, cwd):
    result = run_cli(module, *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def sweep_dir(cifar_root, tmp_path_factory):
    """A real 2x2 sweep through the CLI; the multirun callback aggregates it."""
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    cli("alexnet.train", "-m", "optimizer=sgd,adam", "batch_size=16,32", *TINY,
        f"data.root={cifar_root}", f"hydra.sweep.dir={out}", cwd=out.parent)
    return out


def test_multirun_leaves_results_and_plots_without_a_second_command(sweep_dir):
    table = pd.read_csv(sweep_dir / "results.csv")
    assert len(table) == 4
    assert set(zip(table["optimizer"], table["batch_size"], strict=True)) == {
        ("sgd", 16), ("sgd", 32), ("adam", 16), ("adam", 32)}
    assert (table["status"] == "completed").all() and (table["epochs_done"] == 1).all()
    for column in ("final_acc", "best_acc", "final_top5", "final_f1", "final_train_loss",
                   "final_test_loss", "wall_time_s", "images_per_s"):
        assert table[column].notna().all(), column
    assert "optimizer.momentum" not in table  # only SGD has it: not a difference between runs
    markdown = (sweep_dir / "results.md").read_text().splitlines()
    assert len(markdown) == 2 + 4
    accuracies = [float(line.split("|")[3]) for line in markdown[2:]]
    assert accuracies == sorted(accuracies, reverse=True)
    for picture in ("learning_curves.png", "final_scores.png", "confusion_superclass.png"):
        assert (sweep_dir / picture).stat().st_size > 10_000, picture


def test_broken_runs_are_reported_or_kept_never_crash(sweep_dir, tmp_path, caplog):
    config = json.loads((sweep_dir / "0" / "results.json").read_text())["config"]
    root = tmp_path / "mixed"
    ok = RunRecord(root / "ok", config, ["optimizer=sgd"])
    ok.add_epoch({"epoch": 1, "train_loss": 4.0, "test_loss": 4.1, "test_acc": 0.2,
                  "test_top5": 0.5, "test_f1": 0.1, "images_per_s": 100.0})
    ok.finish("completed")
    failed = RunRecord(root / "failed", {**config, "batch_size": 64}, ["batch_size=64"])
    failed.finish("failed", RuntimeError("out of memory"))
    running = RunRecord(root / "running", {**config, "batch_size": 128}, ["batch_size=128"])
    running.set_device("cpu (2 threads)")
    trainer = try_lock(root / "running" / RUN_LOCK)  # what the run's trainer holds while alive
    running.add_epoch({"epoch": 1, "train_loss": 4.5, "test_loss": 4.5, "test_acc": 0.05,
                       "test_top5": 0.1, "test_f1": 0.01, "images_per_s": 90.0})
    (root / "half" / ".hydra").mkdir(parents=True)  # Hydra started it, nothing written yet
    (root / "torn").mkdir()
    (root / "torn" / "results.json").write_text('{"status": "comp')

    collection = aggregate([root], root)

    table = pd.read_csv(root / "results.csv")
    assert dict(zip(table["run_dir"], table["status"], strict=True)) == {
        "ok": "completed", "failed": "failed", "running": "running"}
    trainer.close()  # the trainer is gone: at once, not after a heartbeat window
    aggregate([root], root)
    assert pd.read_csv(root / "results.csv").set_index("run_dir").loc["running", "status"] == "stale"
    assert table.set_index("run_dir").loc["running", "epochs_done"] == 1
    assert sorted(path.name for path, _ in collection.skipped) == ["half", "torn"]
    assert "no results.json" in caplog.text and "not valid JSON" in caplog.text
    assert str(root / "torn") in caplog.text


def test_cli_names_missing_input(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    error = capsys.readouterr().err
    assert "no sweep found under outputs/sweeps" in error
    assert "python -m alexnet.aggregate DIR" in error  # a command that exists
    assert main([str(tmp_path / "nope")]) == 2


def test_notebook_sweep_gives_the_eight_row_table(cifar_root, tmp_path):
    out = tmp_path / "notebook"
    cli("alexnet.train", "-m", "sweep=notebook",
        *TINY, f"data.root={cifar_root}", "data.train_subset=16", "data.test_subset=8",
        f"hydra.sweep.dir={out}", cwd=tmp_path)
    printed = cli("alexnet.aggregate", str(out), "--compare-notebook", "--no-plots",
                  cwd=tmp_path).stdout
    table = notebook_table(collect([out]).runs)
    assert list(table["run"]) == [f"AlexNet {n}" for n in range(1, 9)]
    assert list(table["transforms"]) == ["none", "crop", "crop", "crop+flip", "crop+flip",
                                         "crop+flip", "crop+flip", "crop+flip"]
    assert list(table["normalization"]) == [False, False, True, True, False, False, True, True]
    assert list(table["batch_size"]) == [32, 64, 64, 128, 64, 32, 32, 32]
    assert list(table["lr"]) == [0.005] * 2 + [0.001] + [0.005] * 5
    assert list(table["optimizer"]) == ["sgd"] * 7 + ["adam"]
    assert list(table["notebook_accuracy"])[6] == 0.482
    assert table["accuracy_diff"].notna().all()
    assert "| AlexNet 7 |" in printed and "notebook_accuracy" in printed


def test_show_data_labels_the_grid_with_class_names(cifar_root, tmp_path):
    result = cli("alexnet.show_data", f"data.root={cifar_root}", "data.download=false",
                 "show_data.images=4", "model=alexnet_cifar", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    expected = [CLASSES[label] for label in make_split(48, 0)["fine_labels"][:4]]
    assert f"classes: {' '.join(expected)}" in result.stdout + result.stderr
    assert (tmp_path / "data_grid.png").stat().st_size > 5_000


def test_mlflow_copies_of_a_record_are_not_counted_as_runs(sweep_dir, tmp_path):
    outputs = tmp_path / "outputs"
    run = outputs / "sweeps" / "mine" / "0"
    run.mkdir(parents=True)
    for name in ("results.json", "metrics.csv"):
        (run / name).write_text((sweep_dir / "0" / name).read_text())
    copy = outputs / "mlflow-artifacts" / "1" / "0123abcd" / "artifacts"
    copy.mkdir(parents=True)
    (copy / "results.json").write_text((sweep_dir / "0" / "results.json").read_text())
    assert [r.path for r in collect([outputs]).runs] == [run]


def test_newest_sweep_is_the_last_started_wherever_its_dir_is(tmp_path):
    base = tmp_path / "outputs" / "sweeps"
    for sweep in ("2026-11-27/15-04-01", "mine", "2026-11-28/09-00-00"):
        (base / sweep / "0").mkdir(parents=True)
        (base / sweep / "multirun.yaml").write_text("hydra: {}\n")
    os.utime(base / "mine" / "multirun.yaml", (2e9, 2e9))  # started last, though named, not dated
    assert newest_sweep(base) == base / "mine"

