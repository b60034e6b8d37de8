"""The real command line, in a subprocess, as a user runs it."""

import csv
import json
import re
import subprocess
import sys

import pytest

from conftest import SHARED_DATA
from helpers import CPU_ONLY, run_cli, train


def test_sweep_runs_every_combination_and_records_a_failing_run(cifar_root, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = train(
        "-m", "optimizer=sgd,adam", "batch_size=16,0", "epochs=2", "model=alexnet_cifar",
        f"data.root={cifar_root}", "data.download=false", "progress=false",
        f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the sweep went on, and says what failed
    assert f"4 runs: 2 completed, 2 failed; results: {sweep_dir / 'results.csv'}" in result.stderr
    assert f"failed: {sweep_dir / '1'} (optimizer=sgd batch_size=0" in result.stderr

    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["0", "1", "2", "3"]
    by_overrides = {}
    for run_dir in runs:
        summary = json.loads((run_dir / "results.json").read_text())
        swept = sorted(o for o in summary["overrides"] if o.startswith(("batch_size=", "optimizer=")))
        by_overrides[tuple(swept)] = (run_dir, summary)
    for optimizer in ("sgd", "adam"):
        run_dir, ok = by_overrides[("batch_size=16", f"optimizer={optimizer}")]
        assert ok["status"] == "completed" and ok["epochs_done"] == 2
        assert ok["config"]["optimizer"]["_target_"].lower().endswith(optimizer)
        assert ok["config"]["batch_size"] == 16
        assert 0.0 <= ok["final"]["test_acc"] <= 1.0 and ok["best"] is not None
        with open(run_dir / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["epoch"]) for r in rows] == [1, 2]
        assert float(rows[-1]["test_acc"]) == ok["final"]["test_acc"]

        run_dir, bad = by_overrides[("batch_size=0", f"optimizer={optimizer}")]
        assert bad["status"] == "failed" and bad["epochs_done"] == 0
        assert "batch_size=0 is not allowed" in bad["error"]["message"]
        assert not (run_dir / "metrics.csv").exists()


@pytest.mark.parametrize(("override", "error"), [
    ("epochs=-1", "error: epochs=-1 is not allowed: it must be a positive integer, e.g. epochs=10"),
    ("early_stop.patience=-2", "error: early_stop.patience=-2 is not allowed: it must be a "
                               "positive integer or null, e.g. early_stop.patience=3"),
])
def test_a_refused_value_is_one_error_line_before_any_data_is_read(tmp_path, override, error):
    result = train(override, "data.root=nowhere", "data.download=false",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == error  # nothing else: no traceback, no data read
    assert not (tmp_path / "run" / "results.json").exists()


def test_help_is_the_apps_own_and_lists_the_sweep_presets_not_the_schemas(tmp_path):
    result = train("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("alexnet-sweeps: train AlexNet on CIFAR-100")
    assert "python -m alexnet.train -m sweep=notebook_cpu" in result.stdout
    assert "sweep: notebook, notebook_cpu, notebook_cpu_seeds, notebook_fixed, search_cpu" in result.stdout
    assert "schema" not in result.stdout.split("== Config (")[0]
    groups = dict(line.split(": ", 1) for line in result.stdout.splitlines()
                  if re.fullmatch(r"[\w/]+: [\w, ]+", line))
    assert {"parallel", "slurm", "basic"} <= set(groups["hydra/launcher"].split(", "))
    assert {"basic", "optuna"} <= set(groups["hydra/sweeper"].split(", "))
    assert {"tpe", "random", "cmaes"} <= set(groups["hydra/sweeper/sampler"].split(", "))
    assert {"median", "successive_halving", "none"} <= set(groups["hydra/sweeper/pruner"].split(", "))
    assert not {"hydra/env", "hydra/output", "hydra/job_logging", "hydra/help"} & set(groups)
    assert ('hydra/sweeper=optuna; hydra/sweeper/sampler=cmaes: pip install "alexnet-sweeps[search]"'
            in result.stdout)


def test_help_into_a_pipe_its_reader_closed_ends_without_a_traceback(tmp_path):
    """`--help | head`: the reader leaves before the help is written (here: at once)."""
    process = subprocess.Popen([sys.executable, "-m", "alexnet.train", "--help"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 1 and errors == ""


def test_show_data_has_its_own_help_with_the_values_it_would_use(tmp_path):
    result = run_cli("alexnet.show_data", "show_data.images=3", "augmentation=crop", "--help",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("python -m alexnet.show_data [key=value ...]")
    assert "show_data.images=3" in result.stdout and "augmentation.flip=False" in result.stdout
    assert "augmentation: crop, crop_flip" in result.stdout
    assert "optimizer" not in result.stdout and "hydra/launcher" not in result.stdout


def test_experiment_cfg_shows_the_notebook_settings(tmp_path):
    result = train("experiment=alexnet7", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "batch_size: 32" in result.stdout and "epochs: 20" in result.stdout
    assert "_target_: torch.optim.SGD" in result.stdout and "lr: 0.005" in result.stdout
    assert "run: AlexNet 7" in result.stdout


@pytest.mark.slow
def test_trains_on_the_real_data(tmp_path):
    if not (SHARED_DATA / "cifar-100-python" / "train").exists():
        pytest.skip(f"no real CIFAR-100 at {SHARED_DATA}")
    result = train(f"data.root={SHARED_DATA}", "data.download=false", "model=alexnet_cifar",
                       "epochs=2", "data.train_subset=2000", "data.test_subset=1000",
                       f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_done"] == 2
    with open(tmp_path / "run" / "metrics.csv") as f:
        losses = [float(row["train_loss"]) for row in csv.DictReader(f)]
    assert losses[1] < losses[0] < 4.7  # learning from the real images


def test_a_sweep_presets_config_shows_with_cfg_beside_dash_m(tmp_path):
    result = train("-m", "sweep=notebook_cpu", "--cfg", "hydra", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # (Hydra alone refuses -m with --cfg)
    assert "mode: MULTIRUN" in result.stdout
    assert "experiment: alexnet1,alexnet2,alexnet3" in result.stdout


def test_a_run_whose_loss_becomes_nan_ends_diverged_and_the_sweep_goes_on(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    result = train("-m", "optimizer.lr=1e30,0.01", "epochs=2", "model=alexnet_cifar",
                   f"data.root={cifar_root}", "data.download=false", "progress=false",
                   f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # not every run succeeded
    assert "2 runs: 1 completed, 1 diverged" in result.stderr
    diverged = json.loads((out / "0" / "results.json").read_text())
    assert diverged["status"] == "diverged" and diverged["epochs_done"] == 1
    assert json.loads((out / "1" / "results.json").read_text())["epochs_done"] == 2


def test_a_disk_that_refuses_a_file_stops_the_whole_sweep_naming_it(cifar_root, tmp_path):
    """A file-size limit (ulimit -f) makes the checkpoint's write fail the way a full disk does:
    the run and the sweep stop with the file named, and the next run does not start."""
    import resource
    import signal
    import subprocess
    import sys

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (a write past it then fails: EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    out = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "alexnet.train", "-m", "optimizer=sgd,adam", "epochs=1",
         "model=alexnet_cifar", f"data.root={cifar_root}", "data.download=false",
         "progress=false", f"hydra.sweep.dir={out}"], cwd=tmp_path, capture_output=True,
        text=True, timeout=600, preexec_fn=limited)
    assert result.returncode == 1, result.stderr
    assert f"stopped: cannot write {out / '0' / 'checkpoint.pt'}: File too large" in result.stderr
    assert "free some disk space" in result.stderr and "Traceback" not in result.stderr
    assert json.loads((out / "0" / "results.json").read_text())["status"] == "failed"
    assert not (out / "1").exists()  # the sweep stopped


@pytest.mark.parametrize("override", ["+epoch=1", "data.val_split=50", "device=cuda:7"])
def test_a_refused_setting_in_a_folder_of_the_users_leaves_every_file_of_it(tmp_path, override):
    """`cd my_folder && python -m alexnet.train batch_size=0 hydra.run.dir=.` once removed the
    folder itself. A refused setting (a typo'd key too, `+epoch=1`, with the nearest one named)
    is one `error:` line before any folder is made; the user's folder, given directly or through
    a symbolic link, keeps everything it held."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (mine / ".hydra").mkdir()  # (even a folder named as Hydra's)
    (tmp_path / "link").symlink_to(mine)
    for run_dir in (".", str(tmp_path / "link")):
        result = train(override, "data.root=nowhere", "data.download=false",
                       f"hydra.run.dir={run_dir}", cwd=mine)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert sorted(p.name for p in mine.iterdir()) == [".hydra", "notes.txt"]
    if override == "+epoch=1":
        assert "did you mean epochs?" in result.stderr


def test_a_failed_download_leaves_no_run_folder_and_no_data_folder(tmp_path):
    """A download that cannot reach its server (here a proxy that refuses: no network is
    needed to fail) ends in one `error:` line, leaving nothing it made behind."""
    result = subprocess.run([sys.executable, "-m", "alexnet.train", "data.root=data",
                             "hydra.run.dir=run"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**CPU_ONLY, "https_proxy": "http://127.0.0.1:9",
                                              "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert result.returncode == 2 and "error: could not download CIFAR-100" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_record_is_named_and_the_same_command_rebuilds_it_without_training(
        cifar_root, tmp_path):
    """results.json cut in half (a disk fault): the aggregator names it; the sweep's command
    again puts the run on record from its metrics.csv (it had finished: no epoch trained again)
    and draws the pictures its run dir lacks."""
    sweep = tmp_path / "sweep"
    args = ["-m", "optimizer=sgd,adam", "epochs=2", "model=alexnet_cifar", f"data.root={cifar_root}",
            "data.download=false", "progress=false", f"hydra.sweep.dir={sweep}"]
    assert train(*args, cwd=tmp_path).returncode == 0
    record = sweep / "0" / "results.json"
    record.write_text(record.read_text()[: len(record.read_text()) // 2])
    metrics = (sweep / "0" / "metrics.csv").read_text()
    (sweep / "1" / "mistakes.png").unlink()  # (its process ran out of memory drawing it)
    shown = run_cli("alexnet.aggregate", str(sweep), "--no-plots", cwd=tmp_path)
    assert f"{record} is damaged" in shown.stderr and "rebuilds it" in shown.stderr
    again = train(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "put on record again from its metrics.csv: completed after 2 epochs" in again.stdout
    rebuilt = json.loads(record.read_text())
    assert rebuilt["status"] == "completed" and rebuilt["epochs_done"] == 2
    assert (sweep / "0" / "metrics.csv").read_text() == metrics  # nothing trained again
    assert (sweep / "1" / "mistakes.png").is_file()
