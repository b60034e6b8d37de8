"""The aggregator on sweeps made by the real CLI and on hand-made broken run directories."""

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from alexnet.aggregate import main
from alexnet.locks import try_lock
from alexnet.results.collect import collect, varying_columns
from alexnet.results.planned import write_planned
from alexnet.results.plots import (
    final_scores_figure,
    label_keys,
    learning_curves_figure,
    run_label,
    superclass_heatmap,
)
from alexnet.results.report import aggregate, newest_sweep, notebook_table
from alexnet.run.record import RUN_LOCK, RunRecord
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


@pytest.mark.xdist_group("test_aggregate:sweep_dir")
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
    assert (table["score_metric"] == "test_acc").all()  # no validation split: the test score
    assert table["score"].tolist() == table["final_acc"].tolist()
    markdown = [line for line in (sweep_dir / "results.md").read_text().splitlines()
                if line.startswith("|")]
    assert len(markdown) == 2 + 4 and "selection score" in (sweep_dir / "results.md").read_text()
    column = [cell.strip() for cell in markdown[0].split("|")].index("score")
    ranked = [float(line.split("|")[column]) for line in markdown[2:]]
    assert ranked == sorted(ranked, reverse=True)
    for picture in ("learning_curves.png", "final_scores.png", "confusion_superclass.png",
                    "effects.png"):
        assert (sweep_dir / picture).stat().st_size > 10_000, picture
    effects = (sweep_dir / "effects.md").read_text()  # one run per setting: means, no interval
    assert "no interval can be given" in effects and "95% CI [" not in effects


@pytest.mark.xdist_group("test_aggregate:sweep_dir")
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
    assert "no results.json" in caplog.text and "results.json is damaged (JSONDecodeError" in caplog.text
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
    # the knobs the experiments set, from the runs' records; with every run at epochs=1 the eight
    # settings separate them all (the notebook's own epochs confound four: tests/test_effects.py)
    effects = (out / "effects.md").read_text()
    for knob in ("augmentation.crop", "augmentation.flip", "augmentation.normalize", "optimizer",
                 "optimizer.lr", "batch_size", "experiment"):
        assert f"\n## {knob}\n" in effects, knob
    assert "## epochs" not in effects and "## Confounded" not in effects
    assert "no interval can be given" in printed  # the sentence: one run per experiment


def test_show_data_labels_the_grid_with_class_names(cifar_root, tmp_path):
    result = cli("alexnet.show_data", f"data.root={cifar_root}", "data.download=false",
                 "show_data.images=4", "model=alexnet_cifar", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    expected = [CLASSES[label] for label in make_split(48, 0)["fine_labels"][:4]]
    assert f"classes: {' '.join(expected)}" in result.stdout + result.stderr
    assert (tmp_path / "data_grid.png").stat().st_size > 5_000


@pytest.mark.xdist_group("test_aggregate:sweep_dir")
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



def record(root, name, config, epochs, status=None, overrides=()):
    """A run's record as training leaves it: `epochs` (dicts of scores), then `status`."""
    entry = RunRecord(root / name, config, list(overrides))
    entry.set_device("cpu (2 threads)")
    for number, scores in enumerate(epochs, start=1):
        entry.add_epoch({"epoch": number, "train_loss": 4.0, "test_loss": 4.0, "test_top5": 0.5,
                         "test_f1": 0.05, "images_per_s": 100.0, **scores})
    if status is not None:
        entry.finish(status)
    return entry


def config_of(sweep_dir, **changes):
    config = json.loads((sweep_dir / "0" / "results.json").read_text())["config"]
    return {**config, **changes}


@pytest.mark.xdist_group("test_aggregate:sweep_dir")
def test_a_sweep_still_running_gives_each_runs_epochs_and_the_time_left(sweep_dir, tmp_path):
    root = tmp_path / "running_sweep"
    config = config_of(sweep_dir, epochs=3)
    record(root, "0", config, [{"test_acc": 0.2, "epoch_time_s": 10.0}] * 3, "completed",
           ["batch_size=16"])
    record(root, "1", config, [{"test_acc": 0.1, "epoch_time_s": 20.0}], None, ["batch_size=32"])
    trainer = try_lock(root / "1" / RUN_LOCK)  # job 1 is training its second epoch
    write_planned(root, [["batch_size=16"], ["batch_size=32"], ["batch_size=64"]])  # 2: not begun
    printed = cli("alexnet.aggregate", str(root), "--no-plots", cwd=tmp_path).stdout
    trainer.close()
    # job 1: 2 epochs x 20 s; job 2 has no epoch of its own: the median of the others' seconds
    # per epoch, (10 + 20) / 2 = 15, x 3 epochs; one run at a time
    assert ("not finished: 1 running, 1 not_started (of 3 runs); estimated time left: about 85 s "
            "(5 epochs to go, 1 run at a time)") in printed


@pytest.mark.xdist_group("test_aggregate:sweep_dir")
def test_the_tables_and_pictures_go_by_the_selection_score_among_runs_that_count(sweep_dir, tmp_path):
    root = tmp_path / "held_out"
    config = config_of(sweep_dir, data={**config_of(sweep_dir)["data"], "val_split": 8})
    confusion = (sweep_dir / "0" / "confusion_superclass.csv").read_text()
    runs = {"a": ({"val_acc": 0.30, "test_acc": 0.10}, "completed", 16),  # best by validation
            "b": ({"val_acc": 0.20, "test_acc": 0.40}, "completed", 32),  # best by test
            "c": ({"val_acc": 0.90, "test_acc": 0.90}, "failed", 64),  # scores that do not count
            "d": ({"val_acc": 0.80, "test_acc": 0.80}, "pruned", 128)}
    for name, (scores, status, batch) in runs.items():
        record(root, name, {**config, "batch_size": batch}, [scores], status, [f"batch_size={batch}"])
        (root / name / "confusion_superclass.csv").write_text(confusion)
    aggregate([root], root)
    table = pd.read_csv(root / "results.csv").set_index("run_dir")
    assert table["score_metric"].eq("val_acc").all()
    assert table["score"].fillna(-1).to_dict() == pytest.approx({"a": 0.3, "b": 0.2, "c": -1, "d": -1})
    assert table.loc["c", "final_acc"] == 0.90  # the test scores stay, beside their status
    order = [line.split("|")[-2].strip() for line in (root / "results.md").read_text().splitlines()
             if line.startswith("| ") and "run_dir" not in line]
    assert order == ["a", "b", "c", "d"]
    summary = pd.read_csv(root / "summary.csv").set_index("batch_size")
    assert summary.loc[64, "n"] == 0 and pd.isna(summary.loc[64, "score_mean"])
    effects = (root / "effects.md").read_text()
    assert "2 runs count; left out: 1 failed, 1 pruned" in effects
    # the heatmap is the best run's by validation accuracy: drawn for run a, not b, c or d
    runs_read = {run.path.name: run for run in collect([root]).runs}
    expected = tmp_path / "expected.png"
    superclass_heatmap(runs_read["a"], label_keys(list(runs_read.values()), ["batch_size"]), expected)
    assert (root / "confusion_superclass.png").read_bytes() == expected.read_bytes()


@pytest.mark.xdist_group("test_aggregate:sweep_dir")
def test_plots_draw_runs_whose_scores_do_not_count_as_such_and_round_their_legends(sweep_dir,
                                                                                   tmp_path):
    root = tmp_path / "search_like"
    config = config_of(sweep_dir, data={**config_of(sweep_dir)["data"], "val_split": 8})
    lr = 0.0005297719971005209
    adam = {**config["optimizer"], "_target_": "torch.optim.Adam", "lr": lr}
    record(root, "done", {**config, "optimizer": adam},
           [{"val_acc": 0.1, "test_acc": 0.3}, {"val_acc": 0.2, "test_acc": 0.4}], "completed",
           ["optimizer=adam", f"optimizer.lr={lr}"])  # as a search's trial has it
    record(root, "pruned", config, [{"val_acc": 0.05, "test_acc": 0.5}], "pruned")
    record(root, "failed", {**config, "batch_size": 64}, [], "failed")
    runs = sorted(collect([root]).runs, key=lambda run: run.path.name)  # done, failed, pruned
    keys = label_keys(runs, varying_columns(runs))
    assert run_label(runs[0], ["optimizer.lr"]) == "lr=0.00053"
    curves = learning_curves_figure(runs, keys)
    scored = curves.axes[0]
    assert scored.get_ylabel() == "val_acc" and "selection score" in scored.get_title()
    lines = {line.get_label(): line for line in scored.get_lines()}
    pruned = next(line for label, line in lines.items() if "(pruned at epoch 1)" in label)
    assert pruned.get_linestyle() == "--" and list(pruned.get_ydata()) == [0.05]
    done = next(line for label, line in lines.items() if "lr=0.00053" in label)
    assert list(done.get_ydata()) == [0.1, 0.2] and done.get_linestyle() == "-"
    assert not any("0.000529771" in label for label in lines)
    bars = final_scores_figure(runs, keys).axes[0]
    rows = [label.get_text() for label in bars.get_yticklabels()]  # bottom to top
    notes = {round(text.get_position()[1]): text.get_text() for text in bars.texts}
    widths = {}
    for patch in bars.patches:
        row = round(patch.get_y() + patch.get_height() / 2)
        widths[row] = max(widths.get(row, 0.0), patch.get_width())
    for position, label in enumerate(rows):
        if "lr=0.00053" in label:
            assert widths[position] > 0 and position not in notes
        else:  # no bar that reads as 0 %, but how the run ended, where its bar would be
            assert widths.get(position, 0.0) == 0 or math.isnan(widths[position])
            assert notes[position] in ("no score: failed", "no score: pruned at epoch 1")


REFERENCES = sorted(p for p in (Path(__file__).parents[1] / "outputs" / "reference").iterdir()
                    if p.is_dir())
WRITTEN = ("results", "summary", "effects", "notebook_comparison")  # (.csv and .md each)


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda path: path.name)
def test_every_committed_reference_is_what_todays_code_writes_from_its_runs(reference, tmp_path):
    copy = tmp_path / reference.name
    shutil.copytree(reference, copy, ignore=shutil.ignore_patterns("*.png", "*.db"))
    compared = [f"{name}{kind}" for name in WRITTEN for kind in (".csv", ".md")
                if (reference / f"{name}{kind}").is_file()]
    for name in compared:
        (copy / name).unlink()
    aggregate([copy], copy, compare_notebook=True, plots=False)
    assert {"results.md", "effects.md", "summary.md"} <= set(compared)
    for name in compared:
        assert (copy / name).read_text() == (reference / name).read_text(), name
