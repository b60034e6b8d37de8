"""Nobody else can touch our runs through a shared folder: lock files are never followed through a
symbolic link, are created 0600 in folders made 0700, and a folder that is not ours alone is
refused; the files written for people (tables, plots, records, weights) follow the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from alexnet.launch.placement import default_slots_dir, hold_slot, one_at_a_time
from alexnet.locks import UnsafeLockPath, is_locked, try_lock
from alexnet.resume.run_dir import RunDirConflict, plan
from alexnet.run.record import RUN_LOCK

ANOTHER_USER = 65534  # nobody
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def private_notes(path: Path) -> Path:
    """A file of ours outside the folders under test, which nothing may write or widen."""
    path.write_text("private notes\n")
    path.chmod(0o600)
    return path


def assert_untouched(path: Path) -> None:
    assert path.read_text() == "private notes\n" and mode(path) == 0o600


def holding(path: Path) -> subprocess.Popen:
    """A real second process holding the flock on `path` until killed."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"f = open({str(path)!r}); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True)\n"
        "time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_symlink_planted_as_a_slot_or_a_run_dirs_lock_is_refused_and_its_target_untouched(
        tmp_path):
    notes = private_notes(tmp_path / "notes.txt")
    slots = tmp_path / "slots"
    slots.mkdir(mode=0o700)
    (slots / "GPU-a-0.lock").symlink_to(notes)
    with pytest.raises(UnsafeLockPath, match=r"GPU-a-0\.lock: it is a symbolic link"), \
            hold_slot(slots, ["GPU-a", "GPU-b"], 1):
        pass
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RUN_LOCK).symlink_to(notes)
    with pytest.raises(RunDirConflict, match=rf"refusing {run_dir / RUN_LOCK}: it is a symbolic link"):
        plan(run_dir, {"epochs": 1})
    assert_untouched(notes)
    assert sorted(p.name for p in run_dir.iterdir()) == [RUN_LOCK]  # nothing else was written

    # A read check (the aggregator's) follows no link either: a lock held on the link's target
    # is nobody's lock on this run.
    holder = holding(notes)
    try:
        assert is_locked(notes) is True
        assert is_locked(run_dir / RUN_LOCK) is False
    finally:
        holder.kill()
        holder.wait()
    assert is_locked(tmp_path / "absent.lock") is False and not (tmp_path / "absent.lock").exists()
    assert_untouched(notes)


def test_the_real_cli_refuses_a_run_dir_whose_lock_is_a_planted_symlink(cifar_root, tmp_path):
    notes = private_notes(tmp_path / "notes.txt")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RUN_LOCK).symlink_to(notes)
    result = subprocess.run(
        [sys.executable, "-m", "alexnet.train", "epochs=1", "model=alexnet_cifar", "device=cpu",
         "torch_threads=1", "progress=false", f"data.root={cifar_root}", "data.download=false",
         f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    assert f"stopped: refusing {run_dir / RUN_LOCK}: it is a symbolic link" in result.stderr
    assert "Traceback" not in result.stderr
    assert_untouched(notes)
    assert not (run_dir / "results.json").exists()


def test_a_slots_folder_writable_by_others_is_refused_with_the_way_out(tmp_path):
    for folder_mode in (0o777, 0o1777, 0o770):  # everyone, everyone with the sticky bit, a group
        shared = tmp_path / f"shared-{folder_mode:o}"
        shared.mkdir()
        shared.chmod(folder_mode)
        with pytest.raises(UnsafeLockPath) as refused, hold_slot(shared, ["GPU-a"], 1):
            pass
        message = str(refused.value)
        assert message.startswith(f"refusing {shared}: group or others may write in it")
        assert "launch.slots_dir=" in message and "\n" not in message
        assert list(shared.iterdir()) == [] and mode(shared) == folder_mode


def test_a_symlinked_slots_folder_or_sweep_locks_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "slots").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeLockPath, match="slots: it is not a folder"), \
            hold_slot(tmp_path / "slots", ["GPU-a"], 1):
        pass
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / ".locks").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeLockPath, match=r"\.locks: it is not a folder"), \
            one_at_a_time(sweep / ".locks"):
        pass
    assert list(elsewhere.iterdir()) == []


@as_root
def test_folders_and_lock_files_of_another_user_are_refused_and_left_alone(tmp_path, monkeypatch):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, ANOTHER_USER, ANOTHER_USER)
    with pytest.raises(UnsafeLockPath) as refused, hold_slot(theirs, ["GPU-a"], 1):
        pass
    assert str(refused.value).startswith(f"refusing {theirs}: it belongs to user {ANOTHER_USER}")
    assert "launch.slots_dir=" in str(refused.value)
    assert list(theirs.iterdir()) == []

    # The default pool: someone made its folder in the temp dir before us.
    temp = tmp_path / "tmp"
    temp.mkdir()
    temp.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    planted = default_slots_dir().parent
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    os.chown(planted, ANOTHER_USER, ANOTHER_USER)
    with pytest.raises(UnsafeLockPath, match=f"refusing {planted}: it belongs to user"), \
            hold_slot(default_slots_dir(), ["GPU-a"], 1):
        pass
    assert list(planted.iterdir()) == []

    sweep = tmp_path / "sweep"
    (sweep / ".locks").mkdir(parents=True, mode=0o700)
    os.chown(sweep / ".locks", ANOTHER_USER, ANOTHER_USER)
    with pytest.raises(UnsafeLockPath, match=r"\.locks: it belongs to user"), \
            one_at_a_time(sweep / ".locks"):
        pass

    # A lock file another user planted in a run dir (theirs to flock whenever they like).
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = private_notes(run_dir / RUN_LOCK)
    lock.chmod(0o666)
    os.chown(lock, ANOTHER_USER, ANOTHER_USER)
    with pytest.raises(RunDirConflict, match=rf"refusing {lock}: it belongs to user {ANOTHER_USER}"):
        plan(run_dir, {"epochs": 1})
    assert lock.read_text() == "private notes\n" and mode(lock) == 0o666
    assert lock.stat().st_uid == ANOTHER_USER


CREATE_LOCKS = """
from pathlib import Path
from alexnet.launch.placement import default_slots_dir, hold_slot, one_at_a_time
from alexnet.resume.run_dir import plan
with hold_slot(default_slots_dir(), ["GPU-a"], 1), one_at_a_time(Path("sweep/.locks")):
    plan(Path("sweep/0"), {"epochs": 1}).release()
    plan(Path("old-run"), {"epochs": 1}).release()
"""


def test_lock_files_are_created_0600_in_folders_made_0700_whatever_the_umask(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    old_run = tmp_path / "old-run"
    old_run.mkdir()
    (old_run / RUN_LOCK).touch()
    (old_run / RUN_LOCK).chmod(0o666)  # as an earlier version left it
    subprocess.run([sys.executable, "-c", CREATE_LOCKS], cwd=tmp_path, umask=0,
                   env={**os.environ, "TMPDIR": str(temp)}, check=True, timeout=120)
    pool = temp / f"alexnet-sweeps-{os.getuid()}" / "gpu-slots"
    assert (mode(pool.parent), mode(pool), mode(pool / "GPU-a-0.lock")) == (0o700, 0o700, 0o600)
    sweep = tmp_path / "sweep"
    assert (mode(sweep / ".locks"), mode(sweep / ".locks" / "startup.lock")) == (0o700, 0o600)
    assert mode(sweep / "0" / RUN_LOCK) == 0o600
    assert mode(old_run / RUN_LOCK) == 0o600  # narrowed, being ours
    assert (pool / "GPU-a-0.lock").read_text().startswith("pid ")


def test_a_lock_file_cannot_be_taken_twice_across_processes_through_its_folder(tmp_path):
    sweep = tmp_path / "sweep"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from pathlib import Path; from alexnet.launch.placement import one_at_a_time\n"
        f"with one_at_a_time(Path({str(sweep / '.locks')!r})):\n"
        "    print('held', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert try_lock(sweep / ".locks" / "startup.lock") is None
        assert is_locked(sweep / ".locks" / "startup.lock") is True
    finally:
        holder.kill()
        holder.wait()
    with one_at_a_time(sweep / ".locks"):
        assert is_locked(sweep / ".locks" / "startup.lock") is True


WRITE_FILES = """
from pathlib import Path
from alexnet.files import append_line, write_atomic, write_text_atomic
write_text_atomic(Path("table.md"), "| a |\\n")
write_text_atomic(Path("table.md"), "| a |\\n| 1 |\\n")  # replaced: a new file, the umask's mode
write_atomic(Path("model.pt"), lambda f: f.write(b"weights"))
append_line(Path("metrics.csv"), "epoch\\n")
"""


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_written_for_people_follow_the_umask(tmp_path, umask, expected):
    subprocess.run([sys.executable, "-c", WRITE_FILES], cwd=tmp_path, umask=umask, check=True,
                   timeout=120)
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == {
        "table.md": expected, "model.pt": expected, "metrics.csv": expected}
    assert (tmp_path / "table.md").read_text() == "| a |\n| 1 |\n"


def test_a_sweeps_tables_plots_and_records_follow_the_umask_and_only_locks_are_private(
        cifar_root, tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "alexnet.train", "-m", "epochs=1", "model=alexnet_cifar",
         "device=cpu", "torch_threads=1", "progress=false", f"data.root={cifar_root}",
         "data.download=false", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, umask=0o027)
    assert result.returncode == 0, result.stderr
    modes = {str(p.relative_to(sweep)): mode(p) for p in sweep.rglob("*") if p.is_file()}
    for name in ("results.csv", "results.md", "learning_curves.png", "0/results.json",
                 "0/metrics.csv", "0/model.pt"):
        assert modes.get(name) == 0o640, (name, modes)
    assert modes[f"0/{RUN_LOCK}"] == 0o600
    others = {name: m for name, m in modes.items() if not name.endswith(".lock")}
    assert set(others.values()) == {0o640}, others


# Every file the project itself writes into a sweep dir and a run dir (Hydra's own, .hydra/ and
# the job log under other launchers, and the trackers' and Optuna's files are theirs).
SWEEP_FILES = ("results.csv", "results.md", "summary.csv", "summary.md", "effects.csv",
               "effects.md", "effects.png", "learning_curves.png", "final_scores.png",
               "confusion_superclass.png", "best_filters.png", "best_mistakes.png",
               "best_mistakes.csv", "planned_jobs.yaml", ".mlflow_parent_run")
# (checkpoint.pt and the one before it are read before they are written: a link there is a
# checkpoint that cannot be read, and the run is on record as failed, the link left alone)
RUN_FILES = ("results.json", "metrics.csv", "confusion_superclass.csv", "filters.png",
             "mistakes.png", "mistakes.csv", "model.pt", "train.log", ".hydra")  # (the last two:
# the fused launcher writes them itself)
SEARCH_FILES = ("multirun.yaml", ".optuna_study.json", "search.md", "search.csv",
                "optimization_results.yaml", "search_history.png")


def plant(folder: Path, names: tuple[str, ...], targets: Path) -> list[Path]:
    """A symbolic link at each name in `folder`, to a private file of ours (a folder for .hydra)."""
    folder.mkdir(parents=True, exist_ok=True)
    planted = []
    for name in names:
        target = targets / f"{folder.name}-{name.lstrip('.')}"
        if name == ".hydra":
            target.mkdir()
            private_notes(target / "config.yaml")
        else:
            private_notes(target)
        (folder / name).symlink_to(target)
        planted.append(target)
    return planted


def test_no_link_planted_at_a_file_we_write_is_followed(cifar_root, tmp_path):
    """A fused sweep with MLflow (every sweep-level and run-level file of ours) into a sweep dir
    with a link planted at each name: every run completes, each name is a file of its own, each
    link's target is as it was."""
    targets = tmp_path / "targets"
    targets.mkdir()
    sweep = tmp_path / "sweep"
    planted = plant(sweep, SWEEP_FILES, targets) + plant(sweep / "0", RUN_FILES, targets)
    result = subprocess.run(
        [sys.executable, "-m", "alexnet.train", "-m", "hydra/launcher=fused", "seed=0,1",
         "epochs=1", "model=alexnet_cifar", "logger=mlflow",
         f"logger.mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "progress=false",
         f"data.root={cifar_root}", "data.download=false", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    for target in planted:
        assert_untouched(target / "config.yaml" if target.is_dir() else target)
    for name in [*SWEEP_FILES, *(f"0/{n}" for n in RUN_FILES)]:
        assert not (sweep / name).is_symlink(), name


def test_a_searchs_own_files_are_never_written_through_a_planted_link(tmp_path):
    """The Optuna sweeper with any app (tests/apps/quadratic.py): its multirun.yaml, study file,
    results and pictures replace a link planted at their names."""
    targets = tmp_path / "targets"
    targets.mkdir()
    sweep = tmp_path / "sweep"
    planted = plant(sweep, SEARCH_FILES, targets)
    app = Path(__file__).parent / "apps" / "quadratic.py"
    result = subprocess.run(
        [sys.executable, str(app), "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3",
         "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=0",
         f"hydra.sweeper.storage=sqlite:///{sweep / 'optuna.db'}",
         "hydra.sweeper.study_name=q", "x=interval(-2, 2)", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    for target in planted:
        assert_untouched(target)
    assert not any((sweep / name).is_symlink() for name in SEARCH_FILES)


def test_a_sweep_dir_others_can_write_or_of_another_user_is_refused_before_anything_runs(
        cifar_root, tmp_path):
    """A sweep dir prepared by someone else (writable by all, sticky or not, holding a run dir `0`
    that is a link to a folder of ours): one `error:` line, and nothing is written through it."""
    mine = tmp_path / "mine"
    mine.mkdir()
    cases = []
    for name, mode in (("prepared", 0o777), ("sticky", 0o1777)):
        sweep = tmp_path / name
        sweep.mkdir()
        (sweep / "0").symlink_to(mine)
        sweep.chmod(mode)
        cases.append(sweep)
    if os.geteuid() == 0:  # (a folder of another user: root can make one)
        other = tmp_path / "another"
        other.mkdir()
        os.chown(other, ANOTHER_USER, ANOTHER_USER)
        cases.append(other)
    for folder in cases:
        result = subprocess.run(
            [sys.executable, "-m", "alexnet.train", "-m", "epochs=1", "model=alexnet_cifar",
             "progress=false", f"data.root={cifar_root}", "data.download=false",
             f"hydra.sweep.dir={folder}"], cwd=tmp_path, capture_output=True, text=True,
            timeout=300)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ")
        assert ("anyone may write in" in result.stderr) == (folder.name != "another")
        assert str(folder) in result.stderr and "hydra.sweep.dir=" in result.stderr
        assert list(mine.iterdir()) == [] and not (folder / "multirun.yaml").exists()
