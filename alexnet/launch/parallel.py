"""The parallel launcher's work (hydra/launcher=parallel): each job in a process of its own, a new
one as soon as a place is free, and stops that reach every running job at its safe point.

One process per job (or per fused group, hydra/launcher=fused), as Ray Tune runs a trial: a job
killed by the OOM killer, `kill -9` or a segfault costs that job alone, its siblings train on, and
it comes back lost (alexnet/resume/stop.py: its run `interrupted`, the same command resumes it).
Each job's process is a fresh interpreter (spawn: no threads, CUDA context or memory of
another job), its task sent with cloudpickle (so the task function may live anywhere, `__main__`
included) and its JobReturn sent back over a pipe. Its numeric libraries get their share of the
cores (OMP_NUM_THREADS and friends, as joblib sets them) unless the environment sets them.

Stopping: the first SIGINT, SIGTERM or SIGHUP to the launcher is passed on to the running jobs as
SIGTERM (a Ctrl-C reaches every process of the terminal's group by itself), which an app's runs take
at their next safe point; no new job starts. A job that ends by raising a BaseException (our runs'
`Stop`, a KeyboardInterrupt) stops its siblings the same way, and the launcher raises it once every
job has ended. A second Ctrl-C kills the jobs at once, started ones not yet registered included.
A job's process starts with the stop signals blocked and holds one that comes before its task
begins (while it imports, or Hydra prepares its dir): that task then does not begin, instead of
being killed half-way through an import; one that reached the launcher while the job started is
passed on to it once it is registered. From its first line the task takes signals its own way
(ours: at the run's safe points, alexnet/train.py)."""

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

from alexnet.launch.placement import cores, slots_for
from alexnet.resume.stop import GracefulStop, Stop, by_signal, lost

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
JOB_NAME = "job-"  # a job's process is named job-<its number>
# The numeric libraries' thread counts, set for each job to its share of the cores unless the
# environment sets them (as joblib does for its workers).
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


def jobs_at_once(n_jobs: int | None, jobs_per_gpu: int = 1, at_most: int | None = None) -> int:
    """The launcher's n_jobs: null = one per GPU slot (GPUs x jobs_per_gpu, or 2 without a GPU);
    negative as joblib reads it (cores + 1 + n_jobs: -1 = one per core); capped at `at_most`."""
    count = slots_for(jobs_per_gpu) if n_jobs is None else int(n_jobs)
    if count < 0:
        count = max(1, cores() + 1 + count)
    return max(1, min(count, at_most or sys.maxsize))


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> list[JobReturn]:
    """Hydra's launch: every job, their returns in job order (stops as in `run_each`)."""
    returns = dict(run_each(launcher, enumerate(job_overrides, start=initial_job_idx)))
    return [returns[index] for index in sorted(returns)]


def run_each(launcher: Any, jobs: Iterable[tuple[int, Sequence[str]]], at_most: int | None = None
             ) -> Iterator[tuple[int, JobReturn]]:
    """Each (job number, overrides) of `jobs` in a process of its own as soon as a place is free,
    yielding (job number, its JobReturn) as each ends. `jobs` is read lazily, one job per free
    place, after the returns before it were handed on: a sweeper can choose the next job from the
    results so far (no batch barrier). `at_most` caps the places below the launcher's n_jobs."""
    def units(n_jobs: int) -> Iterator[list[tuple[int, DictConfig | JobReturn]]]:
        for index, overrides in jobs:
            yield compose(launcher, index, overrides, n_jobs)

    yield from run_units(launcher, units, at_most)


def compose(launcher: Any, index: int, overrides: Sequence[str], n_jobs: int
            ) -> list[tuple[int, DictConfig | JobReturn]]:
    """The job's config (its hydra.launcher.n_jobs: the count in use, for the job to share the
    cores by), or a FAILED JobReturn when it cannot be composed (as Hydra's launchers say it)."""
    log.info("\t#%d : %s", index, " ".join(o for o in overrides
                                            if not o.lstrip("+~").startswith("hydra.")))
    try:
        config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config,
                                                                        list(overrides))
    except Exception as err:
        failed = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        failed.return_value = err
        return [(index, failed)]
    with open_dict(config):
        config.hydra.job.id = index
        config.hydra.job.num = index
        config.hydra.launcher.n_jobs = n_jobs
        config.hydra.runtime.output_dir = str(
            Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir))
    return [(index, config)]


def run_units(launcher: Any,
              units: Callable[[int], Iterator[list[tuple[int, DictConfig | JobReturn]]]],
              at_most: int | None = None,
              group: Callable[[Any, list[DictConfig]], list[JobReturn]] | None = None
              ) -> Iterator[tuple[int, JobReturn]]:
    """Each unit (a job, or a group of them that `group` runs together in one process) that
    units(n_jobs) yields, in a process of its own as soon as a place is free; (job number,
    JobReturn) as each ends. Once every unit has ended: a job's own stop (a BaseException it
    raised) is raised, or a Stop when the launcher was signalled."""
    setup_globals()
    config: DictConfig = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    n_jobs = jobs_at_once(launcher.n_jobs, launcher.jobs_per_gpu, at_most)
    log.info("Launching jobs, %d at a time, each in its own process, sweep output dir : %s",
             n_jobs, sweep_dir)
    threads = str(max(1, cores() // n_jobs))
    environment = {var: threads for var in THREAD_VARIABLES if var not in os.environ}
    context = multiprocessing.get_context("spawn")
    # (spawn starts multiprocessing's resource tracker with the first process, and that unblocks
    # SIGINT and SIGTERM here afterwards: start it first, or the first job inherits no mask)
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
        first = ours[0] if ours else None
        reason = stop.signal.name if stop.signal is not None else first.reason
        code = stop.exit_code if stop.signal is not None else first.exit_code
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
    """What the ended unit handed back: its jobs' JobReturns, or the BaseException it raised; for
    a process that handed back nothing, each job is lost (its run interrupted), said to the
    job-end callbacks."""
    import cloudpickle

    try:
        kind, value = cloudpickle.loads(unit.results.recv_bytes()) if unit.results.poll() \
            else (None, None)
    except (EOFError, OSError):  # its process ended before it could say
        kind, value = None, None
    unit.process.join()
    unit.results.close()
    if kind in ("returned", "raised"):
        return value
    returns = []
    for index, config in zip(unit.indices, unit.configs, strict=True):
        gone = lost(config.hydra.runtime.output_dir, _how(unit.process.exitcode))
        log.error("job #%d lost: %s", index, gone)
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
    """A unit's process: one job run as Hydra's own launchers run it, or a fused group trained
    together (alexnet/launch/fused.py); sends back their JobReturns, or the BaseException it ended
    with. A stop signal that comes before the task itself begins (while this process imports, or
    Hydra prepares the job's dir) is held, and the task does not begin; one that comes once the
    task has returned changes nothing (its outcome goes back whole)."""
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
            hydra_context, configs, task_function, group, singleton_state = \
                cloudpickle.loads(task)
            setup_globals()
            Singleton.set_state(singleton_state)
            if held.signal is not None:
                raise not_begun()
            if len(configs) > 1:
                returns = begin(group, hydra_context, configs)
            else:
                returns = [run_job(hydra_context=hydra_context, config=configs[0],
                                   task_function=functools.wraps(task_function)(
                                       functools.partial(begin, task_function)),
                                   job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir")]
            outcome = ("returned", returns)
        except BaseException as raised:  # a stop (ours, KeyboardInterrupt, SystemExit), an error
            outcome = ("raised", raised)
        try:
            message = cloudpickle.dumps(outcome)
        except Exception as unpicklable:
            message = cloudpickle.dumps(("raised", RuntimeError(
                f"the job's outcome could not be sent back: {type(unpicklable).__name__}: "
                f"{unpicklable}")))
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
    """Block the stop signals while a job's process starts: it inherits the mask, and a signal
    that comes meanwhile waits there (and here) instead of being lost or killing an import."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
