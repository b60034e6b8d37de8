"""hydra/sweeper=optuna: the search space from Hydra's grammar, pruning through the study's
storage from the run's own process, and a study that a rerun continues (tiny data, the real CLI)."""

from __future__ import annotations

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
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from alexnet.search.space import as_override, parse_space
from helpers import records, train


def test_the_search_space_reads_hydras_sweep_grammar():
    space, fixed = parse_space(["optimizer.lr=tag(log, interval(1e-5, 0.1))",
                                "batch_size=choice(32,64,128)", "optimizer=choice(sgd,adam)",
                                "epochs=range(2,8,2)", "model.dropout=interval(0.1, 0.5)",
                                "seed=1"])
    assert space == {
        "optimizer.lr": FloatDistribution(1e-5, 0.1, log=True),
        "batch_size": CategoricalDistribution([32, 64, 128]),
        "optimizer": CategoricalDistribution(["sgd", "adam"]),
        "epochs": IntDistribution(2, 6, step=2),  # range's stop is excluded, as in Hydra
        "model.dropout": FloatDistribution(0.1, 0.5)}
    assert fixed == ["seed=1"]
    with pytest.raises(ValueError, match="takes choice"):
        parse_space(["optimizer=glob(*)"])
    assert parse_space(["scheduler=choice(none,cosine)", "scheduler=cosine"]) == (
        {}, ["scheduler=cosine"])  # the command line's value beats the preset's search


@pytest.mark.parametrize("value", ["sgd", "x,y", "1", "null", "c=d", "it's", 0.001, 32, True])
def test_a_sampled_value_goes_back_to_hydra_as_the_same_value(value):
    override = as_override("key", value)
    assert OverridesParser.create().parse_overrides([override])[0].value() == value


def search(root: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra/sweeper/pruner=none",
            "hydra.sweeper.sampler.seed=0", "optimizer.lr=tag(log, interval(1e-3, 0.1))",
            "batch_size=choice(32,64)", "model=alexnet_cifar", "data.val_split=32", "epochs=2",
            f"data.root={root}", "data.download=false", "progress=false",
            f"hydra.sweep.dir={out}", *extra]


def test_a_run_reports_to_its_trial_and_stops_when_the_pruner_says_so(cifar_root, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"  # any storage two processes share
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.set_user_attr("pruner", {"_target_": "optuna.pruners.ThresholdPruner", "lower": 2.0})
    trial = study.ask()  # (its pruner, in the study for the run to build: prunes every trial)
    run_dir = tmp_path / "run"
    result = train("model=alexnet_cifar", "epochs=3", "data.val_split=16", f"data.root={cifar_root}",
                   "data.download=false", "progress=false", "search.study=s",
                   f"search.storage={url}", f"search.trial_id={trial._trial_id}",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "results.json").read_text())
    assert summary["status"] == "pruned" and summary["epochs_done"] == 1 < summary["epochs_planned"]
    reported = optuna.load_study(study_name="s", storage=url).trials[0].intermediate_values
    assert reported == {1: summary["final"]["val_acc"]}  # written by the run's own process


def test_a_search_leaves_its_study_and_the_same_command_continues_it(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    first = train(*search(cifar_root, out, "hydra.sweeper.n_trials=3"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    study = optuna.load_study(study_name="alexnet", storage=f"sqlite:///{out / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 3 and table["final_val_acc"].between(0, 1).all()  # the objective
    best = study.best_trial
    assert f"- trial {best.number}: val_acc {best.value:.4f}" in (out / "search.md").read_text()
    assert (out / "search_history.png").stat().st_size > 0 and (out / "search.csv").is_file()
    before = {name: r["attempts"] for name, r in records(out).items()}

    again = train(*search(cifar_root, out, "hydra.sweeper.n_trials=4"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="alexnet", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 4 and all(t.state.is_finished() for t in study.trials)
    after = records(out)
    assert {name: after[name]["attempts"] for name in before} == before  # none trained again
    assert set(after) == {"0", "1", "2", "3"}


def test_a_trial_an_earlier_start_left_running_is_run_again_as_the_same_trial(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    study = optuna.create_study(study_name="alexnet", storage=f"sqlite:///{out / 'optuna.db'}",
                                direction="maximize")
    orphan = study.ask({"optimizer.lr": FloatDistribution(1e-3, 0.1, log=True),
                        "batch_size": CategoricalDistribution([32, 64])})  # its process died
    result = train(*search(cifar_root, out, "hydra.sweeper.n_trials=1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="alexnet", storage=f"sqlite:///{out / 'optuna.db'}").trials
    assert len(trials) == 1 and trials[0].state == optuna.trial.TrialState.COMPLETE
    assert trials[0].number == orphan.number
    run = json.loads((out / str(orphan.number) / "results.json").read_text())
    assert f"batch_size={orphan.params['batch_size']}" in run["overrides"]


def test_parallel_trials_start_when_a_slot_frees_and_a_killed_search_resumes(slower_cifar_root,
                                                                            tmp_path):
    """Seed 1 of the random sampler gives trials of 1, 6, 1, 6 epochs: with two workers, trial 2
    starts and ends while trial 1 runs (no batch barrier). kill -9 then; the same command ends with
    4 finished trials, trials 0 and 2 not trained again, trial 1 resumed from its checkpoint."""
    out = tmp_path / "sweep"
    args = search(slower_cifar_root, out, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                  "hydra.sweeper.sampler.seed=1", "epochs=choice(1,6)", "hydra.sweeper.n_trials=4")
    with open(tmp_path / "first.log", "w") as log:  # (a pipe nobody reads could fill and stall it)
        process = subprocess.Popen([sys.executable, "-m", "alexnet.train", *args], cwd=tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while (records(out).get("2") or {}).get("status") != "completed":
            assert process.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        run_1 = records(out)["1"]
        assert run_1["status"] == "running" and run_1["epochs_planned"] == 6
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the sweeper and its workers, no handler runs
        process.wait()
    before = records(out)
    study = optuna.load_study(study_name="alexnet", storage=f"sqlite:///{out / 'optuna.db'}")
    assert study.trials[1].state == optuna.trial.TrialState.RUNNING

    again = train(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="alexnet", storage=f"sqlite:///{out / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    after = records(out)
    for name in ("0", "2"):
        assert after[name]["attempts"] == before[name]["attempts"]  # not trained again
    assert len(after["1"]["attempts"]) == 2
    assert after["1"]["attempts"][1]["resumed_from_epoch"] is not None  # from its checkpoint
    epochs = pd.read_csv(out / "1" / "metrics.csv")["epoch"]
    assert list(epochs) == [1, 2, 3, 4, 5, 6] and after["1"]["status"] == "completed"


@pytest.mark.parametrize("launcher", ["submitit_local", "parallel"])
def test_trials_are_pruned_inside_their_launchers_jobs(cifar_root, tmp_path, launcher):
    """The run in a submitit job or a parallel worker learns its trial from its overrides and
    reports through the storage; a pruner that stops every trial at its first epoch
    (ThresholdPruner) stops both."""
    out = tmp_path / "sweep"
    result = train(*search(cifar_root, out, f"hydra/launcher={launcher}", "epochs=3",
                           "hydra.sweeper.n_trials=2", "torch_threads=1",
                           "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
                           "+hydra.sweeper.pruner.lower=2.0"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="alexnet", storage=f"sqlite:///{out / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    runs = records(out)
    assert {name: (r["status"], r["epochs_done"]) for name, r in runs.items()} == {
        "0": ("pruned", 1), "1": ("pruned", 1)}
    if launcher == "submitit_local":  # (they did run as the launcher's jobs)
        assert any((out / ".submitit").rglob("*_log.out"))
    else:
        assert "at a time in worker processes" in result.stdout


def test_the_grid_sampler_runs_each_point_once_and_the_search_ends(cifar_root, tmp_path):
    out = tmp_path / "sweep"
    args = [a for a in search(cifar_root, out, "hydra.sweeper.n_trials=20") if "lr=" not in a]
    result = train(*[a.replace("sampler=random", "sampler=grid") for a in args], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = pd.read_csv(out / "search.csv")
    assert sorted(trials["batch_size"]) == [32, 64] and set(trials["state"]) == {"complete"}


@pytest.mark.parametrize(("change", "said"), [
    ("data.val_split=null", "add data.val_split=N"), ("hydra.sweeper.n_jobs=0", "(1 or more)")])
def test_searches_that_cannot_work_are_refused_before_any_trial(cifar_root, tmp_path, change,
                                                                said):
    result = train(*search(cifar_root, tmp_path / "sweep"), change, cwd=tmp_path)
    assert result.returncode == 2 and said in result.stderr
    assert not (tmp_path / "sweep" / "0").exists()


class ListLauncher:
    """A stand-in for a launcher that takes a list of jobs (Hydra's contract): records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list]] = []

    def launch(self, job_overrides, initial_job_idx):
        self.calls.append((initial_job_idx, [o[0] for o in job_overrides]))
        return [f"return of {o[0]}" for o in job_overrides]


def test_launchers_without_a_stream_get_batches_of_consecutive_jobs_asked_for_lazily():
    from alexnet.search.sweeper import _in_batches

    launcher, asked = ListLauncher(), []

    def jobs(numbers):  # each asked for when its batch forms
        for number in numbers:
            asked.append((number, len(launcher.calls)))
            yield number, [f"job {number}"]

    ended = list(_in_batches(launcher, jobs((6, 7, 8)), size=2))
    assert launcher.calls == [(6, ["job 6", "job 7"]), (8, ["job 8"])]
    assert ended == [(n, f"return of job {n}") for n in (6, 7, 8)]
    assert asked == [(6, 0), (7, 0), (8, 1)]  # 8 only once batch (6, 7) had ended
    list(_in_batches(launcher, jobs((2, 5)), size=2))  # reruns whose numbers do not follow
    assert launcher.calls[2:] == [(2, ["job 2"]), (5, ["job 5"])]  # Hydra numbers from the first
