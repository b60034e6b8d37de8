"""The SLURM launcher (hydra/launcher=slurm, via submitit), closing what submitit leaves open: it asks
`squeue` (no accounting needed), so a job that ended without a result is lost, not polled for ever,
and it refuses settings SLURM accepts that cannot work (no time to work or save, absent resources)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.resume.stop import GracefulStop, Stop, lost, refused

log = logging.getLogger(__name__)

# SLURM's ended states (squeue -t all lists them for MinJobAge); any other state may go on.
ENDED = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                   "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"})
# "SLURM may send the signal up to 60 seconds earlier than specified" (sbatch --signal).
EARLY_SIGNAL_S = 60
MIN_SAVE_S = 10  # the least signal delay that leaves a run time to reach a step's end and save
MIN_WORK_S = 60  # the least a run (and its start-up) gets before the earliest signal


def check_settings(params: dict[str, Any]) -> None:
    """Refuse what cannot work before any job is submitted (the sweep's start callback calls it)."""
    if shutil.which("sbatch") is None:
        raise refused("hydra/launcher=slurm needs SLURM's commands (sbatch, squeue), and sbatch is not on "
                      "PATH here: run it on the cluster's login node, try it locally with `sudo bash "
                      "tests/slurm/up.sh`, or use hydra/launcher=submitit_local")
    timeout_s = int(params["timeout_min"]) * 60
    delay = int(params.get("signal_delay_s") or 0)
    longest = min(timeout_s // 2, timeout_s - EARLY_SIGNAL_S - MIN_WORK_S)
    fix = (f"e.g. hydra.launcher.signal_delay_s={max(MIN_SAVE_S, min(longest, timeout_s // 4))}"
           if longest >= MIN_SAVE_S else
           f"and a time limit of {(EARLY_SIGNAL_S + MIN_WORK_S + MIN_SAVE_S) // 60 + 1} minutes or "
           "more (hydra.launcher.timeout_min)")
    if delay < MIN_SAVE_S:
        raise refused(f"hydra.launcher.signal_delay_s={delay} leaves a run no time to save its checkpoint "
                      f"before the time limit: give it at least {MIN_SAVE_S} s, {fix}")
    if delay > longest:
        earliest = max(0, timeout_s - delay - EARLY_SIGNAL_S)
        raise refused(f"hydra.launcher.signal_delay_s={delay} with timeout_min={timeout_s // 60}: SLURM may "
                      f"send that signal up to {EARLY_SIGNAL_S} s early, {earliest} s after a run starts (a "
                      "requeued run signalled while it starts is killed, unsaved). Keep the delay at most "
                      f"half the limit and {EARLY_SIGNAL_S + MIN_WORK_S} s below it, {fix}")
    _check_nodes(params, partition_nodes(params.get("partition")))


@dataclass(frozen=True)
class Node:
    """What `sinfo` says one kind of node of a partition has."""

    gres: str  # e.g. "gpu:h100:8", or "(null)"
    memory_mb: int
    cpus: int


def partition_nodes(partition: str | None) -> list[Node]:
    """The partition's nodes (None: the default partition); empty when sinfo cannot say."""
    answer = _slurm(["sinfo", "-h", "-o", "%P|%G|%m|%c"])
    nodes = []
    for line in (answer.stdout if answer and answer.returncode == 0 else "").splitlines():
        name, gres, memory, cpus = (line.split("|") + ["", "", ""])[:4]
        if (partition is None and name.endswith("*")) or name.rstrip("*") == partition:
            with contextlib.suppress(ValueError):
                nodes.append(Node(gres, int(memory.rstrip("+")), int(cpus.rstrip("+"))))
    return nodes


def _check_nodes(params: dict[str, Any], nodes: list[Node]) -> None:
    """Refuse what no node of the partition has: SLURM would refuse every job of the sweep."""
    if not nodes:
        return
    where = f"partition {params.get('partition') or '(the default)'}"
    gpus = params.get("gpus_per_task") or params.get("gpus_per_node")
    if gpus and all("gpu" not in node.gres for node in nodes):
        raise refused(f"hydra.launcher.gpus_per_task={gpus}, but {where} has no GPUs (sinfo lists no gres): "
                      "run on its CPUs with hydra.launcher.gpus_per_task=null, or pick a GPU partition "
                      "(sinfo -o '%P %G').")
    most_gb = max(node.memory_mb for node in nodes) // 1024
    if params.get("mem_gb") and params["mem_gb"] > most_gb:
        raise refused(f"hydra.launcher.mem_gb={params['mem_gb']}, but the nodes of {where} have at most "
                      f"{most_gb} GB: ask for less, e.g. hydra.launcher.mem_gb={max(1, most_gb // 2)}.")
    most_cpus = max(node.cpus for node in nodes)
    if params.get("cpus_per_task") and params["cpus_per_task"] > most_cpus:
        raise refused(f"hydra.launcher.cpus_per_task={params['cpus_per_task']}, but the nodes of {where} "
                      f"have at most {most_cpus} CPUs: e.g. hydra.launcher.cpus_per_task={most_cpus}.")


def queue_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]] | None:
    """Each job's (state, reason) per squeue (a missing job has left the queue); None if squeue is silent."""
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    done = _slurm(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(arrays), "-o", "%i|%T|%r"])
    if done is None:
        return None
    if done.returncode != 0:
        return {} if "Invalid job id" in done.stderr else None  # (SLURM forgot them all: all gone)
    states = {}
    for line in done.stdout.splitlines():
        job_id, state, reason = (line.strip().split("|") + ["", ""])[:3]
        states[job_id] = (state.split()[0] if state else "UNKNOWN", reason)
    return states


def _slurm(command: list[str]) -> subprocess.CompletedProcess | None:
    """A SLURM command's answer; None when it cannot be run or does not answer in a minute."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None


@dataclass
class Gone:
    """A job SLURM has ended (or forgotten) that left no result."""

    job_id: str
    state: str  # SLURM's last word: CANCELLED, FAILED, TIMEOUT... or "gone from the queue"


@dataclass
class Broken:
    """A job that failed outside its run (Hydra's or submitit's code), with its traceback."""

    job_id: str
    trace: str


def wait(jobs: Sequence[Any], poll_s: float, result_wait_s: float, lost_after_s: float,
         stopped: Callable[[], signal.Signals | None] = lambda: None) -> list[Any]:
    """Each job's outcome in order: its result (a JobReturn, or the run's Stop), Broken, or Gone.
    A Stop counts only once SLURM has ended the job: a preempted job is requeued and writes a new result."""
    outcomes: dict[int, Any] = {}
    ended_since: dict[int, tuple[float, str]] = {}
    held_said: set[str] = set()
    answered_at = next_poll = time.monotonic()
    states: dict[str, tuple[str, str]] | None = None
    while len(outcomes) < len(jobs):
        sig = stopped()
        if sig is not None:
            raise Stop(f"{sig.name}: stopped waiting; the jobs go on in SLURM (scancel "
                       f"{jobs[0].job_id.split('_')[0]} stops them). Rerun the same command once they have "
                       "ended to collect the table and resume what did not finish.", exit_code=128 + int(sig))
        now = time.monotonic()
        if now >= next_poll:
            next_poll = now + poll_s
            states = queue_states([job.job_id for job in jobs])
            if states is not None:
                answered_at = now
            elif now - answered_at > lost_after_s:
                raise queue_lost(jobs, now - answered_at)
        for index, job in enumerate(jobs):
            if index in outcomes:
                continue
            state, reason = (states or {}).get(job.job_id, ("gone from the queue", ""))
            over = states is not None and (state in ENDED or job.job_id not in states)
            if job.paths.result_pickle.exists():
                outcome = _result(job)
                if not isinstance(outcome, Stop) or over:
                    outcomes[index] = outcome
                continue
            if states is None:
                continue
            if state == "PENDING" and "held" in reason.lower() and job.job_id not in held_said:
                held_said.add(job.job_id)
                log.warning("SLURM job %s is held (%s): the sweep waits for it; scontrol release %s lets it "
                            "run, scancel %s ends it", job.job_id, reason, job.job_id, job.job_id)
            if not over:
                ended_since.pop(index, None)
            elif now - ended_since.setdefault(index, (now, state))[0] >= result_wait_s:
                outcomes[index] = Gone(job.job_id, ended_since[index][1])
        if len(outcomes) < len(jobs):
            states = None  # (a fresh answer at the next poll)
            time.sleep(1.0)
    return [outcomes[index] for index in range(len(jobs))]


def queue_lost(jobs: Sequence[Any], silent_s: float) -> Stop:
    """squeue has stopped answering (the controller is down or unreachable)."""
    arrays = " ".join(sorted({job.job_id.split("_")[0] for job in jobs}))
    return Stop(f"squeue has not answered for {silent_s:.0f} s (is slurmctld down?); stopped waiting. The "
                f"jobs may still run (scancel {arrays} stops them); their runs keep their records. Rerun the "
                "same command once SLURM answers and they have ended: it resumes what did not finish.")


def _result(job: Any) -> Any:
    """The job's JobReturn or Stop, or Broken; asked once its result file exists, so no sacct is needed."""
    from submitit.core.utils import FailedJobError

    try:
        return job.result()
    except FailedJobError as failed:  # (its message holds the job's traceback)
        return Broken(job.job_id, str(failed))


def run_dir_of(launcher: Any, overrides: Sequence[str], index: int, job_id: str) -> Path:
    """The run dir Hydra gives job `index` (the sweep dir and subdir, composed as the job does)."""
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(config.hydra.job):
        config.hydra.job.num = index
        config.hydra.job.id = job_id
    return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """hydra-submitit-launcher's SLURM launch, with the settings checked first and a wait that ends."""
    import submitit

    config: DictConfig = launcher.config
    params = dict(launcher.params)
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    generic = set(OmegaConf.structured(BaseQueueConf).keys())  # taken without a `slurm_` prefix
    executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(config.hydra.sweep.mode), 8))
    log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
    arguments = []
    for index, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info("\t#%d : %s", index, " ".join(filter_overrides(overrides)))
        arguments.append((list(overrides), "hydra.sweep.dir", index, f"job_id_for_{index}",
                          Singleton.get_state()))
    # From submission on, a stop signal ends the waiting at its next look, not the jobs (nor sbatch).
    with GracefulStop() as stop:
        try:
            jobs = executor.map_array(launcher, *zip(*arguments, strict=True))
        except (submitit.core.utils.FailedJobError,
                submitit.core.utils.FailedSubmissionError) as said_no:  # nothing was submitted
            raise refused(f"sbatch refused the sweep's jobs: {' '.join(str(said_no).split())}. "
                          "Fix the hydra.launcher settings it names (sinfo lists what the "
                          "partitions have).") from None
        log.info("SLURM jobs %s; logs in %s", ", ".join(job.job_id for job in jobs),
                 Path(str(jobs[0].paths.stdout)).parent.parent)
        try:
            outcomes = wait(jobs, float(config.launch.queue_poll_s),
                            float(config.launch.result_wait_s), float(config.launch.queue_lost_s),
                            stopped=stop.requested)
        except Stop as stopped:  # (a signal, squeue fallen silent, a second Ctrl-C)
            stopped.output_dir = str(sweep_dir)
            raise
    return _returns(launcher, job_overrides, initial_job_idx, jobs, outcomes, str(sweep_dir))


def _returns(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
             jobs: Sequence[Any], outcomes: list[Any], sweep_dir: str) -> list[JobReturn]:
    """The jobs' JobReturns (a job without a result is lost); a Stop once all have ended if a run stopped."""
    stopped = []
    for offset, (overrides, outcome) in enumerate(zip(job_overrides, outcomes, strict=True)):
        if isinstance(outcome, JobReturn):
            continue
        if isinstance(outcome, Stop):  # (its run is on record as stopped)
            stopped.append(outcome)
            continue
        job_id = jobs[offset].job_id
        if isinstance(outcome, Gone):
            how = (f"SLURM job {job_id} ended ({outcome.state}) before its run recorded an end: "
                   "cancelled, killed, or its node lost")
        else:
            said = [line for line in outcome.trace.splitlines() if line.strip()
                    and not line.startswith(("---", "You can check"))]
            how = (f"SLURM job {job_id} failed outside its run: {said[-1] if said else '?'} (its "
                   f"log: {jobs[offset].paths.stderr})")
        run_dir = run_dir_of(launcher, overrides, initial_job_idx + offset, job_id)
        outcomes[offset] = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
        outcomes[offset].return_value = lost(run_dir, how, initial_job_idx + offset)
    if stopped:
        raise Stop(f"{len(stopped)} job(s) stopped: " + "; ".join(s.reason for s in stopped),
                   exit_code=max(s.exit_code for s in stopped), output_dir=sweep_dir)
    return outcomes
