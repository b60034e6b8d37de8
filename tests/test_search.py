"""hydra/sweeper=optuna with our app, alexnet.train, as one user of the sweeper: its runs report
each epoch through alexnet.search.trial, its config sets its own values (the direction and metric
names from `objective`, the study in the sweep dir, what a rerun may change), and a study that a
rerun continues (tiny data, the real CLI). The sweeper itself, for any app: test_optuna_sweeper.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution

from alexnet.search.trial import write_study_file
from helpers import records, run_cli, train


def search(root: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra/sweeper/pruner=none",
            "hydra.sweeper.sampler.seed=0", "optimizer.lr=tag(log, interval(1e-3, 0.1))",
            "batch_size=choice(32,64)", "model=alexnet_cifar", "epochs=2", f"data.root={root}",
            "data.download=false", "progress=false", f"hydra.sweep.dir={out}", *extra]


def study_of(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="alexnet", storage=f"sqlite:///{out / 'optuna.db'}")


def test_a_run_reports_to_its_trial_and_stops_when_the_pruner_says_so(cifar_root, tmp_path):
    """A job of a sweep whose dir holds the sweeper's study file is the trial of its number: it
    reports from its own process through the storage, and a pruner that stops every trial stops
    it. The job's command line says nothing of it."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"  # any storage two processes share
    trial = optuna.create_study(study_name="s", storage=url, direction="maximize").ask()
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_study_file(sweep, "s", url, {"_target_": "optuna.pruners.ThresholdPruner", "lower": 2.0})
    result = subprocess.run(
        [sys.executable, "-m", "alexnet.train", "-m", "model=alexnet_cifar", "epochs=3",
         f"data.root={cifar_root}", "data.download=false", "progress=false",
         f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "env_set" not in result.stdout + result.stderr
    run_dir = sweep / str(trial.number)
    summary = json.loads((run_dir / "results.json").read_text())
    assert summary["status"] == "pruned" and summary["epochs_done"] == 1 < summary["epochs_planned"]
    reported = optuna.load_study(study_name="s", storage=url).trials[0].intermediate_values
    assert reported == {1: summary["final"]["test_acc"]}  # written by the run's own process


def test_a_search_leaves_its_study_and_the_same_command_continues_it(cifar_root, tmp_path):
    out = tmp_path / "outputs" / "sweeps" / "mine"
    first = train(*search(cifar_root, out, "hydra.sweeper.n_trials=3"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    study = study_of(out)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE]  # (from objective: auto)
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 3 and (table["score_metric"] == "test_acc").all()  # the objective
    assert table["score"].between(0, 1).all()
    best = study.best_trial
    assert f"- trial {best.number}: test_acc {best.value:.4f}" in (out / "search.md").read_text()
    assert yaml.safe_load((out / "optimization_results.yaml").read_text())["best_value"] == \
        best.value
    assert list(pd.read_csv(out / "search.csv")["last_step"]) == [2, 2, 2]  # epochs reported
    newest = run_cli("alexnet.aggregate", cwd=tmp_path)  # (no folder: the newest sweep's)
    assert newest.returncode == 0 and (out / "multirun.yaml").is_file(), newest.stderr
    before = {name: r["attempts"] for name, r in records(out).items()}

    again = train(*search(cifar_root, out, "hydra.sweeper.n_trials=4", "progress=true"),
                  cwd=tmp_path)  # (how runs go may change: resume_identity)
    assert again.returncode == 0, again.stderr
    study = study_of(out)
    assert len(study.trials) == 4 and all(t.state.is_finished() for t in study.trials)
    after = records(out)
    assert {name: after[name]["attempts"] for name in before} == before  # none trained again
    assert set(after) == {"0", "1", "2", "3"}


def test_a_rerun_with_other_fixed_settings_is_refused_with_the_command_it_was_made_with(
        cifar_root, tmp_path):
    out = tmp_path / "sweep"
    assert train(*search(cifar_root, out, "hydra.sweeper.n_trials=1"), cwd=tmp_path).returncode == 0
    other = train(*search(cifar_root, out, "hydra.sweeper.n_trials=2", "epochs=3"), cwd=tmp_path)
    assert other.returncode == 2 and "holds another search" in other.stderr
    assert "python -m alexnet.train -m" in other.stderr and "epochs=2" in other.stderr
    assert len(study_of(out).trials) == 1


def test_a_trial_an_earlier_start_left_running_is_run_again_as_the_same_trial(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    study = optuna.create_study(study_name="alexnet", storage=f"sqlite:///{out / 'optuna.db'}",
                                direction="maximize")
    orphan = study.ask({"optimizer.lr": FloatDistribution(1e-3, 0.1, log=True),
                        "batch_size": CategoricalDistribution([32, 64])})  # its process died
    orphan.set_user_attr("hydra.sweep.dir", str(out))  # (as the sweeper marks its trials)
    result = train(*search(cifar_root, out, "hydra.sweeper.n_trials=1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = study_of(out).trials
    assert len(trials) == 1 and trials[0].state == optuna.trial.TrialState.COMPLETE
    run = json.loads((out / str(orphan.number) / "results.json").read_text())
    assert f"batch_size={orphan.params['batch_size']}" in run["overrides"]


def test_a_list_valued_choice_reaches_the_run_as_a_list(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    args = [a for a in search(cifar_root, out, "hydra/sweeper/sampler=grid", "optimizer=adam",
                              "epochs=1", "optimizer.betas=choice([0.9,0.99],[0.8,0.999])")
            if "lr=" not in a and "batch_size" not in a]
    result = train(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    betas = sorted(r["config"]["optimizer"]["betas"] for r in records(out).values())
    assert betas == [[0.8, 0.999], [0.9, 0.99]]


def test_parallel_trials_start_when_a_slot_frees_and_a_killed_trial_resumes(slower_cifar_root,
                                                                           tmp_path):
    """Seed 1 of the random sampler gives trials of 1, 8 and 1 short epochs: with two places,
    trial 2 starts and ends while trial 1 runs (no batch barrier). kill -9 of trial 1's process
    then, as the OOM killer would: the search goes on, asks no trial in its place, and ends
    saying trial 1 stays open; the same command ends with 3 finished trials, trials 0 and 2 not
    trained again, trial 1 resumed from its checkpoint."""
    out = tmp_path / "sweep"
    args = [a for a in search(slower_cifar_root, out, "hydra/launcher=parallel",
                              "hydra.launcher.n_jobs=2", "hydra.sweeper.sampler.seed=1",
                              "epochs=choice(1,8)", "hydra.sweeper.n_trials=3",
                              "data.train_subset=256")
            if a != "epochs=2"]  # (a fixed value would beat the choice, as in Hydra's plugin)
    with open(tmp_path / "first.log", "w") as log:  # (a pipe nobody reads could fill and stall it)
        process = subprocess.Popen([sys.executable, "-m", "alexnet.train", *args], cwd=tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while (records(out).get("2") or {}).get("status") != "completed" \
                or not (out / "1" / "metrics.csv").is_file():
            assert process.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        run_1 = records(out)["1"]
        assert run_1["status"] == "running" and run_1["epochs_planned"] == 8, \
            (tmp_path / "first.log").read_text()
        os.kill(run_1["pid"], signal.SIGKILL)  # trial 1's job alone: no handler runs
        assert process.wait(timeout=300) == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    said = (tmp_path / "first.log").read_text()
    assert "trial 1 stays open" in said and "Resume it with:" in said, said
    before = records(out)
    assert before["1"]["status"] == "interrupted"
    assert [t.state for t in study_of(out).trials] == [  # (none asked in trial 1's place)
        optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING,
        optuna.trial.TrialState.COMPLETE]

    again = train(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert [t.state for t in study_of(out).trials] == [optuna.trial.TrialState.COMPLETE] * 3
    after = records(out)
    for name in ("0", "2"):
        assert after[name]["attempts"] == before[name]["attempts"]  # not trained again
    assert len(after["1"]["attempts"]) == 2
    assert after["1"]["attempts"][1]["resumed_from_epoch"] >= 1  # from its checkpoint
    epochs = pd.read_csv(out / "1" / "metrics.csv")["epoch"]
    assert list(epochs) == list(range(1, 9)) and after["1"]["status"] == "completed"


@pytest.mark.parametrize("launcher", ["parallel", "fused"])
def test_trials_are_pruned_inside_their_launchers_jobs(cifar_root, tmp_path, launcher):
    """The run in a parallel job (or a fused group of the batch's two trials) learns its trial from
    its sweep's study file and reports through the storage; a pruner that stops every trial at its
    first epoch (ThresholdPruner) stops both (in submitit's jobs: tests/test_slurm.py and, for any
    app, tests/test_optuna_sweeper.py)."""
    out = tmp_path / "sweep"
    result = train(*search(cifar_root, out, f"hydra/launcher={launcher}", "epochs=3",
                           "hydra.sweeper.n_trials=2", "torch_threads=1",
                           "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=2.0"),
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [t.state for t in study_of(out).trials] == [optuna.trial.TrialState.PRUNED] * 2
    runs = records(out)
    assert {name: (r["status"], r["epochs_done"]) for name, r in runs.items()} == {
        "0": ("pruned", 1), "1": ("pruned", 1)}


def test_several_objectives_are_searched_without_reporting(cifar_root, tmp_path):
    """objective=[test_acc,wall_time_s]: the directions follow (maximize, minimize), nothing is
    reported to Optuna (it prunes single objectives only), search.csv says each run's epochs."""
    out = tmp_path / "sweep"
    result = train(*search(cifar_root, out, "hydra.sweeper.n_trials=2",
                           "objective=[test_acc,wall_time_s]"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "could not report" not in result.stdout + result.stderr
    assert [d.name for d in study_of(out).directions] == ["MAXIMIZE", "MINIMIZE"]
    table = pd.read_csv(out / "search.csv")
    assert list(table["last_step"]) == [2, 2] and {"test_acc", "wall_time_s"} <= set(table)
    assert "solutions" in yaml.safe_load((out / "optimization_results.yaml").read_text())


def test_the_grid_sampler_runs_each_point_once_and_the_search_ends(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    args = [a for a in search(cifar_root, out, "hydra.sweeper.n_trials=20") if "lr=" not in a]
    result = train(*[a.replace("sampler=random", "sampler=grid") for a in args], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(out / "search.csv")
    assert sorted(trials["batch_size"]) == [32, 64] and set(trials["state"]) == {"complete"}


def test_a_search_that_cannot_work_is_refused_before_any_trial(cifar_root, tmp_path):
    result = train(*search(cifar_root, tmp_path / "sweep"), "hydra.sweeper.n_jobs=0", cwd=tmp_path)
    assert result.returncode == 2 and "(1 or more)" in result.stderr
    assert not (tmp_path / "sweep" / "0").exists()
