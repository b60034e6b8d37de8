"""hydra/sweeper=optuna for an app that is not ours (tests/apps/): the official plugin's keys,
defaults and semantics, with the trials its documented procedure gives for the same seed, and what
ours adds (pruning on every launcher, streaming, resume), each through the app's real CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from alexnet.launch.placement import jobs_at_once
from alexnet.search.config import continuing_seed
from alexnet.search.space import as_override, parse_space
from alexnet.search.sweeper import FailureRate, in_batches

APPS = Path(__file__).parent / "apps"


def app(name: str, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python tests/apps/<name>.py args...` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, str(APPS / f"{name}.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def search(out: Path, *extra: str) -> list[str]:
    """A search of the quadratic with only the official plugin's keys."""
    return ["-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random",
            "hydra.sweeper.sampler.seed=123", f"hydra.sweep.dir={out}", *extra]


def stored(out: Path, name: str = "q") -> list[str]:
    return [f"hydra.sweeper.storage=sqlite:///{out.parent / 'study.db'}",
            f"hydra.sweeper.study_name={name}"]


def study_of(out: Path, name: str = "q") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out.parent / 'study.db'}")


def results(out: Path) -> dict:
    return yaml.safe_load((out / "optimization_results.yaml").read_text())


def official_trials(sampler: optuna.samplers.BaseSampler, space: dict, objective, n_trials: int,
                    n_jobs: int, directions: list[str]) -> optuna.Study:
    """What the official plugin documents: batches of n_jobs trials asked (each given the space
    in order), run, then told; n_trials in all."""
    study = optuna.create_study(sampler=sampler, directions=directions)
    left = n_trials
    while left > 0:
        batch = [study.ask(space) for _ in range(min(n_jobs, left))]
        for trial in batch:
            study.tell(trial, objective(trial.params))
        left -= len(batch)
    return study


def sphere(params: dict) -> float:
    return params["x"] ** 2 + params["y"] ** 2


# --- configs and grammar ----------------------------------------------------------------------

@pytest.fixture()
def hydra_config(monkeypatch):
    monkeypatch.syspath_prepend(str(APPS))
    __import__("quadratic")  # (its schema, in Hydra's ConfigStore)

    def composed(*overrides: str):
        with initialize_config_dir(config_dir=str(APPS / "conf"), version_base="1.3"):
            return compose("quadratic", overrides=["hydra/sweeper=optuna", *overrides],
                           return_hydra_config=True).hydra.sweeper
    return composed


def test_any_app_finds_the_sweeper_with_the_official_defaults(hydra_config):
    sweeper = hydra_config()
    assert (sweeper.direction, sweeper.storage, sweeper.study_name, sweeper.n_trials,
            sweeper.n_jobs, sweeper.max_failure_rate, sweeper.params,
            sweeper.custom_search_space) == ("minimize", None, None, 20, 2, 0.0, None, None)
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.constant_liar is False and sweeper.sampler.n_startup_trials == 10
    assert sweeper.pruner._target_ == "optuna.pruners.NopPruner"  # (ours: none unless asked)


@pytest.mark.parametrize(("name", "option", "value"), [
    ("tpe", "multivariate", True), ("random", "seed", 3), ("cmaes", "popsize", 4),
    ("nsgaii", "population_size", 10), ("nsgaiii", "dividing_parameter", 2),
    ("gp", "deterministic_objective", True), ("qmc", "qmc_type", "halton"),
    ("grid", "seed", 3)])
def test_each_sampler_takes_its_constructor_options_without_a_plus(hydra_config, name, option,
                                                                   value):
    sampler = instantiate(hydra_config(f"hydra/sweeper/sampler={name}",
                                       f"hydra.sweeper.sampler.{option}={value}").sampler)
    if name == "grid":  # (a partial: the sweeper gives it the grid)
        sampler = sampler(search_space={"x": [1, 2]})
    assert type(sampler).__name__ == SAMPLER_CLASSES[name]


SAMPLER_CLASSES = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler",
                   "nsgaii": "NSGAIISampler", "nsgaiii": "NSGAIIISampler", "gp": "GPSampler",
                   "qmc": "QMCSampler", "grid": "GridSampler"}


@pytest.mark.parametrize(("override", "expected"), [
    ("key=choice(1,2)", CategoricalDistribution([1, 2])),
    ("key=choice(true, false)", CategoricalDistribution([True, False])),
    ("key=range(1,3)", IntDistribution(1, 3)),  # (both ends in, as the official plugin reads it)
    ("key=range(0.5, 5.5, step=1)", FloatDistribution(0.5, 5.5, step=1)),
    ("key=interval(1, 5)", FloatDistribution(1, 5)),
    ("key=int(interval(1, 5))", IntDistribution(1, 5)),
    ("key=tag(log, interval(1, 5))", FloatDistribution(1, 5, log=True)),
    ("key=tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
])
def test_the_space_grammar_reads_as_the_official_plugin_reads_it(override, expected):
    assert parse_space([override]).distributions == {"key": expected}


def test_a_fixed_value_beats_a_distribution_and_keys_keep_their_first_place():
    space = parse_space(["a=choice(1,2)", "b=interval(0,1)", "c=3", "a=choice(5,6)", "b=2"])
    assert list(space.distributions) == ["a"] and space.distributions["a"].choices == (5, 6)
    assert space.fixed == {"c": "c=3", "b": "b=2"}
    assert set(parse_space(["k=shuffle(range(1,4))"]).distributions["k"].choices) == {1, 2, 3}


def test_a_choice_of_lists_goes_back_to_hydra_as_those_lists():
    space = parse_space(["betas=choice([0.9,0.99],[0.8,0.999])"])
    overrides = [space.override("betas", v) for v in space.distributions["betas"].choices]
    parsed = [o.value() for o in OverridesParser.create().parse_overrides(overrides)]
    assert parsed == [[0.9, 0.99], [0.8, 0.999]]


@pytest.mark.parametrize("value", ["sgd", "x,y", "1", "null", "c=d", "it's", "a\\b", "a\\",
                                   "\\'", 0.001, 32, True])
def test_a_sampled_value_goes_back_to_hydra_as_the_same_value(value):
    override = as_override("key", value)
    assert OverridesParser.create().parse_overrides([override])[0].value() == value


# --- the official plugin's behaviour ----------------------------------------------------------

def test_a_config_for_the_official_plugin_gives_its_trials_and_best_value(tmp_path):
    """tests/apps/conf/sphere.yaml, as the official documentation writes it (TPE, seed 123,
    n_jobs 1; 12 trials here, 2 past TPE's random start): the trials its procedure gives, the
    same best value."""
    out = tmp_path / "sweep"
    result = app("quadratic", "-m", "--config-name", "sphere", f"hydra.sweep.dir={out}",
                 "hydra.sweeper.n_trials=12", *stored(out, "sphere"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reference = official_trials(
        optuna.samplers.TPESampler(seed=123, n_startup_trials=10, n_ei_candidates=24,
                                   multivariate=False, constant_liar=False),
        {"x": FloatDistribution(-5.5, 5.5, step=0.5), "y": CategoricalDistribution([-5, 0, 5])},
        sphere, n_trials=12, n_jobs=1, directions=["minimize"])
    ours = study_of(out, "sphere")
    assert [t.params for t in ours.trials] == [t.params for t in reference.trials]
    assert results(out) == {"name": "optuna", "best_params": reference.best_params,
                            "best_value": reference.best_value}


def test_the_deprecated_search_space_is_taken_with_a_warning_as_the_official_plugin_takes_it(
        tmp_path):
    """sphere.yaml's search written with hydra.sweeper.search_space, which the official plugin
    still takes (with a deprecation warning): the same trials as with params."""
    runs = {}
    for name in ("sphere", "sphere_search_space"):
        out = tmp_path / name / "sweep"
        result = app("quadratic", "-m", "--config-name", name, f"hydra.sweep.dir={out}",
                     "hydra.sweeper.n_trials=4", *stored(out, "sphere"), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        runs[name] = [t.params for t in study_of(out, "sphere").trials]
    assert "search_space` is deprecated" in result.stderr
    assert runs["sphere_search_space"] == runs["sphere"] and len(runs["sphere"]) == 4


def test_batches_of_n_jobs_and_a_fixed_value_on_the_command_line(tmp_path):
    out = tmp_path / "sweep"
    result = app("quadratic", *search(out, "hydra.sweeper.n_trials=7", "hydra.sweeper.n_jobs=3",
                                      "x=interval(-2, 2)", "y=0", *stored(out)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reference = official_trials(optuna.samplers.RandomSampler(seed=123),
                                {"x": FloatDistribution(-2, 2)}, lambda p: p["x"] ** 2,
                                n_trials=7, n_jobs=3, directions=["minimize"])
    ours = study_of(out)
    assert [t.params for t in ours.trials] == [t.params for t in reference.trials]
    assert ours.trials[0].user_attrs["y"] == "0"  # (fixed values: user attrs, as the official)
    assert "y" not in results(out)["best_params"] and \
        results(out)["best_value"] == reference.best_value
    assert "storage is null" not in result.stdout + result.stderr  # (a storage was given)


def test_several_objectives_give_the_pareto_front(tmp_path):
    out = tmp_path / "sweep"
    result = app("pareto", *search(out, "hydra.sweeper.n_trials=12", "hydra.sweeper.n_jobs=1",
                                   "hydra.sweeper.direction=[minimize,minimize]",
                                   "x=range(0, 5)", "y=range(0, 3)", "steps=3"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reference = official_trials(
        optuna.samplers.RandomSampler(seed=123),
        {"x": IntDistribution(0, 5), "y": IntDistribution(0, 3)},
        lambda p: [4 * p["x"] ** 2 + 4 * p["y"] ** 2, (p["x"] - 5) ** 2 + (p["y"] - 5) ** 2],
        n_trials=12, n_jobs=1, directions=["minimize", "minimize"])
    front = sorted((s["params"]["x"], s["params"]["y"], *s["values"])
                   for s in results(out)["solutions"])
    assert front == sorted((t.params["x"], t.params["y"], *t.values) for t in reference.best_trials)
    # Several objectives: nothing is reported to Optuna (it prunes single objectives only), and
    # search.csv still says how far each trial's run went.
    assert "could not report" not in result.stdout + result.stderr
    assert set(pd.read_csv(out / "search.csv")["last_step"]) == {2}


@pytest.mark.parametrize(("rate", "trials", "ends"), [(0.0, 2, 1), (0.5, 2, 1), (1.0, 6, 0)])
def test_max_failure_rate_stops_after_a_batch_over_it(tmp_path, rate, trials, ends):
    out = tmp_path / "sweep"
    result = app("quadratic", *search(out, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2",
                                      f"hydra.sweeper.max_failure_rate={rate}", "error=true",
                                      "x=interval(-1, 1)", *stored(out)), cwd=tmp_path)
    assert (result.returncode != 0) == bool(ends), result.stderr
    assert ("RuntimeError: cfg.error is true" in result.stderr) == bool(ends)
    states = [t.state for t in study_of(out).trials]
    assert states == [optuna.trial.TrialState.FAIL] * trials  # (none left RUNNING)


def test_a_custom_search_space_adds_its_own_parameters(tmp_path):
    out = tmp_path / "sweep"
    result = app("quadratic", *search(out, "hydra.sweeper.n_trials=5",
                                      "hydra.sweeper.custom_search_space=quadratic.configure",
                                      "x=range(-5.5, 5.5, step=0.5)", "y=choice(-5, 0, 5)",
                                      "max_z_difference_from_x=0.3"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    best = results(out)["best_params"]
    assert abs(best["x"] - best["z"]) <= 0.3 and 0 <= best["+w"] <= 1
    seen = [json.loads(p.read_text()) for p in out.glob("*/seen.json")]
    assert len(seen) == 5 and all(0 <= s["w"] <= 1 for s in seen)  # (+w reached every job)


def test_the_grid_sampler_runs_each_point_once(tmp_path):
    out = tmp_path / "sweep"
    result = app("quadratic", *search(out, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=10",
                                      "x=choice(-1, 1)", "y=range(-1.0, 1.0, step=1)"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "search.csv")
    points = sorted(zip(table["x"], table["y"], strict=True))
    assert points == [(-1, -1.0), (-1, 0.0), (1, -1.0), (1, 0.0)]
    assert results(out)["best_value"] == 1.0


def test_an_empty_space_runs_the_one_configuration(tmp_path):
    out = tmp_path / "sweep"
    result = app("quadratic", "-m", "hydra/sweeper=optuna", f"hydra.sweep.dir={out}", "x=2",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert results(out) == {"name": "optuna", "best_params": {}, "best_value": 5.0}
    assert len(pd.read_csv(out / "search.csv")) == 1
    log = result.stdout + result.stderr
    assert log.count("storage is null") == 1  # one warning, of what it costs
    assert (out / "multirun.yaml").is_file()
    assert yaml.safe_load((out / "multirun.yaml").read_text())["hydra"]["overrides"]["task"] == \
        ["x=2"]


# --- what ours adds -----------------------------------------------------------------------------

@pytest.mark.parametrize("launcher", ["basic", "parallel", "submitit_local"])
def test_a_run_reporting_per_step_is_pruned_under_each_launcher(tmp_path, launcher):
    """A pruner that stops every trial at its first step (ThresholdPruner, upper 0): the basic
    launcher's runs reach a study kept in memory (the official default); the others' through
    its storage."""
    out = tmp_path / "sweep"
    storage = [] if launcher == "basic" else stored(out)
    result = app("quadratic", *search(out, f"hydra/launcher={launcher}", "hydra.sweeper.n_trials=2",
                                      "hydra/sweeper/pruner=threshold",
                                      "hydra.sweeper.pruner.upper=0", "steps=5",
                                      "x=interval(-1, 1)", *storage), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "search.csv")
    assert list(table["state"]) == ["pruned"] * 2 and list(table["last_step"]) == [0, 0]


def test_a_list_valued_choice_reaches_the_job_as_a_list(tmp_path):
    out = tmp_path / "sweep"
    result = app("quadratic", *search(out, "hydra/sweeper/sampler=grid",
                                      "betas=choice([0.9,0.99],[0.8,0.999])"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = sorted(json.loads(p.read_text())["betas"] for p in out.glob("*/seen.json"))
    assert seen == [[0.8, 0.999], [0.9, 0.99]]


def test_a_trial_whose_config_cannot_compose_fails_and_the_rerun_goes_on(tmp_path):
    """x=abc is no float: that trial FAILs (it is not left RUNNING), the failure stops the search
    (max_failure_rate 0), and the same command again runs the other point."""
    out = tmp_path / "sweep"
    args = search(out, "hydra/sweeper/sampler=grid", "hydra.sweeper.sampler.seed=1",
                  "hydra.sweeper.n_jobs=1", "x=choice(abc,1)", *stored(out))
    first = app("quadratic", *args, cwd=tmp_path)
    states = {t.params["x"]: t.state for t in study_of(out).trials}
    assert first.returncode != 0 and "abc" in first.stderr
    assert optuna.trial.TrialState.RUNNING not in states.values()
    assert states.get("abc") == optuna.trial.TrialState.FAIL
    again = app("quadratic", *args, cwd=tmp_path)
    states = {t.params["x"]: t.state for t in study_of(out).trials}
    assert states == {"abc": optuna.trial.TrialState.FAIL, 1: optuna.trial.TrialState.COMPLETE}, \
        again.stderr


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_seeded_sampler_resumed_goes_on_instead_of_repeating(tmp_path, sampler):
    out = tmp_path / "sweep"
    args = search(out, f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.sampler.seed=0",
                  "hydra.sweeper.n_jobs=1", "x=interval(-5, 5)", *stored(out))
    assert app("quadratic", *args, "hydra.sweeper.n_trials=2", cwd=tmp_path).returncode == 0
    fresh = official_trials(optuna.samplers.RandomSampler(seed=0), {"x": FloatDistribution(-5, 5)},
                            lambda p: p["x"] ** 2, n_trials=2, n_jobs=1, directions=["minimize"]) \
        if sampler == "random" else None
    again = app("quadratic", *args, "hydra.sweeper.n_trials=4", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    xs = [t.params["x"] for t in study_of(out).trials]
    assert len(xs) == 4 and len(set(xs)) == 4  # (the resumed start asked new points)
    if fresh is not None:  # (the first start: the official plugin's points for that seed)
        assert xs[:2] == [t.params["x"] for t in fresh.trials]


def test_a_rerun_with_other_fixed_settings_is_refused_with_the_first_command(tmp_path):
    out = tmp_path / "sweep"

    def args(x: str, y: str) -> list[str]:
        return search(out, "hydra.sweeper.n_trials=2", f"x={x}", f"y={y}", *stored(out))

    assert app("quadratic", *args("interval(-1, 1)", "0"), cwd=tmp_path).returncode == 0
    other = app("quadratic", *args("interval(-1, 1)", "1"), cwd=tmp_path)
    assert other.returncode == 2 and "holds another search" in other.stderr
    assert "y=0" in other.stderr.splitlines()[-2]  # the command it was made with
    assert len(study_of(out).trials) == 2
    space = app("quadratic", *args("interval(-2, 2)", "0"), cwd=tmp_path)
    assert space.returncode == 2 and "holds another search" in space.stderr


def test_two_sweep_dirs_on_one_study_do_not_run_at_once(tmp_path):
    """The study's lock, not only the sweep dir's: a second start on the same storage and study
    from another sweep dir is refused while the first runs (it would rerun its live trials)."""
    out, release = tmp_path / "sweep", tmp_path / "release"
    first = subprocess.Popen(
        [sys.executable, str(APPS / "quadratic.py"), *search(
            out, "hydra.sweeper.n_trials=1", "x=interval(-1, 1)", f"wait_for={release}",
            *stored(out))], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "0" / "seen.json").exists():  # (its trial is running)
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        other = app("quadratic", *search(tmp_path / "other", "hydra.sweeper.n_trials=1",
                                         "x=interval(-1, 1)", f"wait_for={release}",
                                         *stored(out)), cwd=tmp_path)
        assert other.returncode == 2 and "continuing study q" in other.stderr
        assert "Traceback" not in other.stderr
    finally:
        release.touch()
        first.wait(timeout=120)
    assert first.returncode == 0
    assert [t.state for t in study_of(out).trials] == [optuna.trial.TrialState.COMPLETE]


def test_trials_start_when_a_slot_frees_and_a_killed_search_resumes(tmp_path):
    """Random sampler, seed 123: trial 0 waits for a file, trials 1 and 2 do not. With two
    places (hydra/launcher=parallel) trial 2 runs and ends while trial 0 waits: no batch barrier.
    kill -9 then; the same command (less the waiting, which resume_identity leaves out) reruns
    trial 0 as the same trial, and asks no new one."""
    out, release = tmp_path / "sweep", tmp_path / "release"
    args = search(out, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                  "hydra.sweeper.n_jobs=null", "hydra.sweeper.n_trials=3", "x=interval(-1, 1)",
                  "hydra.sweeper.resume_identity=quadratic.identity", *stored(out))
    reference = official_trials(optuna.samplers.RandomSampler(seed=123),
                                {"x": FloatDistribution(-1, 1)}, lambda p: p["x"] ** 2, 3, 1,
                                ["minimize"])
    waits = [t.params["x"] > 0.3 for t in reference.trials]
    assert waits == [True, False, False]  # (what this test is built on)
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen([sys.executable, str(APPS / "quadratic.py"), *args,
                                    f"wait_for={release}", "wait_above=0.3"], cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (out / "multirun.yaml").exists() or [t.state for t in study_of(out).trials[1:]] \
                != [optuna.trial.TrialState.COMPLETE] * 2:  # (multirun.yaml: the study is made)
            assert process.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        assert study_of(out).trials[0].state == optuna.trial.TrialState.RUNNING
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the sweeper and its jobs, no handler runs
        process.wait()
    again = app("quadratic", *args, cwd=tmp_path)  # (no waiting: resume_identity allows it)
    assert again.returncode == 0, again.stderr
    study = study_of(out)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert study.trials[0].params == reference.trials[0].params  # (the same trial, run again)


@pytest.mark.parametrize(("setting", "said"), [
    ("hydra.sweeper.n_trials=0", "n_trials=0"),
    ("hydra.sweeper.direction=up", "direction=up"),
    ("hydra.sweeper.n_jobs=0", "n_jobs=0"),
    ("hydra.sweeper.max_failure_rate=2", "max_failure_rate=2"),
    ("hydra.sweeper.custom_search_space=nowhere.configure", "custom_search_space=nowhere"),
    ("hydra.sweeper.metric_names=[a,b]", "metric_names has 2 names"),
    ("hydra/sweeper/sampler=motpe", "The 'motpe' sampler was removed in Optuna 4.0"),
    ("x=glob(*)", "takes choice"),
])
def test_settings_no_search_could_use_end_in_one_line_before_any_trial(tmp_path, setting, said):
    out = tmp_path / "sweep"
    args = [a for a in search(out, "x=interval(-1, 1)") if "sampler" not in a or
            "motpe" not in setting]  # (motpe's config has no seed, as the official one)
    result = app("quadratic", *args, setting, cwd=tmp_path)
    assert result.returncode == 2 and said in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1
    assert not (out / "0").exists()


def test_a_study_file_cut_in_half_ends_in_one_line(tmp_path):
    out = tmp_path / "sweep"
    args = ["hydra.sweeper.n_trials=1", "x=interval(-1, 1)", *stored(out)]
    assert app("quadratic", *search(out, *args), cwd=tmp_path).returncode == 0
    database = tmp_path / "study.db"
    with sqlite3.connect(database) as connection:  # (all of it in the file, no journal aside)
        connection.execute("PRAGMA wal_checkpoint")
    database.write_bytes(database.read_bytes()[: database.stat().st_size // 2])
    result = app("quadratic", *search(tmp_path / "again", *args), cwd=tmp_path)
    assert result.returncode == 2 and "cannot open the study q" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# --- the parts --------------------------------------------------------------------------------

def test_the_failure_rate_is_judged_per_block_of_n_jobs_in_launch_order():
    rate, error = FailureRate(allowed=0.5, block=2), RuntimeError("x")
    for number in (0, 1, 2, 3, 4):
        rate.launched(number)
    assert rate.ended(1, error) is None  # (its block is not over)
    assert rate.ended(0, None) is None  # 1 of 2: not above 0.5
    assert rate.ended(3, error) is None and rate.ended(2, error) is error  # 2 of 2
    assert rate.ended(4, error) is None and rate.finish() is error  # the last, shorter block


def test_the_failure_blocks_are_as_many_jobs_as_the_launcher_runs_at_once():
    """Our parallel launcher's n_jobs null (one per GPU slot, 2 without a GPU) is what it runs,
    not one; other launchers are read from their config, as joblib's and submitit's say it."""
    parallel = "hydra_plugins.alexnet_sweeps.parallel_launcher.ParallelLauncher"
    assert jobs_at_once(OmegaConf.create({"_target_": parallel, "n_jobs": None})) >= 2
    assert jobs_at_once(OmegaConf.create({"_target_": parallel, "n_jobs": 4})) == 4
    assert jobs_at_once(OmegaConf.create({"n_jobs": 3})) == 3
    assert jobs_at_once(OmegaConf.create({"array_parallelism": 5})) == 5
    assert jobs_at_once(OmegaConf.create({})) == 1


def test_a_continued_study_gets_another_seed_a_new_one_the_configured_one():
    assert continuing_seed(7, 0) == 7
    assert continuing_seed(7, 3) == continuing_seed(7, 3) != continuing_seed(7, 4) != 7


class ListLauncher:
    """A stand-in for a launcher that takes a list of jobs (Hydra's contract): records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list]] = []

    def launch(self, job_overrides, initial_job_idx):
        self.calls.append((initial_job_idx, [o[0] for o in job_overrides]))
        return [f"return of {o[0]}" for o in job_overrides]


def test_launchers_without_a_stream_get_batches_of_consecutive_jobs_asked_for_lazily():
    launcher, asked = ListLauncher(), []

    def jobs(numbers):  # each asked for when its batch forms
        for number in numbers:
            asked.append((number, len(launcher.calls)))
            yield number, [f"job {number}"]

    ended = list(in_batches(launcher, jobs((6, 7, 8)), size=2))
    assert launcher.calls == [(6, ["job 6", "job 7"]), (8, ["job 8"])]
    assert ended == [(n, f"return of job {n}") for n in (6, 7, 8)]
    assert asked == [(6, 0), (7, 0), (8, 1)]  # 8 only once batch (6, 7) had ended
    list(in_batches(launcher, jobs((2, 5)), size=2))  # reruns whose numbers do not follow
    assert launcher.calls[2:] == [(2, ["job 2"]), (5, ["job 5"])]  # Hydra numbers from the first
