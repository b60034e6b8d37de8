"""What a trial's run does for its search (hydra/sweeper=optuna), in any Hydra app: report a value
per step and learn whether to stop.

    from alexnet.search.trial import report

    for step in range(cfg.steps):
        loss = train_one_step()
        if report(loss, step):   # the pruner says stop: the trial ends PRUNED
            break
    return loss

The run learns which trial it is from an environment variable the sweeper sets for each job
through Hydra's job config (hydra.job.env_set), which every launcher carries into the job's
process (basic, joblib, parallel, submitit, SLURM); it reaches the study through its storage, or,
for a study kept in memory, in the sweeper's own process (the basic launcher). Outside a search
`report` does nothing and costs nothing (optuna is imported only inside one)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

# JSON: {"study": its name, "storage": where it is ("": in the sweeper's memory), "number": the
# trial's number, "pruner": the pruner's config (Optuna keeps no pruner in a study; none: no pruning)}
VARIABLE = "HYDRA_OPTUNA_TRIAL"
# The trial's user attributes the sweeper reads (a task's overrides never start with "hydra.").
PRUNED_AT = "hydra.sweeper.pruned_at_step"
LAST_STEP = "hydra.sweeper.last_step"

_in_memory: dict[str, Any] = {}  # study name -> the sweeper's study kept in memory
_said: set[str] = set()


def report(value: float, step: int, *, last: bool = False, channel: str | None = None) -> bool:
    """Report `value` at `step` to the trial this process runs; True when its pruner says stop,
    and the trial then ends PRUNED whatever the run returns. `last=True` at the run's last step:
    the value is recorded and the pruner not asked. False outside a search, for a study of
    several objectives (Optuna prunes single-objective studies only: the step alone is kept),
    and where the study cannot be reached (said once, with why)."""
    channel = channel or os.environ.get(VARIABLE)
    if not channel:
        return False
    try:
        trial = _trial(channel)
    except LookupError as why:
        _say_once(f"{VARIABLE}={channel}: {why}; the run goes on unpruned")
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
        _say_once(f"could not report step {step} to trial {trial.number} of study "
                  f"{trial.study.study_name} ({type(err).__name__}: {err}); the run goes on "
                  "unpruned")
        return False


def job_environment(study_name: str, storage: str, number: int, pruner: Any) -> dict[str, str]:
    """The variable that tells trial `number`'s run where it is (see VARIABLE)."""
    where: dict[str, Any] = {"study": study_name, "storage": storage, "number": number}
    if pruner:
        where["pruner"] = pruner
    return {VARIABLE: json.dumps(where, sort_keys=True)}


def keep_in_memory(study: Any, storage: Any) -> None:
    """Let runs in this process reach `study` (kept in `storage`, which nothing outside reaches)."""
    _in_memory[study.study_name] = (study, storage)


def forget_in_memory(study: Any) -> None:
    _in_memory.pop(study.study_name, None)
    _trials.clear()


_trials: dict[str, Any] = {}  # the run's trial by its variable, or why it has none


def _trial(channel: str) -> Any:
    """The run's trial, loaded once; LookupError when its study cannot be reached."""
    if channel not in _trials:
        try:
            where = json.loads(channel)
            _trials[channel] = _load(str(where["study"]), str(where["storage"]),
                                     int(where["number"]), where.get("pruner"))
        except (ValueError, TypeError, KeyError):
            _trials[channel] = LookupError("it says no trial (the sweeper sets it as JSON)")
        except LookupError as why:
            _trials[channel] = why
    found = _trials[channel]
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
            raise LookupError(f"cannot open it in {storage} ({type(err).__name__}: {err})") \
                from None
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
