"""The study a sweep's trials share: its storage (a database URL, or `journal:PATH` for a journal
file, which works on NFS where SQLite's locks do not), and what a trial's run does with it."""

from __future__ import annotations

import functools
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


def report(search: DictConfig, epoch: int, row: dict[str, Any], ask: bool) -> bool:
    """Report the epoch's monitored score to the run's trial; with `ask`, True when the pruner
    stops it."""
    trial = optuna.trial.Trial(_study(str(search.study), str(search.storage)), int(search.trial_id))
    trial.report(float(row[search.monitor]), step=epoch)  # (a step reported before: ignored)
    return ask and trial.should_prune()


@functools.cache
def _study(name: str, url: str) -> optuna.Study:
    """The run's study, loaded once. A study keeps no pruner in its storage: the sweeper leaves
    the pruner's config in the study's user attributes, and the run builds the same pruner."""
    where = storage(url)
    pruner_config = optuna.load_study(study_name=name, storage=where).user_attrs.get(PRUNER_ATTR)
    pruner = instantiate(pruner_config) if pruner_config else optuna.pruners.NopPruner()
    return optuna.load_study(study_name=name, storage=where, pruner=pruner)
