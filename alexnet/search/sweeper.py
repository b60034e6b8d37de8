"""The Optuna sweeper (hydra/sweeper=optuna): ask, launch and tell trials until `n_trials` finish.
Beyond Hydra's plugin: pruning on every launcher (via the study's storage), no batch barrier with a
streaming launcher, and resume of a stored study (trial N is job N; a changed search is refused)."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf

from alexnet.files import write_text_atomic
from alexnet.launch.placement import jobs_at_once
from alexnet.results.planned import MULTIRUN_FILE
from alexnet.resume.stop import JobLost, Stop
from alexnet.search import trial as trials
from alexnet.search.config import missing_packages, reseeded
from alexnet.search.space import SettingError, Space, parse_space, refuse
from alexnet.search.study import command_line, one_start, open_storage, storage_text
from alexnet.search.summary import write_results

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
SWEEP_DIR_ATTR = "hydra.sweep.dir"  # the trial's user attribute: the sweep dir that launched it
SEARCH_ATTR = "search"  # the study's user attribute: what makes it this search
COMMAND_ATTR = "command"  # ... and the command line that started it
NOP_PRUNER = "optuna.pruners.NopPruner"


@dataclass
class Settings:
    """The sweeper's keys, checked: what no search could use is a SettingError naming the key."""

    directions: list[str]
    n_trials: int
    n_jobs: int | None
    max_failure_rate: float
    custom_search_space: str | None
    resume_identity: Callable[[list[str]], Iterable[str]]
    metric_names: list[str] | None


def sweep(sweeper: Any, arguments: Sequence[str]) -> None:
    """The whole search; `sweeper` is the plugin (its keys, config, launcher and context)."""
    try:
        settings = read_settings(sweeper)
        params = [f"{key}={value}" for key, value in (sweeper.params or {}).items()]
        space = parse_space([*params, *arguments], _deprecated_space(sweeper))
        hook = _method("custom_search_space", settings.custom_search_space)
    except SettingError as err:
        refuse(str(err))
    config: DictConfig = sweeper.config
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    raw_storage = OmegaConf.select(config, "hydra.sweeper.storage")
    text = storage_text(OmegaConf.to_container(raw_storage, resolve=True)
                        if OmegaConf.is_config(raw_storage) else sweeper.storage)
    with one_start(sweep_dir, text, sweeper.study_name) as busy:
        if busy is not None:
            refuse(f"{busy}: wait for it, or stop it first")
        try:
            Search(sweeper, settings, space, hook, sweep_dir, text).run()
        except SettingError as err:
            refuse(str(err))


def _deprecated_space(sweeper: Any) -> dict[str, Any] | None:
    """The official plugin's deprecated search_space: warned about, and ignored when params is given."""
    if not sweeper.search_space:
        return None
    if sweeper.params:
        warnings.warn("Both hydra.sweeper.params and hydra.sweeper.search_space are configured: "
                      "hydra.sweeper.params defines the search space", stacklevel=2)
        return None
    warnings.warn("`hydra.sweeper.search_space` is deprecated (as in Hydra's Optuna plugin): "
                  "configure hydra.sweeper.params instead", stacklevel=2)
    return OmegaConf.to_container(sweeper.search_space, resolve=True) \
        if OmegaConf.is_config(sweeper.search_space) else dict(sweeper.search_space)


def read_settings(sweeper: Any) -> Settings:
    directions = _directions(sweeper.direction)
    n_trials, n_jobs, rate = sweeper.n_trials, sweeper.n_jobs, sweeper.max_failure_rate
    if not isinstance(n_trials, int) or n_trials < 1:
        raise SettingError(f"hydra.sweeper.n_trials={n_trials}: give the number of trials to "
                           "finish, 1 or more (e.g. hydra.sweeper.n_trials=20)")
    if n_jobs is not None and (not isinstance(n_jobs, int) or n_jobs < 1):
        raise SettingError(f"hydra.sweeper.n_jobs={n_jobs}: give the trials to run at a time "
                           "(1 or more), or null for as many as the launcher runs")
    if not 0.0 <= float(rate) <= 1.0:
        raise SettingError(f"hydra.sweeper.max_failure_rate={rate}: give the share of a batch "
                           "that may fail, from 0.0 (none) to 1.0 (all)")
    names = sweeper.metric_names
    names = None if names is None else [str(n) for n in (
        names if isinstance(names, list | tuple | ListConfig) else [names])]
    if names is not None and len(names) != len(directions):
        raise SettingError(f"hydra.sweeper.metric_names has {len(names)} names for "
                           f"{len(directions)} directions: give one name per objective")
    identity = _method("resume_identity", sweeper.resume_identity) or list
    return Settings(directions, n_trials, n_jobs, float(rate), sweeper.custom_search_space, identity, names)


def _directions(direction: Any) -> list[str]:
    values = list(direction) if isinstance(direction, list | tuple | ListConfig) else [direction]
    names = [str(getattr(v, "name", v)).lower() for v in values]  # (an Enum: its name)
    if not names or any(n not in DIRECTIONS for n in names):
        given = ",".join(str(getattr(v, "name", v)) for v in values)
        raise SettingError(f"hydra.sweeper.direction={given}: give minimize or maximize, or a list of them "
                           "for several objectives, e.g. hydra.sweeper.direction=[maximize,minimize]")
    return names


def _method(key: str, path: str | None) -> Callable[..., Any] | None:
    if not path:
        return None
    try:
        return get_method(path)
    except Exception as err:
        reason = " ".join(str(err).split())  # (one line)
        raise SettingError(f"hydra.sweeper.{key}={path} cannot be loaded ({reason}); give "
                           "module.function, importable from where the app runs") from None


class Search:
    """One start of a search: its study, the trials it reruns and asks for, and how it ends."""

    def __init__(self, sweeper: Any, settings: Settings, space: Space,
                 hook: Callable[[DictConfig, Any], None] | None, sweep_dir: Path, text: str) -> None:
        self.sweeper, self.settings, self.space, self.hook = sweeper, settings, space, hook
        self.config: DictConfig = sweeper.config
        self.sweep_dir, self.text = sweep_dir, text
        self.failures: FailureRate | None = None
        self.stopping: BaseException | None = None
        self.lost: list[int] = []  # trials whose job was lost: they stay open for the rerun
        pruner = OmegaConf.to_container(self.config.hydra.sweeper.pruner, resolve=True)
        self.pruner_config = None if pruner.get("_target_") == NOP_PRUNER else pruner

    def run(self) -> None:
        self.study, self.storage = self._open()
        if not self.text:  # (only runs in this process can reach it)
            trials.keep_in_memory(self.study, self.storage)
        try:
            self._launch_all()
        finally:
            trials.forget_in_memory(self.study)
        write_results(self.study, self.sweep_dir, self.space, self.settings.metric_names)
        if self.stopping is not None:
            raise self.stopping

    def _open(self) -> tuple[optuna.Study, Any]:
        sweeper, settings = self.sweeper, self.settings
        if not self.text and sweeper.storage is None:
            log.warning("hydra.sweeper.storage is null: the study lives in this process's memory, "
                        "so a rerun starts a new study instead of resuming this one, and only "
                        "runs in this process (the basic launcher) can report to it for pruning; "
                        "give hydra.sweeper.storage=sqlite:///PATH to keep it")
        elif sweeper.study_name is None:
            log.warning("hydra.sweeper.study_name is null: every start makes a new study with a "
                        "made-up name, so a rerun cannot resume this one; give a study name")
        try:
            storage = (sweeper.storage if isinstance(sweeper.storage, optuna.storages.BaseStorage)
                       else open_storage(self.text) if self.text else optuna.storages.InMemoryStorage())
            study = optuna.create_study(study_name=sweeper.study_name, storage=storage,
                                        load_if_exists=True, directions=settings.directions)
        except Exception as err:
            refuse(f"cannot open the study {sweeper.study_name or ''} in "
                   f"{self.text or 'memory'} ({type(err).__name__}: {err}); restore it, or give "
                   "another hydra.sweeper.storage or hydra.sweeper.study_name")
        held = [d.name.lower() for d in study.directions]
        if held != settings.directions:
            refuse(f"study {study.study_name} in {self.text} is {held} and hydra.sweeper.direction says "
                   f"{settings.directions}: give the study's directions, or another hydra.sweeper.study_name")
        self._same_search(study)
        before = len(study.get_trials(deepcopy=False))
        study.sampler, self.grid_size = self._sampler(before)
        study.pruner = self.sweeper.pruner
        if settings.metric_names is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(settings.metric_names)
        write_text_atomic(self.sweep_dir / MULTIRUN_FILE, OmegaConf.to_yaml(self.config))
        trials.write_study_file(self.sweep_dir, study.study_name, self.text, self.pruner_config)
        log.info("Study name: %s", study.study_name)
        log.info("Storage: %s", self.text or "in memory")
        log.info("Sampler: %s", type(study.sampler).__name__)
        log.info("Directions: %s", settings.directions)
        return study, storage

    def _same_search(self, study: optuna.Study) -> None:
        """A study continues only its own search: same space, fixed settings, directions and hook."""
        fixed = sorted(self.settings.resume_identity(list(self.space.fixed.values())))
        this = {"space": {k: repr(d) for k, d in self.space.distributions.items()},
                "fixed": fixed, "directions": self.settings.directions,
                "custom_search_space": self.settings.custom_search_space}
        before = study.user_attrs.get(SEARCH_ATTR)
        if before is None:
            study.set_user_attr(SEARCH_ATTR, this)
            study.set_user_attr(COMMAND_ATTR, command_line())
            return
        differs = [f"{key}: {before.get(key)} then, {value} now" for key, value in this.items()
                   if before.get(key) != value]
        if differs:
            refuse(f"study {study.study_name} in {self.text} holds another search ("
                   + "; ".join(differs) + "). To continue it, rerun the command it was made "
                   f"with:\n  {study.user_attrs.get(COMMAND_ATTR, '(not recorded)')}\nFor a new "
                   "search, give a new hydra.sweep.dir (or hydra.sweeper.study_name)")

    def _sampler(self, trials_before: int) -> tuple[optuna.samplers.BaseSampler, int | None]:
        """The sampler, reseeded to continue a study; the grid sampler gets its grid (and its size)."""
        sampler = reseeded(OmegaConf.select(self.config, "hydra.sweeper.sampler"),
                           self.sweeper.sampler, trials_before)
        grid_size = None
        if isinstance(sampler, functools.partial):
            unlisted = [k for k in self.space.distributions if k not in self.space.grid]
            if unlisted:
                refuse(f"{', '.join(unlisted)}: the grid sampler needs listed values: "
                       "choice(...), range(...) or an integer interval")
            grid = {k: self.space.grid[k] for k in self.space.distributions}
            sampler = sampler(search_space=grid)
            grid_size = math.prod(len(values) for values in grid.values())
        missing = missing_packages(sampler)
        if missing:
            refuse(f"{type(sampler).__name__} needs {', '.join(missing)}: pip install " + " ".join(missing))
        return sampler, grid_size

    def _launch_all(self) -> None:
        study, settings = self.study, self.settings
        n_trials = settings.n_trials
        if not self.space.distributions and self.hook is None:
            log.info("nothing to search (no params, no custom_search_space): the one configuration runs once")
            n_trials = 1
        if self.grid_size is not None and self.grid_size < n_trials:
            log.info("the grid has %d points: %d trials", self.grid_size, self.grid_size)
            n_trials = self.grid_size
        existing = study.get_trials(deepcopy=False)
        rerun = [t for t in existing if t.state == optuna.trial.TrialState.RUNNING
                 and t.user_attrs.get(SWEEP_DIR_ATTR) == str(self.sweep_dir)]
        finished = sum(t.state.is_finished() for t in existing)
        to_ask = max(0, n_trials - finished - len(rerun))
        launcher = self.sweeper.launcher
        self.streamed = streamed = streams(launcher)
        places = jobs_at_once(self.config.hydra.get("launcher"))
        at_once = min(settings.n_jobs or places, places) if streamed else settings.n_jobs or places
        self.failures = FailureRate(settings.max_failure_rate, at_once)
        log.info("%d trials finished, %d to run again, %d to ask for; %s at a time", finished,
                 len(rerun), to_ask, at_once)
        if rerun:
            log.info("running again the trials an earlier start left running: %s",
                     ", ".join(str(t.number) for t in rerun))
        again = (job for t in rerun for job in self._again(t))
        new = self._new(to_ask)
        if streamed:
            ended = launcher.run_each(itertools.chain(again, new), at_most=settings.n_jobs)
        else:  # (the reruns' batches end before the first new trial is asked for)
            ended = (done for part in (again, new) for done in in_batches(launcher, part, at_once))
        with contextlib.closing(ended):  # (an error here stops the launcher's jobs cleanly)
            for number, ret in ended:
                self._ended(number, self._tell(number, ret))
        if self.stopping is None:
            self.stopping = self.failures.finish()
        if self.stopping is None and self.lost:
            self.stopping = Stop(f"the job(s) of trial(s) {', '.join(map(str, self.lost))} were "
                                 "lost; they stay open, and the same command again resumes them",
                                 output_dir=self.sweep_dir)

    def _again(self, frozen: optuna.trial.FrozenTrial) -> Iterator[tuple[int, list[str]]]:
        """Rerun, as the same trial, one an earlier start left running."""
        if not self.space.distributions.keys() <= frozen.params.keys():
            self.study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
            log.warning("trial %d: an earlier start left it without its parameters: FAIL", frozen.number)
            return
        yield from self._job(frozen.number, frozen.params)

    def _new(self, count: int) -> Iterator[tuple[int, list[str]]]:
        """New trials, each asked for only when the launcher takes it, so it knows every ended one."""
        for _ in range(count):
            if self.stopping is not None:
                return
            yield from self._job(*self._ask())

    def _ask(self) -> tuple[int, dict[str, Any]]:
        """A new trial: space values, fixed values as user attrs (as the official plugin), then the hook's."""
        trial = self.study.ask(fixed_distributions=self.space.distributions)
        for key, value in self.space.fixed_values().items():
            trial.set_user_attr(key, value)
        trial.set_user_attr(SWEEP_DIR_ATTR, str(self.sweep_dir))
        try:
            if self.hook is not None:
                self.hook(self.config, trial)
            overlap = sorted(trial.params.keys() & self.space.fixed.keys())
            if overlap:
                raise SettingError("custom_search_space suggests parameters the command line "
                                   f"fixes: {overlap}; leave them out of one or the other")
        except BaseException:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        return trial.number, trial.params

    def _job(self, number: int, params: dict[str, Any]) -> Iterator[tuple[int, list[str]]]:
        """The trial's job, or FAIL at once if its config cannot be composed (a batch would be lost)."""
        overrides = [*(self.space.override(k, v) for k, v in params.items()), *self.space.fixed.values()]
        self.failures.launched(number)
        if self.streamed:  # (a streaming launcher hands back a job that fails to compose)
            yield number, overrides
            return
        try:  # (a batch launcher would raise, losing the batch and leaving its trials RUNNING)
            self.sweeper.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        except Exception as err:
            log.warning("trial %d: its config cannot be composed (%s): FAIL", number, err)
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            self._ended(number, err)
            return
        yield number, overrides

    def _tell(self, number: int, ret: JobReturn) -> BaseException | None:
        """Close the trial as its task ended (COMPLETE, PRUNED or FAIL); returns the failure, if any."""
        frozen = self.study.get_trials(deepcopy=False)[number]
        if frozen.state.is_finished():
            return None  # (told already)
        if ret.status == JobStatus.COMPLETED and isinstance(ret.return_value, JobLost):
            log.warning("trial %d stays open: %s", number, ret.return_value)
            self.lost.append(number)
            return None
        values, state, failure = None, optuna.trial.TrialState.COMPLETE, None
        try:
            value = ret.return_value  # (a failed task: raises its exception)
            if trials.PRUNED_AT in frozen.user_attrs:
                state = optuna.trial.TrialState.PRUNED
            else:
                values = _values(value, len(self.settings.directions))
                if not all(map(math.isfinite, values)):  # (a run that failed without raising)
                    log.warning("trial %d returned %s: FAIL", number, values)
                    values, state = None, optuna.trial.TrialState.FAIL
        except optuna.TrialPruned:
            state = optuna.trial.TrialState.PRUNED
        except Exception as err:
            state, failure = optuna.trial.TrialState.FAIL, err
            log.warning("Failed experiment: %s", err)
        try:
            told = self.study.tell(number, values, state=state)
        except RuntimeError as err:  # the grid sampler stops its study at its last point
            if "Study.stop" not in str(err):
                raise
            told = self.study.get_trials(deepcopy=False)[number]
        log.info("trial %d: %s%s", number, told.state.name,
                 f" {told.values}" if told.values is not None else "")
        return failure

    def _ended(self, number: int, failure: BaseException | None) -> None:
        exceeded = self.failures.ended(number, failure)
        if exceeded is not None and self.stopping is None:
            self.stopping = exceeded  # (no new trial; the running ones end and are told)


def _values(value: Any, count: int) -> list[float]:
    """A task's return value as the study's objective values (the official plugin's rule)."""
    if count == 1:
        try:
            return [float(value)]
        except (TypeError, ValueError):
            raise ValueError(f"Return value must be float-castable. Got '{value}'.") from None
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError("Return value must be a list or tuple of float-castable values. "
                         f"Got '{value}'.") from None
    if len(values) != count:
        raise ValueError("The number of the values and the number of the objectives are "
                         f"mismatched. Expect {count}, but actually {len(values)}.")
    return values


class FailureRate:
    """max_failure_rate judged per block of `block` trials in launch order, for batches and streams."""

    def __init__(self, allowed: float, block: int) -> None:
        self.allowed, self.block = allowed, max(1, block)
        self.blocks: dict[int, int] = {}  # trial number -> its block
        self.outcomes: dict[int, list[BaseException | None]] = {}  # block -> its ended trials'

    def launched(self, number: int) -> None:
        self.blocks[number] = len(self.blocks) // self.block

    def ended(self, number: int, failure: BaseException | None) -> BaseException | None:
        """The failure to stop with when `number` completes a block over the budget."""
        block = self.blocks[number]
        self.outcomes.setdefault(block, []).append(failure)
        return self._judged(block) if len(self.outcomes[block]) == self.block else None

    def finish(self) -> BaseException | None:
        """The last, shorter block's verdict, once no trial is left to launch."""
        last = max(self.outcomes, default=None)
        return self._judged(last) if last is not None and len(self.outcomes[last]) < self.block else None

    def _judged(self, block: int) -> BaseException | None:
        outcomes = self.outcomes[block]
        failed = [f for f in outcomes if f is not None]
        if failed and len(failed) / len(outcomes) > self.allowed:
            log.error("Failed %d times out of %d with max_failure_rate=%s", len(failed),
                      len(outcomes), self.allowed)
            return failed[0]
        return None


def streams(launcher: Any) -> bool:
    return bool(getattr(type(launcher), "streams_jobs", False)) and \
        callable(getattr(launcher, "run_each", None))


def in_batches(launcher: Any, jobs: Iterable[tuple[int, Sequence[str]]], size: int
               ) -> Iterator[tuple[int, JobReturn]]:
    """Batches of `size` consecutive jobs (as Hydra numbers them), each read once the one before has ended."""
    batch: list[tuple[int, Sequence[str]]] = []

    def launched() -> list[tuple[int, JobReturn]]:
        returns = launcher.launch([overrides for _, overrides in batch], initial_job_idx=batch[0][0])
        numbers = [number for number, _ in batch]
        batch.clear()
        return list(zip(numbers, returns, strict=True))

    for number, overrides in jobs:
        if batch and batch[-1][0] + 1 != number:
            yield from launched()
        batch.append((number, overrides))
        if len(batch) == size:
            yield from launched()
    if batch:
        yield from launched()
