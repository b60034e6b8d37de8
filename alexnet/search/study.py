"""The study a sweep's trials share: its storage (a database URL, or `journal:PATH` for a journal
file, which works on NFS where SQLite's locks do not), and what a trial's run does with it."""

from __future__ import annotations

from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig


def storage(url: str) -> Any:
    """What optuna.create_study / load_study take for `url`."""
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return url


PRUNER_ATTR = "pruner"  # the study's user attribute: its pruner's config, for the trials' runs


def report(search: DictConfig, epoch: int, row: dict[str, Any]) -> bool:
    """Report the epoch's monitored score to the run's trial; True when the pruner stops it. A
    study keeps no pruner in its storage: the sweeper leaves the pruner's config in the study's
    user attributes, and the run builds the same pruner from it."""
    where = storage(search.storage)
    pruner_config = optuna.load_study(study_name=search.study, storage=where).user_attrs.get(
        PRUNER_ATTR)
    pruner = instantiate(pruner_config) if pruner_config else optuna.pruners.NopPruner()
    study = optuna.load_study(study_name=search.study, storage=where, pruner=pruner)
    trial = optuna.trial.Trial(study, int(search.trial_id))  # the trial the sweeper asked for
    trial.report(float(row[search.monitor]), step=epoch)
    return trial.should_prune()
