"""The samplers' loose ends: the official plugin's removal notice for motpe, NSGA-III's reference
points from a config's lists, what a sampler needs installed, and a fresh random stream for a
seeded sampler that continues a study (the same seed again would ask the first start's points
again)."""

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
    """The packages `sampler` will need that are not installed."""
    needed = NEEDS.get(type(sampler).__name__, ())
    return [name for name in needed if importlib.util.find_spec(name) is None]


def continuing_seed(seed: int, trials_before: int) -> int:
    """The seed for a start that finds `trials_before` trials in its study: the configured one for
    a new study (the official plugin's points), another one, fixed by both, for each later start."""
    if trials_before == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, trials_before]).generate_state(1)[0])


def reseeded(config: Any, built: Any, trials_before: int) -> Any:
    """`built` (the sampler Hydra made from `config`) or, when the study already holds trials and
    the sampler has a seed, the same sampler with its continuing seed. QMC keeps its seed: its
    sequence goes on by itself from the point count the study keeps."""
    import optuna
    from hydra.utils import instantiate

    seed = config.get("seed") if config is not None else None
    if seed is None or trials_before == 0 or isinstance(built, optuna.samplers.QMCSampler):
        return built
    return instantiate(config, seed=continuing_seed(int(seed), trials_before))
