"""The samplers' loose ends: motpe's removal notice, NSGA-III's reference points, needed packages,
and a fresh stream for a seeded sampler continuing a study (the same seed would repeat its points)."""

from __future__ import annotations

import importlib.util
from typing import Any, NoReturn

from alexnet.search.space import refuse

# The packages a sampler imports only when it first samples: checked before any trial.
NEEDS = {"CmaEsSampler": ("cmaes",), "GPSampler": ("torch", "scipy")}


def motpe_removed(*args: Any, **kwargs: Any) -> NoReturn:
    refuse("The 'motpe' sampler was removed in Optuna 4.0. Use 'hydra/sweeper/sampler=tpe' "
           "instead. TPESampler now handles multi-objective optimization.")


def nsgaiii(reference_points: list[list[float]] | None = None, **options: Any) -> Any:
    """optuna.samplers.NSGAIIISampler, its reference points given as lists in the config."""
    import numpy as np
    import optuna

    points = None if reference_points is None else np.asarray(reference_points, dtype=float)
    return optuna.samplers.NSGAIIISampler(reference_points=points, **options)


def missing_packages(sampler: Any) -> list[str]:
    needed = NEEDS.get(type(sampler).__name__, ())
    return [name for name in needed if importlib.util.find_spec(name) is None]


def continuing_seed(seed: int, trials_before: int) -> int:
    """The configured seed for a new study; for a later start another one, fixed by both arguments."""
    if trials_before == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, trials_before]).generate_state(1)[0])


def reseeded(config: Any, built: Any, trials_before: int) -> Any:
    """`built`, or for a seeded sampler continuing a study the same one with its continuing seed.
    QMC keeps its seed: its sequence goes on by itself from the point count the study keeps."""
    import optuna
    from hydra.utils import instantiate

    seed = config.get("seed") if config is not None else None
    if seed is None or trials_before == 0 or isinstance(built, optuna.samplers.QMCSampler):
        return built
    return instantiate(config, seed=continuing_seed(int(seed), trials_before))
