"""The parallel launcher's work (hydra/launcher=parallel): jobs in worker processes (loky's, as
joblib's launcher), a new job as soon as a worker is free, and stops that end every job the way
the README promises.

joblib answers a KeyboardInterrupt in the parent, an exception from one job, or a worker killed by
a signal by terminating every worker: running jobs would die mid-epoch, unsaved; and it takes the
jobs as one list. So the jobs go to loky's executor directly, one per free worker:
- Each worker starts by ignoring SIGINT and SIGTERM outside a job (a job's own handler takes
  them), so no signal kills an idle worker. A signal while the workers start kills them before
  any job has begun: the sweep then stops with nothing lost.
- The launcher takes the first SIGINT/SIGTERM itself and writes the sweep's stop request
  (alexnet/resume/stop.py); a job that stops the sweep (a signal, a full disk, a run dir of another
  run) writes it too and returns instead of raising. Every running job sees the request at its
  next safe point, saves its checkpoint and ends `interrupted`; jobs not started yet do not start.
  A Ctrl-C also reaches the running jobs directly, whose own handlers stop them the same way.
- Then the launcher raises SweepStopped: the table is written and the command exits with 128 +
  the signal (or 1). A second Ctrl-C stops everything at once.
- `run_each` takes the jobs lazily and hands back each return as its job ends, for a sweeper that
  picks the next job from the results so far (the Optuna sweeper: no batch barrier)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.types import HydraContext, TaskFunction
from joblib import effective_n_jobs
from joblib.externals.loky import get_reusable_executor
from omegaconf import DictConfig

from alexnet.launch.placement import cores
from alexnet.resume.stop import GracefulStop, Stopped, SweepStopped, request_sweep_stop, sweep_stop_request

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
IDLE_WORKER_S = 300  # an idle worker quits after this long (joblib's loky backend's value)
# The numeric libraries' thread counts, set for each worker to its share of the cores unless the
# environment sets them (as joblib does).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _started() -> None:
    """Each worker's start: from now on it ignores SIGINT and SIGTERM outside a job (a job's own
    handler takes them), so no signal kills it idle and breaks the pool; and it loads what every
    job loads before it takes one."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    import alexnet.train  # noqa: F401 - torch, hydra, the package


def run_in_worker(index: int, overrides: Sequence[str], hydra_context: HydraContext,
                  config: DictConfig, task_function: TaskFunction,
                  singleton_state: dict[Any, Any]) -> JobReturn | Stopped | None:
    """One job in a worker: not started (None) once the sweep is stopping."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

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
    """Hydra's launch: every job, their returns in order (SweepStopped as in `run_each`)."""
    returns = dict(run_each(launcher, enumerate(job_overrides, start=initial_job_idx)))
    return [returns[index] for index in sorted(returns)]


def run_each(launcher: Any, jobs: Iterable[tuple[int, Sequence[str]]], at_most: int | None = None
             ) -> Iterator[tuple[int, JobReturn]]:
    """Each (job number, overrides) of `jobs` in a worker as soon as one is free, yielding
    (job number, its JobReturn) as each ends. `jobs` is read lazily, one job per free worker, after
    the returns before it were handed on: the Optuna sweeper asks its study for the next trial
    only when a worker is free, knowing every trial that has ended (no batch barrier). `at_most`
    caps the workers below the launcher's n_jobs.

    Once every job has ended: SweepStopped if the sweep was stopped (a signal, or a job that stopped
    it), or if the pool of workers broke; a job's own error (outside its run) stops the others at
    their safe point and is raised then."""
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    n_jobs = min(effective_n_jobs(launcher.joblib.get("n_jobs")), at_most or sys.maxsize)
    log.info("Launching jobs, %d at a time in worker processes, sweep output dir : %s", n_jobs,
             sweep_dir)
    singleton_state = Singleton.get_state()

    def tell_jobs(sig: signal.Signals) -> None:
        request_sweep_stop(sweep_dir, sig.name, 128 + int(sig))

    threads = str(max(1, cores() // n_jobs))  # as joblib: each worker's share of the cores
    executor = get_reusable_executor(
        max_workers=n_jobs, timeout=IDLE_WORKER_S, initializer=_started,
        env={var: threads for var in THREAD_VARIABLES if var not in os.environ})
    pending: dict[Future, int] = {}
    upcoming = iter(jobs)

    def submit_next() -> None:
        job = None if sweep_stop_request(sweep_dir) else next(upcoming, None)
        if job is not None:
            index, overrides = job
            log.info("\t#%d : %s", index, " ".join(filter_overrides(overrides)))
            pending[executor.submit(run_in_worker, index, overrides, launcher.hydra_context,
                                    config, launcher.task_function, singleton_state)] = index

    stopped: list[Stopped] = []
    failed: Exception | None = None
    broken = None
    with GracefulStop(on_signal=tell_jobs) as stop:
        try:
            for _ in range(n_jobs):
                submit_next()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                ended = []
                for future in done:
                    index = pending.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        raise
                    except Exception as err:  # the job failed outside its run (Hydra could not
                        # compose its config...): the others stop at their safe point, then it
                        # is raised
                        request_sweep_stop(sweep_dir, f"job #{index} failed: {err!r}", 1)
                        failed = failed or err
                        continue
                    if isinstance(outcome, Stopped):
                        stopped.append(outcome)
                    elif outcome is not None:
                        ended.append((index, outcome))
                yield from ended  # (every return told before the next job is taken)
                for _ in done:
                    submit_next()
        except BrokenProcessPool as err:  # a worker died: a Ctrl-C while the workers started
            broken = err  # (no job had begun), or killed by hand, out of memory
        except KeyboardInterrupt:  # a second Ctrl-C: stop everything at once
            executor.shutdown(wait=False, kill_workers=True)
            raise
        except BaseException as err:  # the sweeper's own error (reading `jobs`, or it stopped
            # reading): the running jobs stop at their safe point first
            request_sweep_stop(sweep_dir, f"the sweeper stopped: {err!r}", 1)
            wait(pending)
            raise
    if failed is not None:
        raise failed
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
    if request is not None:
        raise SweepStopped(f"{request['reason']}. {len(stopped)} job(s) stopped (interrupted); "
                           "the jobs not started then were not started. Rerun the same command "
                           "to resume.", int(request["exit_code"]), str(sweep_dir))
