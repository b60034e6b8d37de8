"""The SLURM launcher's decisions without a cluster: squeue's and sinfo's answers (from small
stand-in scripts on PATH), the settings it refuses, and when its wait ends."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from alexnet.launch.slurm import Gone, check_settings, queue_states, wait
from alexnet.resume.stop import GracefulStop, Stop


@pytest.fixture
def commands(tmp_path, monkeypatch):
    """stand_in(name, stdout, code, stderr): a command on PATH that answers so."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")

    def stand_in(name: str, stdout: str = "", code: int = 0, stderr: str = "") -> None:
        script = folder / name
        script.write_text(f"#!/bin/sh\nprintf '%s' '{stdout}'\nprintf '%s' '{stderr}' >&2\n"
                          f"exit {code}\n")
        script.chmod(0o755)

    return stand_in


def test_squeue_answers_become_states_and_an_unknown_job_means_all_gone(commands):
    commands("squeue", "12_0|RUNNING|None\n12_1|PENDING|launch failed requeued held\n")
    assert queue_states(["12_0", "12_1", "12_2"]) == {
        "12_0": ("RUNNING", "None"), "12_1": ("PENDING", "launch failed requeued held")}
    commands("squeue", code=1, stderr="slurm_load_jobs error: Invalid job id specified")
    assert queue_states(["12_0"]) == {}
    commands("squeue", code=1, stderr="slurm_load_jobs error: Unable to contact slurm controller")
    assert queue_states(["12_0"]) is None


@pytest.mark.parametrize(("settings", "refusal"), [
    ({"timeout_min": 1, "signal_delay_s": 30}, "a time limit of 3 minutes or more"),
    ({"timeout_min": 3, "signal_delay_s": 90}, "e.g. hydra.launcher.signal_delay_s=45"),
    ({"timeout_min": 60, "signal_delay_s": 5}, "no time to save its checkpoint"),
    ({"timeout_min": 60, "signal_delay_s": 120, "gpus_per_task": 1}, "has no GPUs"),
    ({"timeout_min": 60, "signal_delay_s": 120, "mem_gb": 32}, "at most 23 GB"),
    ({"timeout_min": 60, "signal_delay_s": 120, "cpus_per_task": 8}, "at most 2 CPUs"),
])
def test_settings_no_node_or_time_limit_can_meet_are_refused(commands, settings, refusal):
    commands("sbatch")
    commands("sinfo", "debug*|(null)|24105|2\ngpu|gpu:h100:8|2000000|64\n")
    with pytest.raises(Stop, match=refusal):
        check_settings(settings)
    check_settings({"timeout_min": 3, "signal_delay_s": 60, "mem_gb": 4, "cpus_per_task": 1})
    check_settings({"timeout_min": 60, "signal_delay_s": 120, "gpus_per_task": 1,
                    "partition": "gpu"})


def test_without_sbatch_the_slurm_launcher_says_where_to_run(commands, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # (this machine may have a real one)
    with pytest.raises(Stop, match="sbatch is not on PATH here"):
        check_settings({"timeout_min": 60, "signal_delay_s": 120})


def job(folder: Path, job_id: str, outcome: object = None) -> SimpleNamespace:
    """A submitit job as the wait sees it: an id and a result file (written when `outcome`)."""
    result = folder / f"{job_id}_result.pkl"
    if outcome is not None:
        result.write_text("")
    return SimpleNamespace(job_id=job_id, paths=SimpleNamespace(result_pickle=result),
                           result=lambda: outcome)


def test_the_wait_ends_for_a_job_that_left_no_result_and_for_a_silent_queue(commands, tmp_path):
    commands("squeue", "7_0|CANCELLED|None\n7_1|COMPLETED|None\n")
    done = job(tmp_path, "7_1", "a JobReturn")
    assert wait([job(tmp_path, "7_0"), done], 0.1, 0.0, 60) == [
        Gone("7_0", "CANCELLED"), "a JobReturn"]
    commands("squeue", code=1, stderr="Unable to contact slurm controller")
    with pytest.raises(Stop, match="squeue has not answered for"):
        wait([job(tmp_path, "8_0")], 0.1, 0.0, 0.5)


def test_a_stopped_run_whose_job_went_back_to_the_queue_is_waited_for(commands, tmp_path):
    """SIGTERM then a requeue (a preemption with PreemptMode=REQUEUE) is not the end of the run:
    its result counts only once SLURM says the job has ended (here at squeue's third answer)."""
    stopped = job(tmp_path, "9_0", Stop("SIGTERM in epoch 1", exit_code=143))
    commands("squeue")
    calls = tmp_path / "calls"
    (tmp_path / "bin" / "squeue").write_text(
        f"#!/bin/sh\necho x >> {calls}\n"
        f"if [ $(wc -l < {calls}) -lt 3 ]; then echo '9_0|PENDING|BeginTime'; "
        "else echo '9_0|CANCELLED|None'; fi\n")
    (outcome,) = wait([stopped], 0.1, 0.0, 60)
    assert isinstance(outcome, Stop) and (outcome.reason, outcome.exit_code) == (
        "SIGTERM in epoch 1", 143)
    assert len(calls.read_text().splitlines()) == 3


def test_a_signal_while_the_sweep_waits_stops_the_waiting_and_names_the_scancel(commands,
                                                                               tmp_path):
    """A real SIGTERM to this process while it waits on a running job: the wait ends at its next
    look with the command that would stop the jobs, which go on in SLURM."""
    commands("squeue", "5_0|RUNNING|None\n")
    with GracefulStop() as stop, pytest.raises(Stop) as ended:
        os.kill(os.getpid(), signal.SIGTERM)
        wait([job(tmp_path, "5_0")], 0.1, 0.0, 60, stopped=stop.requested)
    assert ended.value.exit_code == 128 + signal.SIGTERM
    assert "SIGTERM: stopped waiting; the jobs go on in SLURM (scancel 5 stops them)" in str(
        ended.value)
