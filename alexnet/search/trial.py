"""A trial's run reports a value per step and learns whether to stop: `if report(loss, step): break`.
Trial N is job N: the run finds its study through the study file the sweeper leaves in the sweep dir;
outside a search `report` does nothing and costs nothing (optuna is imported only inside one)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from alexnet.files import write_text_atomic

log = logging.getLogger(__name__)

STUDY_FILE = ".optuna_study.json"  # in the sweep dir: {"study", "storage", "pruner"}
# The trial's user attributes the sweeper reads (a task's overrides never start with "hydra.").
PRUNED_AT = "hydra.sweeper.pruned_at_step"
LAST_STEP = "hydra.sweeper.last_step"

_in_memory: dict[str, Any] = {}  # study name -> the sweeper's study kept in memory
_said: set[str] = set()


def report(value: float, step: int, *, last: bool = False,
           job: tuple[str, int] | None = None) -> bool:
    """Report `value` at `step`; True when the pruner says stop (the trial then ends PRUNED).
    `last=True` skips the pruner; False outside a search, for several objectives, or with no study."""
    where = job or _this_job()
    if where is None or not (Path(where[0]) / STUDY_FILE).is_file():
        return False
    try:
        trial = _trial(where)
    except LookupError as why:
        _say_once(f"trial {where[1]} of {Path(where[0]) / STUDY_FILE}: {why}; the run goes on unpruned")
        return False
    try:
        if len(trial.study.directions) > 1:
            trial.set_user_attr(LAST_STEP, int(step))
            return False
        trial.report(float(value), int(step))
        if last or not trial.should_prune():
            return False
        trial.set_user_attr(PRUNED_AT, int(step))
        return True
    except Exception as err:  # (a locked or lost database costs the pruning, not the run)
        _say_once(f"could not report step {step} to trial {trial.number} of study {trial.study.study_name} "
                  f"({type(err).__name__}: {err}); the run goes on unpruned")
        return False


def _this_job() -> tuple[str, int] | None:
    """(sweep dir, job number) of this process's Hydra job in a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return str(HydraConfig.get().sweep.dir), int(HydraConfig.get().job.num)


def write_study_file(sweep_dir: Path, study_name: str, storage: str, pruner: Any) -> None:
    """Where the sweep's trials find their study (see STUDY_FILE)."""
    write_text_atomic(Path(sweep_dir) / STUDY_FILE, json.dumps(
        {"study": study_name, "storage": storage, "pruner": pruner or None}, sort_keys=True))


def keep_in_memory(study: Any, storage: Any) -> None:
    """Let runs in this process reach `study` (kept in `storage`, which nothing outside reaches)."""
    _in_memory[study.study_name] = (study, storage)


def forget_in_memory(study: Any) -> None:
    _in_memory.pop(study.study_name, None)
    _trials.clear()


_trials: dict[tuple[str, int], Any] = {}  # each job's trial, or why it has none


def _trial(where: tuple[str, int]) -> Any:
    """The job's trial, loaded once; LookupError when its study cannot be reached."""
    if where not in _trials:
        try:
            found = json.loads((Path(where[0]) / STUDY_FILE).read_text())
            _trials[where] = _load(str(found["study"]), str(found["storage"]), where[1], found.get("pruner"))
        except (OSError, ValueError, TypeError, KeyError):
            _trials[where] = LookupError("the study file cannot be read (the sweeper writes it)")
        except LookupError as why:
            _trials[where] = why
    found = _trials[where]
    if isinstance(found, LookupError):
        raise found
    return found


def _load(name: str, storage: str, number: int, pruner: dict[str, Any] | None) -> Any:
    import optuna

    if not storage:
        if name not in _in_memory:
            raise LookupError("its study is kept in the sweeper's memory (hydra.sweeper.storage="
                              "null) and this run is in another process; give a storage that "
                              "both reach, e.g. hydra.sweeper.storage=sqlite:///study.db")
        study, where = _in_memory[name]
    else:
        from hydra.utils import instantiate

        from alexnet.search.study import open_storage

        built = instantiate(pruner) if pruner else optuna.pruners.NopPruner()
        try:
            where = open_storage(storage)
            study = optuna.load_study(study_name=name, storage=where, pruner=built)
        except Exception as err:
            raise LookupError(f"cannot open it in {storage} ({type(err).__name__}: {err})") from None
    try:
        trial_id = where.get_trial_id_from_study_id_trial_number(
            where.get_study_id_from_name(name), number)
    except KeyError:
        raise LookupError(f"the study has no trial {number}") from None
    return optuna.trial.Trial(study, trial_id)


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.warning(message)
