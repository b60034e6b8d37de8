"""Following a run and a sweep: the time-left estimate from known epoch times, the epoch log line
of real runs through the CLI (run i of n, epoch j of m, time left), and the bars on a real
terminal (a pseudo-terminal, read back through a terminal emulator, pyte)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pandas as pd
import pyte
from omegaconf import OmegaConf

from alexnet.launch.placement import take_line
from alexnet.run.progress import GAP, Position, TimeLeft, bar, duration, measured, time_left, told, where
from alexnet.run.record import RunRecord
from helpers import fit, tiny_config, train

TINY = ["model=alexnet_cifar", "device=cpu", "torch_threads=1", "data.download=false"]


def test_the_estimate_from_known_epoch_times():
    seconds = [10.0, 12.0, 14.0]  # a mean of 12 s an epoch
    alone = Position()
    assert time_left(seconds, 2, alone) == TimeLeft(24.0, 24.0)
    # run 2 of 4 one at a time: its 2 epochs left, then runs 3 and 4 plan 5 epochs each
    sequential = Position(run=2, runs=4, at_once=1, later_epochs=(5, 5))
    assert time_left(seconds, 2, sequential) == TimeLeft(24.0, 24.0 + 10 * 12.0)
    # two at a time: the work left is shared by two places ...
    parallel = Position(run=2, runs=4, at_once=2, later_epochs=(5, 5))
    assert time_left(seconds, 2, parallel) == TimeLeft(24.0, (24.0 + 120.0) / 2)
    # ... but the sweep never ends before this run does
    last = Position(run=4, runs=4, at_once=2, later_epochs=())
    assert time_left(seconds, 2, last) == TimeLeft(24.0, 24.0)
    unknown = Position(run=3, runs=None, at_once=1)
    assert time_left(seconds, 2, unknown) == TimeLeft(24.0, None)
    assert time_left([], 5, sequential) is None  # nothing measured yet: no guess


def test_epoch_times_come_from_the_rows_that_have_them():
    rows = [{"epoch_time_s": 10.0}, {"epoch": 2}, {"epoch_time_s": float("nan")}, {"epoch_time_s": 14}]
    assert measured(rows) == [10.0, 14.0]


def test_the_words_say_where_a_run_is_and_that_the_time_is_an_estimate():
    position = Position(run=2, runs=4, at_once=1, later_epochs=(5, 5))
    assert where(position, 3, 5) == "run 2 of 4, epoch 3 of 5"
    assert told(TimeLeft(24.0, 144.0), position) == "time left (estimate): run 24 s, sweep 2 min"
    assert told(TimeLeft(24.0, 24.0), Position()) == "time left (estimate): 24 s"
    assert told(TimeLeft(24.0, None), Position(3, None)) == "time left (estimate): run 24 s, sweep unknown"
    assert where(Position(3, None), 1, 2) == "run 3, epoch 1 of 2"
    assert [duration(s) for s in (45, 720, 7500)] == ["45 s", "12 min", "2 h 05 min"]


EPOCH_LINE = re.compile(r"(run \d+(?: of \d+)?, epoch \d+ of \d+)  train_loss .* img/s  (time left.*)$")


def epoch_lines(text: str) -> list[tuple[str, str]]:
    return [m.groups() for line in text.splitlines() if (m := EPOCH_LINE.search(line))]


def told_for(run_dir: Path, epoch: int, epochs: int, position: Position) -> str:
    """What the rule says after `epoch`, from the epoch times the run recorded (metrics.csv)."""
    seconds = pd.read_csv(run_dir / "metrics.csv")["epoch_time_s"].tolist()[:epoch]
    return told(time_left(seconds, epochs - epoch, position), position)


def test_a_sweeps_epoch_lines_say_run_epoch_and_time_left(cifar_root, tmp_path):
    """Two runs one after the other, the first planning 2 epochs and the second 1, progress bars
    off: each epoch's line in train.log (and on the console) says where the sweep is and the time
    left by the rule, from the epoch times the run recorded."""
    out = tmp_path / "sweep"
    result = train("-m", *TINY, f"data.root={cifar_root}", "progress=false", "epochs=2,1",
                   f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = Position(1, 2, 1, (1,))
    assert epoch_lines((out / "0" / "train.log").read_text()) == [
        ("run 1 of 2, epoch 1 of 2", told_for(out / "0", 1, 2, first)),
        ("run 1 of 2, epoch 2 of 2", told_for(out / "0", 2, 2, first))]
    assert epoch_lines((out / "1" / "train.log").read_text()) == [
        ("run 2 of 2, epoch 1 of 1", "time left (estimate): run 0 s, sweep 0 s")]
    console = epoch_lines(result.stdout + result.stderr)
    assert [w for w, _ in console] == ["run 1 of 2, epoch 1 of 2", "run 1 of 2, epoch 2 of 2",
                                      "run 2 of 2, epoch 1 of 1"]
    # run 1's first line: 1 epoch of its own and 1 of run 2 left, both at its one measured epoch
    seconds = pd.read_csv(out / "0" / "metrics.csv")["epoch_time_s"][0]
    assert console[0][1] == f"time left (estimate): run {duration(seconds)}, sweep {duration(2 * seconds)}"


def test_a_run_on_its_own_is_run_1_of_1(cifar_root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="alexnet.fit")
    cfg = tiny_config(cifar_root, "epochs=1")
    fit(cfg, RunRecord(tmp_path, OmegaConf.to_container(cfg, resolve=True), []))
    assert epoch_lines(caplog.text) == [("run 1 of 1, epoch 1 of 1", "time left (estimate): 0 s")]


def test_a_search_counts_its_trials(cifar_root, tmp_path):
    out = tmp_path / "search"
    result = train("-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random",
                   "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=2",
                   "optimizer.lr=tag(log, interval(1e-3, 0.1))", *TINY, f"data.root={cifar_root}",
                   "progress=false", "epochs=1", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(w for w, _ in epoch_lines(result.stdout)) == ["run 1 of 2, epoch 1 of 1",
                                                                "run 2 of 2, epoch 1 of 1"]


@contextlib.contextmanager
def terminal(rows: int, cols: int):
    """A pseudo-terminal of rows x cols: (the file a program writes to, a screen that shows what
    it wrote, a function that reads what is waiting into the screen)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)
    written = bytearray()

    def read(wait_s: float = 0.0) -> bytes:
        chunk = b""
        while select.select([master], [], [], wait_s)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # (the last writer has closed it)
                break
            if not chunk:
                break
            written.extend(chunk)
            stream.feed(chunk)
            wait_s = 0.0
        return bytes(written)

    with open(slave, "w", buffering=1, closefd=True) as file:
        try:
            yield file, screen, read
        finally:
            os.close(master)


def test_a_bar_alone_shows_run_epoch_and_time_left_and_hides_off_a_terminal(tmp_path):
    with terminal(10, 120) as (file, screen, read):
        for _ in bar(range(3), "run 2/4 epoch 3/5 train", postfix="left ~24 s, sweep ~2 min",
                     file=file):
            read()
            shown = screen.display[0]
        read()
    assert shown.startswith("run 2/4 epoch 3/5 train:") and "left ~24 s, sweep ~2 min]" in shown
    with open(tmp_path / "log", "w") as file:
        assert list(bar(range(3), "train", file=file)) == [0, 1, 2]
    assert (tmp_path / "log").read_text() == ""  # a file, a SLURM log: no bar


def test_bars_on_their_own_lines_keep_log_lines_whole():
    """Two jobs' bars drawn on lines 1 and 2 while long log lines (wrapping over two rows) are
    written in between, each write on its own as separate processes' writes are: every log line
    is whole on the screen, and the bars below it on rows of their own."""
    log_line = "[2026-01-01 10:00:00,000][alexnet.fit][INFO] - run {} of 2, epoch {} of 3  " + "x" * 40
    with terminal(24, 80) as (file, screen, read):
        first = bar(range(6), "run 1/2 epoch 1/3 train", line=1, file=file)
        second = bar(range(6), "run 2/2 epoch 1/3 train", line=2, file=file)
        logged = []
        for step, _ in enumerate(zip(first, second, strict=True)):
            if step % 2:
                logged.append(log_line.format(step % 2 + 1, step))
                file.write(logged[-1] + "\n")  # the job's logging, or the launcher's
                first.refresh()  # (each bar's next draw)
                second.refresh()
            read()
            rows = [row.rstrip() for row in screen.display]
            text = "".join(row.ljust(80) for row in rows[:screen.cursor.y])  # (rows above the cursor)
            assert all(line in text for line in logged)  # whole, in the order written
            bars = [row for row in rows[screen.cursor.y:] if row]
            assert len(bars) == 2 and bars[0].startswith("run 1/2") and bars[1].startswith("run 2/2")
            assert rows[screen.cursor.y + GAP + 1].startswith("run 1/2")
        first.close()
        second.close()
        read()
        assert not any(row.strip() for row in screen.display[screen.cursor.y:])  # gone when done


def test_each_parallel_job_takes_the_first_free_line_and_a_killed_one_frees_it(tmp_path):
    folder = tmp_path / ".locks"
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom pathlib import Path\n"
                               "from alexnet.launch.placement import take_line\n"
                               f"handle, line = take_line(Path({str(folder)!r})); print(line, flush=True)\n"
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "1"
        handle, line = take_line(folder)
        assert line == 2
        handle.close()
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    handle, line = take_line(folder)
    assert line == 1
    handle.close()


def test_a_parallel_sweep_on_a_terminal_shows_each_running_job_on_a_line_of_its_own(
        slower_cifar_root, tmp_path):
    """hydra/launcher=parallel, two jobs at once, progress bars on, on a real (pseudo-)terminal:
    while both train, each has one bar row of its own saying run, epoch and (after its first epoch)
    time left; no row ever mixes a bar and a log line; no bar is left when the sweep ends."""
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "alexnet.train", "-m", "hydra/launcher=parallel",
               "hydra.launcher.n_jobs=2", *TINY, f"data.root={slower_cifar_root}",
               "data.train_subset=256", "optimizer=sgd,adam", "epochs=2", "progress=true",
               f"hydra.sweep.dir={out}"]
    bar_row = re.compile(r"^run [12]/2 epoch [12]/2 (train|test):")
    seen_both = seen_time_left = False
    with terminal(60, 250) as (file, screen, read):
        process = subprocess.Popen(command, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=file,
                                   stderr=file, start_new_session=True)
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            read(0.2)
            rows = [row.rstrip() for row in screen.display]
            bars = [row for row in rows if bar_row.match(row)]
            for row in rows:
                assert not (bar_row.search(row) and "][" in row), row  # a bar row is a bar only
                assert len(re.findall(r"run [12]/2 epoch", row)) <= 1, row
            runs = {row[:7] for row in bars}
            seen_both |= runs == {"run 1/2", "run 2/2"}
            seen_time_left |= any("left ~" in row for row in bars)
        output = read(0.5).decode(errors="replace")
    assert process.wait(timeout=60) == 0, output
    assert seen_both and seen_time_left, output
    assert not any(bar_row.match(row) for row in screen.display), "\n".join(screen.display)
    assert [w for w, _ in epoch_lines(re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\r", "", output))].count(
        "run 1 of 2, epoch 2 of 2") == 1
