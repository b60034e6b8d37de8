"""The parallel launcher (hydra/launcher=parallel): each job in a spawned process of its own, so a
kill -9, OOM or segfault costs that job alone (its run, unless ended on record, `interrupted` and resumed
by the same command).
Stop signals reach every running job as SIGTERM, taken at its safe point; a second Ctrl-C kills them."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from alexnet.launch.placement import cores, jobs_at_once
from alexnet.resume.stop import GracefulStop, Stop, by_signal, lost

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
JOB_NAME = "job-"  # a job's process is named job-<its number>
# Each job's share of the cores, unless the environment sets them (as joblib does).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _how(exit_code: int | None) -> str:
    """How a job's process ended without a result, for a person."""
    if exit_code is not None and exit_code < 0:
        name = signal.Signals(-exit_code).name if -exit_code in signal.valid_signals() else "?"
        return f"its process was killed by {name} (signal {-exit_code})" + (
            ": out of memory, or kill -9" if -exit_code == signal.SIGKILL else "")
    return f"its process exited with status {exit_code} before its task returned"


@dataclass
class Unit:
    """A process's jobs (one, or a fused group) while it runs, and where their results come from."""

    indices: list[int]
    configs: list[DictConfig]  # each job's composed sweep config (its run dir: runtime.output_dir)
    process: multiprocessing.process.BaseProcess
    results: Connection  # the launcher's end of the process's pipe


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Hydra's launch: every job, their returns in job order (stops as in `run_each`)."""
    returns = dict(run_each(launcher, enumerate(job_overrides, start=initial_job_idx), len(job_overrides)))
    return [returns[index] for index in sorted(returns)]


def run_each(launcher: Any, jobs: Iterable[tuple[int, Sequence[str]]], at_most: int | None = None
             ) -> Iterator[tuple[int, JobReturn]]:
    """Read `jobs` lazily, one per free place, so a sweeper can choose the next from the results so far."""
    yield from run_units(launcher, lambda n_jobs: (compose(launcher, index, overrides, n_jobs)
                                                   for index, overrides in jobs), at_most)


def compose(launcher: Any, index: int, overrides: Sequence[str], n_jobs: int
            ) -> list[tuple[int, DictConfig | JobReturn]]:
    """The job's config (n_jobs set, to share the cores by), or a FAILED JobReturn if it won't compose."""
    log.info("\t#%d : %s", index, " ".join(o for o in overrides if not o.lstrip("+~").startswith("hydra.")))
    try:
        config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    except Exception as err:
        failed = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        failed.return_value = err
        return [(index, failed)]
    with open_dict(config):
        config.hydra.job.id = config.hydra.job.num = index
        config.hydra.launcher.n_jobs = n_jobs
        config.hydra.runtime.output_dir = str(
            Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir))
    return [(index, config)]


def run_units(launcher: Any, units: Callable[[int], Iterator[list[tuple[int, DictConfig | JobReturn]]]],
              at_most: int | None = None,
              group: Callable[[Any, list[DictConfig]], list[JobReturn]] | None = None
              ) -> Iterator[tuple[int, JobReturn]]:
    """Run each unit (a job, or a group `group` runs) in its own process as places free.
    Only once every unit has ended is a job's own stop re-raised, or a Stop raised when signalled."""
    setup_globals()
    config: DictConfig = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    n_jobs = min(jobs_at_once(config.hydra.launcher), at_most or sys.maxsize)
    log.info("Launching jobs, %d process(es) at a time (a job or a fused group each), sweep output dir : %s",
             n_jobs, sweep_dir)
    threads = str(max(1, cores() // n_jobs))
    environment = {var: threads for var in THREAD_VARIABLES if var not in os.environ}
    context = multiprocessing.get_context("spawn")
    # Start the tracker first: started with the first job, it would unblock the mask that job inherits.
    resource_tracker.ensure_running()
    running: dict[int, Unit] = {}
    stops: list[BaseException] = []
    upcoming = units(n_jobs)

    def pass_on(sig: signal.Signals) -> None:
        for unit in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(unit.process.pid, signal.SIGTERM)

    with GracefulStop(on_signal=pass_on) as stop:
        try:
            while True:
                while len(running) < n_jobs and stop.signal is None and not stops:
                    unit = next(upcoming, None)
                    if unit is None:
                        break
                    if isinstance(unit[0][1], JobReturn):  # its config could not be composed
                        yield unit[0]
                        continue
                    started = _start(launcher, context, environment, unit, group)
                    running[started.indices[0]] = started
                    if stop.signal is not None:  # (it came while the unit started: not passed on)
                        pass_on(stop.signal)
                if not running:
                    break
                ready = wait([u.results for u in running.values()]
                             + [u.process.sentinel for u in running.values()])
                for unit in [u for u in running.values()
                             if u.results in ready or u.process.sentinel in ready]:
                    del running[unit.indices[0]]
                    outcome = _outcome(launcher, unit)
                    if isinstance(outcome, BaseException):
                        stops.append(outcome)
                        if len(stops) == 1:
                            pass_on(signal.SIGTERM)
                        continue
                    yield from zip(unit.indices, outcome, strict=True)
        finally:  # (also when the sweeper stops reading: its running jobs stop at a safe point)
            try:
                if stop.twice is None:
                    pass_on(signal.SIGTERM)
                    for unit in running.values():
                        unit.process.join()
            finally:
                if stop.twice is not None:  # a second Ctrl-C, here or in the sweeper: end now
                    for process in multiprocessing.active_children():
                        if process.name.startswith(JOB_NAME):  # (one not registered yet too)
                            process.kill()
                            process.join()
                    stop.twice.output_dir = str(sweep_dir)  # (what the same command resumes)
    ours = [s for s in stops if isinstance(s, Stop)]
    if stops and not ours and stop.signal is None:
        raise stops[0]  # (another app's job ended the command its own way: as it would alone)
    if stops or stop.signal is not None:
        reason = stop.signal.name if stop.signal is not None else ours[0].reason
        code = stop.exit_code if stop.signal is not None else ours[0].exit_code
        raise Stop(f"{reason}; {len(stops)} running job(s) stopped (at a safe point, or before "
                   "they began), and no new job was started", exit_code=code, output_dir=sweep_dir)


def _start(launcher: Any, context: Any, environment: dict[str, str],
           unit: list[tuple[int, DictConfig]], group: Callable[..., Any] | None) -> Unit:
    """Start the unit's process: Hydra's run_job for one job, `group` for several."""
    import cloudpickle  # (the task function may be defined anywhere, __main__ included)

    indices, configs = [index for index, _ in unit], [config for _, config in unit]
    task = cloudpickle.dumps((launcher.hydra_context, configs, launcher.task_function,
                              group, Singleton.get_state()))
    results, their_end = context.Pipe(duplex=False)
    process = context.Process(target=_run_unit, args=(task, their_end),
                              name=f"{JOB_NAME}{'-'.join(map(str, indices))}")
    with _environment(environment), _signals_blocked():
        process.start()
    their_end.close()
    return Unit(indices, configs, process, results)


def _outcome(launcher: Any, unit: Unit) -> list[JobReturn] | BaseException:
    """Its jobs' JobReturns or the BaseException it raised; a process that sent nothing loses its jobs."""
    import cloudpickle

    try:
        kind, value = cloudpickle.loads(unit.results.recv_bytes()) if unit.results.poll() else (None, None)
    except (EOFError, OSError):  # its process ended before it could say
        kind, value = None, None
    unit.process.join()
    unit.results.close()
    if kind in ("returned", "raised"):
        return value
    returns = []
    for index, config in zip(unit.indices, unit.configs, strict=True):
        gone = lost(config.hydra.runtime.output_dir, _how(unit.process.exitcode), index)
        ret = JobReturn(overrides=list(config.hydra.overrides.task), hydra_cfg=config,
                        working_dir=os.getcwd(), status=JobStatus.COMPLETED)
        ret.return_value = gone
        before = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(config)
        try:  # (Hydra's run_job calls them in the job's process; this one's is gone)
            launcher.hydra_context.callbacks.on_job_end(config=config, job_return=ret)
        finally:
            HydraConfig.instance().cfg = before
        returns.append(ret)
    return returns


def _run_unit(task: bytes, results: Connection) -> None:
    """A unit's process: runs its job(s), sends back their JobReturns or the BaseException it ended with.
    A stop signal held before the task begins keeps it from beginning; one after it returns is moot."""
    import functools

    import cloudpickle

    held = GracefulStop()

    def not_begun() -> Stop:
        return by_signal(held.signal, "before the job began", saved=False)

    def begin(task: Callable[..., Any], *args: Any) -> Any:
        held.__exit__(None, None, None)  # (from here the task takes signals its way)
        if held.signal is not None:
            raise not_begun()
        try:
            return task(*args)
        finally:
            held.__enter__()

    with held:
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # (one that came meanwhile)
            hydra_context, configs, task_function, group, singleton_state = cloudpickle.loads(task)
            setup_globals()
            Singleton.set_state(singleton_state)
            if held.signal is not None:
                raise not_begun()
            if len(configs) > 1:
                returns = begin(group, hydra_context, configs)
            else:
                wrapped = functools.wraps(task_function)(functools.partial(begin, task_function))
                returns = [run_job(hydra_context=hydra_context, config=configs[0], task_function=wrapped,
                                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")]
            outcome = ("returned", returns)
        except BaseException as raised:  # a stop (ours, KeyboardInterrupt, SystemExit), an error
            outcome = ("raised", raised)
        try:
            message = cloudpickle.dumps(outcome)
        except Exception as unpicklable:
            message = cloudpickle.dumps(("raised", RuntimeError(
                f"the job's outcome could not be sent back: {type(unpicklable).__name__}: {unpicklable}")))
        results.send_bytes(message)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` while a job's process starts (it inherits them)."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Block stop signals while a job starts: it inherits the mask, so an early signal waits, not kills."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
