"""The parallel launcher's work (hydra/launcher=parallel, a joblib launcher): jobs in worker
processes, n at a time, and stops that end every job the way the README promises.

joblib answers a KeyboardInterrupt in the parent, an exception from one job, or a worker killed by
a signal by terminating every worker: running jobs would die mid-epoch, unsaved. So here:
- Each worker's first task makes it ignore SIGINT and SIGTERM outside a job (a job's own handler
  takes them), so no signal kills an idle worker. A signal while the workers start kills them
  before any job has begun: the sweep then stops with nothing lost.
- The launcher takes the first SIGINT/SIGTERM itself and writes the sweep's stop request
  (alexnet/resume/stop.py); a job that stops the sweep (a signal, a full disk, a run dir of another
  run) writes it too and returns instead of raising. Every running job sees the request at its
  next safe point, saves its checkpoint and ends `interrupted`; jobs not started yet do not start.
  A Ctrl-C also reaches the running jobs directly, whose own handlers stop them the same way.
- Then the launcher raises SweepStopped: the table is written and the command exits with 128 +
  the signal (or 1). A second Ctrl-C stops everything at once."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.types import HydraContext, TaskFunction
from joblib import Parallel, delayed, effective_n_jobs
from omegaconf import DictConfig

from alexnet.resume.stop import GracefulStop, Stopped, SweepStopped, request_sweep_stop, sweep_stop_request

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _started() -> None:
    """A worker's first task: from now on it ignores SIGINT and SIGTERM outside a job (a job's own
    handler takes them), so no signal kills it idle and breaks the pool; and it loads what every
    job loads (so the first jobs start together; and loky, with psutil installed, replaces a
    worker whose memory grew by 300 MB since its first task)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    import alexnet.train  # noqa: F401 - torch, hydra, the package


def run_in_worker(index: int, overrides: Sequence[str], hydra_context: HydraContext,
                  config: DictConfig, task_function: TaskFunction,
                  singleton_state: dict[Any, Any], launcher_pid: int) -> JobReturn | Stopped | None:
    """One job in a joblib worker: not started (None) once the sweep is stopping."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    if os.getpid() != launcher_pid:  # (joblib runs n_jobs=1 in the launcher itself)
        for sig in STOP_SIGNALS:  # outside its run, a job ignores them; inside, its handler acts
            signal.signal(sig, signal.SIG_IGN)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    if sweep_stop_request(sweep_dir) is not None:
        return None
    try:
        return execute_job(index, overrides, hydra_context, config, task_function, singleton_state)
    except SweepStopped as stopped:
        request_sweep_stop(sweep_dir, str(stopped), stopped.exit_code)
        return Stopped(str(stopped), stopped.exit_code)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> list[JobReturn]:
    """hydra-joblib-launcher's launch, with the stops above (`launcher` is its JoblibLauncher)."""
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg

    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    joblib_cfg = launcher.joblib
    joblib_cfg["backend"] = "loky"  # as the plugin: the threading backend cannot run Hydra jobs
    if joblib_cfg.get("batch_size") == "auto":  # one job a task: the quick warm-up below must not
        joblib_cfg["batch_size"] = 1  # make joblib bundle long training jobs together
    process_joblib_cfg(joblib_cfg)
    log.info("Joblib.Parallel(%s) is launching %d jobs",
             ",".join(f"{k}={v}" for k, v in joblib_cfg.items()), len(job_overrides))
    log.info("Launching jobs, sweep output dir : %s", sweep_dir)
    for index, overrides in enumerate(job_overrides):
        log.info("\t#%d : %s", index, " ".join(filter_overrides(overrides)))
    singleton_state = Singleton.get_state()

    def tell_jobs(sig: signal.Signals) -> None:
        request_sweep_stop(sweep_dir, sig.name, 128 + int(sig))

    broken = None
    with Parallel(**joblib_cfg) as parallel, GracefulStop(on_signal=tell_jobs) as stop:
        try:  # a task a worker first (loky starts every worker at the first task), then the jobs
            parallel(delayed(_started)() for _ in range(effective_n_jobs(parallel.n_jobs)))
            outcomes = parallel(
                delayed(run_in_worker)(initial_job_idx + index, overrides, launcher.hydra_context,
                                       config, launcher.task_function, singleton_state,
                                       os.getpid())
                for index, overrides in enumerate(job_overrides))
        except BrokenProcessPool as err:  # a worker died: a Ctrl-C while the workers started
            broken, outcomes = err, []  # (no job had begun), or killed by hand, out of memory
    stopped = [outcome for outcome in outcomes if isinstance(outcome, Stopped)]
    request = sweep_stop_request(sweep_dir)
    if stop.signal is not None:
        request = request or {"reason": stop.signal.name, "exit_code": 128 + int(stop.signal)}
    elif stopped:
        request = request or {"reason": stopped[0].message, "exit_code": stopped[0].exit_code}
    if broken is not None:
        raise SweepStopped(
            f"{(request or {}).get('reason', 'a worker died')}; the pool of workers broke "
            f"({type(broken).__name__}: {broken}): any run it was training is `stale` and "
            "resumes from its last checkpoint. Rerun the same command.",
            int((request or {}).get("exit_code", 1)), str(sweep_dir))
    if request is None:
        return outcomes
    skipped = sum(outcome is None for outcome in outcomes)
    raise SweepStopped(f"{request['reason']}. {len(stopped)} job(s) stopped (interrupted), "
                       f"{skipped} not started. Rerun the same command to resume.",
                       int(request["exit_code"]), str(sweep_dir))
