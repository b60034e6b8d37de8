"""What a person sees on the real command line: the resume command a stop prints (run it, and it
resumes), a missing extra's pip install, one line for a missing data set, the table a sweep ends
with, and what checkpoint.keep leaves on disk."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexnet import configs as extras
from alexnet import scores
from alexnet.results.collect import collect
from alexnet.results.effects import sweep_sentence
from helpers import CPU_ONLY, records, run_cli, start, train

TINY = ["epochs=2", "model=alexnet_cifar", "data.download=false", "progress=false", "device=cpu"]


def wait_for_file(pattern: str, root: Path, process: subprocess.Popen, timeout: float = 300) -> Path:
    """The first file under `root` matching `pattern` that holds an epoch's row (a metrics.csv
    with a header and a row); fails if `process` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in root.glob(pattern):
            if len(path.read_text().splitlines()) > 1:
                return path
        if process.poll() is not None:
            raise AssertionError(f"ended before its first epoch: {process.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern} with an epoch under {root} after {timeout} s")


@pytest.mark.parametrize(("sweep", "runs"), [(False, "outputs/runs/*/*"),
                                             (True, "outputs/sweeps/*/*")])
def test_the_command_printed_after_a_ctrl_c_resumes_the_same_folder(
        slower_cifar_root, tmp_path, sweep, runs):
    args = [*(["-m", "seed=0"] if sweep else []), "epochs=2", "batch_size=16",  # (a sweep of one)
            "data.train_subset=256", "model=alexnet_cifar", f"data.root={slower_cifar_root}",
            "data.download=false", "progress=false"]  # no hydra.run.dir: a dated folder
    process = start(*args, cwd=tmp_path, own_group=True)
    metrics = wait_for_file(f"{runs}{'/0' if sweep else ''}/metrics.csv", tmp_path, process)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it: to the whole group
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, output
    folder = metrics.parent.parent if sweep else metrics.parent
    printed = re.search(r"Resume it with:\n  (.+)", output)
    assert printed, output
    command = shlex.split(printed.group(1))
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    assert command[:3] == ["python", "-m", "alexnet.train"] and command[3:-1] == args
    assert (tmp_path / command[-1].removeprefix(f"{key}=")).resolve() == folder.resolve()

    again = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert [p.resolve() for p in tmp_path.glob(runs)] == [folder.resolve()]  # no new folder
    resumed = json.loads((metrics.parent / "results.json").read_text())
    assert resumed["status"] == "completed" and resumed["epochs_done"] == 2
    assert resumed["attempts"][-1]["resumed_from_epoch"] is not None  # from its checkpoint
    if sweep:
        assert {r["status"] for r in records(folder).values()} == {"completed"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_the_command_starts_up_is_one_stopped_line(cifar_root, tmp_path, sig):
    """SIGTERM or SIGHUP as soon as the command takes them (before any run has begun): it stops
    where it is, says so in one line and exits with 128 + the signal (not a silent death)."""
    process = start("-m", "optimizer=sgd,adam", *TINY, f"data.root={cifar_root}", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not caught(process.pid, sig):  # (the command line's handler is in place)
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.002)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + sig, output
    assert f"stopped: {sig.name}; finished runs and saved checkpoints are kept" in output
    assert "Traceback" not in output


def test_under_nohup_a_hang_up_while_the_command_starts_stops_nothing(cifar_root, tmp_path):
    """Started as nohup starts it (SIGHUP ignored): a hang-up as soon as the command has its
    handlers in place is still ignored, and the run completes."""
    process = subprocess.Popen(
        [sys.executable, "-m", "alexnet.train", *TINY, "epochs=1", f"data.root={cifar_root}",
         f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=CPU_ONLY,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not caught(process.pid, signal.SIGTERM):
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.002)
    process.send_signal(signal.SIGHUP)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "completed: test_acc" in output


def caught(pid: int, sig: signal.Signals) -> bool:
    """Whether process `pid` has a handler for `sig` (/proc's SigCgt mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(status.split("SigCgt:")[1].split()[0], 16)
    return bool(mask >> (sig - 1) & 1)


def without(modules: list[str], *args: str) -> list[str]:
    """The training command line in a Python where `modules` cannot be imported (as if their
    packages were not installed)."""
    code = (f"import sys\nfor m in {modules!r}: sys.modules[m] = None\n"
            f"sys.argv = ['alexnet.train', *{list(args)!r}]\nfrom alexnet.train import cli\ncli()")
    return [sys.executable, "-c", code]


@pytest.mark.parametrize(("modules", "args", "error"), [
    (["optuna"], ["-m", "hydra/sweeper=optuna"],
     'error: hydra/sweeper=optuna needs optuna, which is not installed: '
     'pip install "alexnet-sweeps[search]"'),
    (["optuna"], ["-m", "sweep=search_cpu"],
     'error: hydra/sweeper=optuna (chosen by sweep=search_cpu) needs optuna, which is not '
     'installed: pip install "alexnet-sweeps[search]"'),
    (["hydra_plugins.hydra_submitit_launcher"], ["-m", "hydra/launcher=slurm", "optimizer=sgd,adam"],
     'error: hydra/launcher=slurm needs hydra-submitit-launcher, which is not installed: '
     'pip install "alexnet-sweeps[launchers]"'),
    (["mlflow"], ["-m", "logger=none,mlflow"],
     'error: logger=mlflow needs mlflow, which is not installed: pip install "alexnet-sweeps[mlflow]"'),
    (["cmaes"], ["-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=cmaes"],
     "error: hydra/sweeper/sampler=cmaes needs cmaes, which is not installed: "
     'pip install "alexnet-sweeps[search]"'),
])
def test_a_choice_whose_package_is_missing_is_one_line_naming_its_pip_install(
        cifar_root, tmp_path, modules, args, error):
    result = subprocess.run(without(modules, *args, f"data.root={cifar_root}", "data.download=false",
                                    f"hydra.sweep.dir={tmp_path / 'sweep'}"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == error
    assert list(tmp_path.iterdir()) == []  # nothing written, no sweep dir


def test_each_extra_named_is_one_of_the_packages_extras():
    tomllib = pytest.importorskip("tomllib")  # (Python 3.11+)
    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    optional = declared["project"]["optional-dependencies"]
    for needs in extras.NEEDS.values():
        for need in needs:
            name, _, extra = need.install.partition("[")
            if not extra:  # a package of its own, in no extra
                assert name == need.package
                continue
            assert name == declared["project"]["name"]
            assert any(r.startswith(need.package) for r in optional[extra.rstrip("]")]), need


@pytest.mark.parametrize("module", ["alexnet.train", "alexnet.show_data"])
def test_a_missing_data_set_is_one_line_and_leaves_no_folder(tmp_path, module):
    result = run_cli(module, "data.root=nowhere", "data.download=false", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "error: CIFAR-100 not found: nowhere/cifar-100-python lacks train, test, meta. Point "
        "data.root at a folder that holds cifar-100-python/ (data.root=DIR), or set "
        "data.download=true to fetch it.")
    assert list(tmp_path.iterdir()) == []  # not even outputs/runs/


@pytest.fixture(scope="module")
def finished_sweep(learnable_cifar_root, tmp_path_factory):
    """A sweep of two optimizers and a batch size that no run can use, keeping the best weights."""
    out = tmp_path_factory.mktemp("best") / "sweep"
    result = train("-m", "optimizer=sgd,adam", "batch_size=16,0", "checkpoint.keep=best", *TINY,
                   f"data.root={learnable_cifar_root}", f"hydra.sweep.dir={out}", cwd=out.parent)
    assert result.returncode == 1, result.stderr  # two runs failed
    return out, result.stderr


@pytest.mark.xdist_group("test_messages:finished_sweep")
def test_a_sweep_ends_by_printing_its_table_best_first(finished_sweep):
    out, stderr = finished_sweep
    lines = stderr.splitlines()
    header = lines.index("run  optimizer  batch_size  test_acc  status")
    footer = lines.index(f"(best first by test_acc; every column: {out / 'results.md'})")
    by_run = records(out)
    done = sorted((r for r in by_run.items() if r[1]["status"] == "completed"),
                  key=lambda r: (-r[1]["final"]["test_acc"], int(r[0])))
    failed = sorted((r for r in by_run.items() if r[1]["status"] != "completed"),
                    key=lambda r: int(r[0]))
    optimizer = {name: "sgd" if "optimizer=sgd" in r["overrides"] else "adam"
                 for name, r in by_run.items()}
    expected = [[name, optimizer[name], "16", f"{r['final']['test_acc']:.4f}", "completed"]
                for name, r in done]
    expected += [[name, optimizer[name], "0", "failed"] for name, _ in failed]
    assert [line.split() for line in lines[header + 1:footer]] == expected
    assert lines[footer + 1] == sweep_sentence(collect([out]).runs)  # what the knobs did
    assert "4 runs: 2 completed, 2 failed" in stderr


@pytest.mark.xdist_group("test_messages:finished_sweep")
def test_checkpoint_keep_best_leaves_the_weights_of_the_sweeps_best_run_alone(finished_sweep):
    out, stderr = finished_sweep
    by_run = records(out)
    names = sorted(by_run, key=int)
    best = names[scores.best([by_run[name] for name in names])]
    assert sorted(p.parent.name for p in out.glob("*/model.pt")) == [best]
    assert not list(out.glob("*/checkpoint*.pt"))
    size = (out / best / "model.pt").stat().st_size  # (one other run had weights, of one size)
    assert f"checkpoint.keep=best: kept {out / best / 'model.pt'}; removed the other runs' " \
           f"weights ({size / 1e6:.1f} MB)" in stderr


@pytest.mark.parametrize(("keep", "kept"), [("best", ["model.pt"]), ("none", [])])
def test_a_single_run_keeps_its_weights_with_best_and_none_with_none(cifar_root, tmp_path, keep, kept):
    result = train(f"checkpoint.keep={keep}", *TINY, "epochs=1", "batch_size=16", f"data.root={cifar_root}",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pt")) == kept
    final = json.loads((tmp_path / "run" / "results.json").read_text())["final"]["test_acc"]
    assert result.stderr.endswith(f"completed: test_acc {final:.4f}; its record, metrics and "
                                  f"plots are in {tmp_path / 'run'}\n")  # (its last line)
